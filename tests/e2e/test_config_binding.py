"""A caller of the Prefect API cannot pick the configuration a run reads.

The attack, before: create a run of promote-stage/conveyor with `config_file` pointing at a
configuration whose first stage is prod (no approval, a command gate running anything): it
deployed to prod and wrote a desired state into the real state repository. Now flows take no
configuration path; served runs read the configuration `serve` loaded, bound to its deployments
by digest."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conveyor.adapters.prefect_api import PROMOTE_STAGE, SERVED_DEPLOYMENT
from conveyor.errors import InputError
from tests.support.world import World, serving_promote_stage

pytestmark = pytest.mark.own_prefect  # it serves deployments: on a Prefect server of its own


def _wait_final(world: World, run_id: str) -> str:
    deadline = time.monotonic() + 120
    while (run := world.api.flow_run(run_id)).state_type not in (
        "COMPLETED",
        "FAILED",
        "CRASHED",
        "CANCELLED",
    ):
        assert time.monotonic() < deadline, f"{run.name} still {run.state_name}"
        time.sleep(0.5)
    return f"{run.state_type}: {run.message}"


def test_a_run_cannot_be_pointed_at_another_configuration(world: World, tmp_path: Path) -> None:
    world.edit_pipeline(lambda p: p["stages"][0].update(autoPromote=False))
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    log_before = world.state_log()
    evil = tmp_path / "evil" / "conveyor.yaml"  # the attacker's own file (any path will do)

    with serving_promote_stage(world):
        try:
            run = world.api.create_flow_run(
                PROMOTE_STAGE,
                SERVED_DEPLOYMENT,
                {"app": world.app, "stage": "prod", "digest": digest, "config_file": str(evil)},
            )
            outcome = _wait_final(world, run.id)
            assert outcome.startswith(("FAILED", "CRASHED")), outcome
        except InputError as refused:  # the server refused the parameters outright
            assert "config_file" in str(refused), refused

        # Editing the configuration after serve started: the CLI and the run both refuse.
        world.edit_pipeline(lambda p: p["stages"][3].update(approval={"required": False}))
        cli = world.conveyor("promote", world.app, "test", "--digest", digest)
        assert cli.returncode == 2, cli.stdout + cli.stderr
        assert "was served with another configuration" in cli.stderr
        run = world.api.create_flow_run(
            PROMOTE_STAGE, SERVED_DEPLOYMENT, {"app": world.app, "stage": "test", "digest": digest}
        )
        outcome = _wait_final(world, run.id)
        assert outcome.startswith("FAILED") and "another configuration" in outcome, outcome

    assert world.state_log() == log_before, "nothing recorded"
    for target in ("test", "staging", "prod-eu", "prod-us"):
        assert world.live_digest(target) is None, f"nothing deployed to {target}"


@pytest.mark.parametrize("flow", ["release", "reconcile"])
def test_no_flow_takes_a_configuration_path(world: World, flow: str) -> None:
    code, output = world.run(flow, app=world.app, config_file="/tmp/elsewhere.yaml")
    assert code != 0
    assert "config_file" in output, output[-2000:]
    assert not Path(world.state_repository).exists(), "nothing ran"
