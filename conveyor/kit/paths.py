"""Where Conveyor keeps things on disk: per-project state and the per-user cache.

State (the local platform's data, logs, pid files) is per project: `.conveyor/` in the working
directory, or $CONVEYOR_STATE. The cache (built binaries, git mirrors) is per user and shared by
every clone on the machine: $CONVEYOR_CACHE, else $XDG_CACHE_HOME/conveyor, else ~/.cache/conveyor.
The tools Conveyor runs (kubectl, helm) are found through a variable first, then on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conveyor.errors import PlatformError


def state_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_STATE", ".conveyor")).absolute()


def cache_root() -> Path:
    configured = os.environ.get("CONVEYOR_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "conveyor"


def executable(variable: str, name: str, purpose: str) -> str:
    """The program `$variable` names, else `name` on PATH (the platform exports the variables
    for the binaries it builds); PlatformError saying what it was needed for when there is
    none."""
    chosen = os.environ.get(variable) or shutil.which(name)
    if not chosen or not os.access(chosen, os.X_OK):
        raise PlatformError(
            f"{purpose}: no {name} to run ({chosen or 'none on PATH'})",
            hint=f'set {variable} (`eval "$(conveyor platform env)"` sets the local platform\'s, '
            f"built by `conveyor platform up`) or put {name} on PATH",
        )
    return chosen


def display_path(path: Path) -> str:
    """A path for messages: relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
