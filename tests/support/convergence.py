"""What fault scenarios share: a dev gate the test holds open (the worst moment to strike is
while a promotion holds its target), waiting for a condition, and the checks every scenario ends
with: git and the cluster agree, and no slot is held."""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor.errors import InputError
from tasks.locks import limit_name
from tests.support.world import World

HELD_GATE = (
    "import os, pathlib, time\n"
    "pathlib.Path(os.environ['ENTERED']).touch()\n"
    "deadline = time.monotonic() + 150\n"
    "while os.path.exists(os.environ['HOLD']) and time.monotonic() < deadline:\n"
    "    time.sleep(0.2)\n"
)
"""A command gate that says it started (touches $ENTERED) and then waits while $HOLD exists."""


REPOSSESSOR_LOOP = 15
"""How often Prefect's server looks for expired leases (its default)."""


def held_gate(folder: Path) -> dict[str, Any]:
    """A command gate running HELD_GATE, with its files in `folder` (`entered`, `hold`)."""
    return {
        "type": "command",
        "name": "held",
        "command": [sys.executable, "-c", HELD_GATE],
        "env": {"ENTERED": str(folder / "entered"), "HOLD": str(folder / "hold")},
        "timeout": "180s",
    }


def dev_then_held_test(folder: Path) -> Callable[[dict[str, Any]], None]:
    """A pipeline edit: only dev (autoPromote off) and test, whose gate is `held_gate(folder)`."""

    def edit(pipeline: dict[str, Any]) -> None:
        dev, test = pipeline["stages"][:2]
        dev["autoPromote"] = False
        test["gates"] = [held_gate(folder)]
        pipeline["stages"] = [dev, test]

    return edit


def hold_the_dev_gate(folder: Path) -> Callable[[dict[str, Any]], None]:
    """A pipeline edit: dev stops the release (autoPromote off) and runs `held_gate(folder)`."""

    def edit(pipeline: dict[str, Any]) -> None:
        dev = pipeline["stages"][0]
        dev["autoPromote"] = False
        dev["gates"] = [held_gate(folder)]

    return edit


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> float:
    """Seconds until `condition()` held; fails the test naming `what` after `timeout`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"{what} not within {timeout:.0f}s"
        time.sleep(0.3)
    return time.monotonic() - began


def task_state(world: World, flow_run_name: str, task: str) -> str | None:
    """The state type of the newest task run named `task...` in flow runs named so, or None."""
    runs = world.api.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [flow_run_name]}}})
    states = [
        record["state_type"]
        for run in runs
        for record in world.api.task_run_records(run["id"])
        if record["name"].startswith(task)
    ]
    return states[-1] if states else None


def held_slots(world: World, target: str) -> int:
    """Slots of the target's limit held now (0 when the limit was never created)."""
    name = urllib.parse.quote(limit_name(world.app, target))
    try:
        limit = world.api.get(f"/v2/concurrency_limits/{name}")
    except InputError:
        return 0
    return int(limit["active_slots"])


def assert_git_and_cluster_agree(world: World, *targets: str) -> None:
    """Each target runs the digest git records for it, and holds no slot."""
    for target in targets:
        desired = world.desired(target)
        assert desired is not None, f"{target}: nothing recorded"
        assert world.live_digest(target) == desired.digest, (
            f"{target}: git records {desired.digest[:19]}, the cluster runs "
            f"{(world.live_digest(target) or 'nothing')[:19]}"
        )
        assert held_slots(world, target) == 0, f"{target}: a slot is still held"
