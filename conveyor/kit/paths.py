"""Where Conveyor keeps things on disk: per-project state and the per-user cache.

State (the local platform's data, logs, pid files) is per project: `.conveyor/` in the working
directory, or $CONVEYOR_STATE. The cache (built binaries, git mirrors) is per user and shared by
every clone on the machine: $CONVEYOR_CACHE, else $XDG_CACHE_HOME/conveyor, else ~/.cache/conveyor.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_STATE", ".conveyor")).absolute()


def cache_root() -> Path:
    configured = os.environ.get("CONVEYOR_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "conveyor"


def display_path(path: Path) -> str:
    """A path for messages: relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
