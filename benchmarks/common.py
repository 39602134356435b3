"""What every benchmark reports the same way: timing, statistics, progress, results, tables.

The benchmarks measure different things (bundles against skopeo, the cluster against kubectl, a
release against the Prefect server), but they time an action with the same clock, summarise
samples with the same median and p90, print progress with the time of day, keep every sample in
a JSON file under benchmarks/results/ and print Markdown tables for benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def argument_parser(
    doc: str | None, *, repeat: int, repeat_help: str, results: Path, results_option: str = "--out"
) -> argparse.ArgumentParser:
    """The options every benchmark has: how many repetitions, and where the results go; the
    first paragraph of the script's docstring describes it in --help."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=repeat, help=repeat_help)
    parser.add_argument(results_option, type=Path, default=results, help="JSON results file")
    return parser


def log(message: str) -> None:
    """A progress line, stamped with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """How long `action()` took, in seconds of the high-resolution clock, and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile (inclusive method); of a single sample, that sample."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, p90, min and max of the samples, rounded to the millisecond."""
    ordered = sorted(values)
    return {
        "median": round(median(ordered), 3),
        "p90": round(p90(ordered), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
    }


def write_results(path: Path, results: dict[str, Any], *, indent: int = 2) -> None:
    """Every sample and figure of a run, as JSON (one trailing newline), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=indent) + "\n")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, aligned: bool = True
) -> str:
    """A Markdown table; `aligned` pads every column to its widest cell (readable as plain text
    too), otherwise cells are written as they are under a `|---|` rule."""
    if not aligned:
        lines = ["| " + " | ".join(row) + " |" for row in [header, *rows]]
        lines.insert(1, "|" + "|".join("---" for _ in header) + "|")
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in [header, *rows]
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)
