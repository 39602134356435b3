"""An isolated world per test for end-to-end releases on the real platform.

The world itself is tests/support/world.py (the release benchmark builds the same one); here its
prod stage also asks for an approval (within 120 s) and soaks for 1 s, as a team's pipeline does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform.local import LocalPlatform
from tests.support.world import World, world_for


def _approval_and_soak_in_prod(pipeline: dict[str, Any]) -> None:
    for stage in pipeline["stages"]:
        if stage["name"] == "prod":
            stage["soak"] = "1s"
            stage["approval"] = {"required": True, "timeout": "120s"}


@pytest.fixture
def world(
    platform: LocalPlatform, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[World]:
    with world_for(request, platform, tmp_path, f"e{uuid.uuid4().hex[:6]}") as world:
        world.edit_pipeline(_approval_and_soak_in_prod)
        yield world
