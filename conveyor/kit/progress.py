"""How a long operation tells its caller what it is doing: one line of text at a time.

Building a bundle and applying one report their steps through a `ProgressNote`; the CLI prints
the lines and a flow logs them. Waiting for readiness and bringing the platform up report counts
too, so they take callbacks of their own (`cluster.wait.ReadinessProgress`,
`platform.binaries.PlatformProgress`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

ProgressNote: TypeAlias = Callable[[str], None]
"""Called with one line saying what is being done now (`pushing 2048 bytes to ...`)."""
