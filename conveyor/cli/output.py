"""Shared output helpers for CLI commands: one `--output` option, tables or JSON, and progress.

What the CLI prints is mostly user text (app, target and folder names, YAML values, messages
that quote them), so both consoles read no Rich markup (`[bold]`), no emoji codes (`:rocket:`)
and highlight nothing: a string, a table title or a column header is printed as written. Style
comes only from `Text` objects built here.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = typer.Option(
    Output.table, "--output", "-o", help="table for people, json for scripts"
)

console = Console(soft_wrap=True, markup=False, emoji=False, highlight=False)
errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False, highlight=False)


def say(text: str) -> None:
    """A line of plain text on stdout, printed as written."""
    console.print(text)


def note(text: str) -> None:
    """A progress line on stderr."""
    errors.print(Text("• ", style="cyan") + Text(text))


def fail(text: str) -> None:
    """An error line on stderr."""
    errors.print(Text("error: ", style="bold red") + Text(text))


def add_row(table: Table, *cells: str) -> None:
    """A table row of plain text, printed as written."""
    table.add_row(*(Text(cell) for cell in cells))


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class PlatformProgressPrinter:
    """A `platform.binaries.PlatformProgress` for the terminal: shows build and start-up progress
    on stderr, at most a few lines a second."""

    def __init__(self) -> None:
        self._last_message = ""
        self._last_time = 0.0

    def __call__(self, message: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if message == self._last_message and now - self._last_time < 5 and not finished:
            return
        self._last_message, self._last_time = message, now
        counter = f" [{done}/{total}]" if total else ""
        note(f"{message}{counter}")
