"""Shared output helpers for CLI commands: one `--output` option, tables or JSON, and progress."""

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

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def say(text: str) -> None:
    """A line of plain text on stdout: never read as markup (it may hold user data)."""
    console.print(text, markup=False, highlight=False)


def note(text: str) -> None:
    """A progress line on stderr."""
    errors.print(Text("• ", style="cyan") + Text(text), highlight=False)


def fail(text: str) -> None:
    """An error line on stderr."""
    errors.print(Text("error: ", style="bold red") + Text(text), highlight=False)


def add_row(table: Table, *cells: str) -> None:
    """A table row of plain text (user data is never read as markup)."""
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
