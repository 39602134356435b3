"""Fault scenarios on the real platform: a world per test, and the checks every scenario ends with.

Each scenario drives its own fault (a run started at the worst moment, a process killed by its
pid, a component stopped) and then asks the same three questions (tests/support/convergence.py):
does git's desired state match what runs on the cluster, is no target slot left held, and does a
re-run converge by itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.platform.local import LocalPlatform
from tests.support.world import World, world_for


@pytest.fixture
def world(
    platform: LocalPlatform, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[World]:
    with world_for(request, platform, tmp_path, f"f{uuid.uuid4().hex[:6]}") as world:
        yield world
