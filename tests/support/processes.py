"""Finding processes a platform left behind, by what they mention rather than by what it recorded.

A platform's `down` stops the processes whose pids it recorded; a scan of /proc checks that
nothing else it started (a child, a grandchild, a process whose pid file was lost) still runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from conveyor.platform import process


def processes_mentioning(path: Path) -> list[str]:
    """Live processes whose command line or environment mentions `path`."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if process.start_ticks(int(entry.name)) is None:
                continue
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:120]!r}")
        except OSError:
            continue
    return found
