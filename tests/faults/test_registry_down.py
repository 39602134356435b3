"""The registry stops: during a build (the push) and during a promotion (the next stage's pull).
A private registry (the shared one serves other tests) is stopped and started by its pid. Nothing
may be recorded for what was not done, nothing half-applied, and once the registry is back a
re-run converges without a human."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.platform import process
from conveyor.platform.components import Registry
from tests.support.convergence import (
    assert_git_and_cluster_agree,
    held_slots,
    hold_the_dev_gate,
    wait_for,
)
from tests.support.world import World

INFRASTRUCTURE = 4


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "registry-state", process.free_port())
    registry.up()
    try:
        yield registry
    finally:
        registry.down()


def _use(world: World, registry: Registry) -> None:
    config = yaml.safe_load(world.config_path.read_text())
    config["registry"] = f"{registry.address}/{world.prefix}"
    world.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_build_with_the_registry_down_fails_fast_and_changes_nothing(
    world: World, own_registry: Registry
) -> None:
    _use(world, own_registry)
    world.edit_pipeline(lambda p: p["stages"][0].update(autoPromote=False))
    own_registry.down()
    refused = world.conveyor("release", world.app)
    assert refused.returncode == INFRASTRUCTURE, refused.stdout + refused.stderr
    assert own_registry.address in refused.stdout + refused.stderr
    assert world.desired("dev") is None
    assert world.live_digest("dev") is None

    own_registry.up()
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    assert_git_and_cluster_agree(world, "dev")


def test_the_registry_gone_before_the_next_stage_stops_the_release_cleanly(
    world: World, own_registry: Registry, tmp_path: Path
) -> None:
    _use(world, own_registry)

    def dev_then_test(pipeline: dict[str, Any]) -> None:
        hold_the_dev_gate(tmp_path)(pipeline)
        pipeline["stages"][0]["autoPromote"] = True
        pipeline["stages"][1]["autoPromote"] = False

    world.edit_pipeline(dev_then_test)
    (tmp_path / "hold").touch()
    release = world.start("release", app=world.app)
    wait_for((tmp_path / "entered").exists, "the dev gate started", 120)
    own_registry.down()
    (tmp_path / "hold").unlink()
    code, output = world.finish(release)
    assert code == INFRASTRUCTURE, output
    assert own_registry.address in output, output[-3000:]
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    assert world.desired("test") is None, "test never started: nothing recorded"
    assert world.live_digest("test") is None, "and nothing applied"
    assert_git_and_cluster_agree(world, "dev")
    assert held_slots(world, "test") == 0

    own_registry.up()
    code, output = world.run("promote-stage", app=world.app, stage="test", digest=digest)
    assert code == 0, output
    assert_git_and_cluster_agree(world, "dev", "test")
