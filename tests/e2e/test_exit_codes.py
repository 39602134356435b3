"""Exit codes end to end: a refused promotion ends `conveyor promote` with 2, as the README says,
whether the flow runs in a child process (no served deployment) or in a served run."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.adapters.prefect_api import (
    PROMOTE_STAGE,
    SERVED_DEPLOYMENT,
)
from tests.support.world import World, serving_promote_stage

pytestmark = pytest.mark.own_prefect  # it serves deployments: on a Prefect server of its own

REFUSED = 2


def _dev_only(pipeline: dict[str, Any]) -> None:
    pipeline["stages"][0]["autoPromote"] = False


def test_a_refused_promotion_exits_2_in_a_child_process_and_in_a_served_run(world: World) -> None:
    assert not world.api.is_served(PROMOTE_STAGE, SERVED_DEPLOYMENT), (
        "promote-stage/conveyor is already served (`conveyor serve`?): this test serves it "
        "itself, and the other end-to-end tests expect flows to run in child processes"
    )
    world.edit_pipeline(_dev_only)
    code, output = world.run("release", app=world.app, ref="HEAD")
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    log_before = world.state_log()

    in_a_child = world.conveyor("promote", world.app, "prod", "--digest", digest)
    assert "running the flow in a child process" in in_a_child.stderr, in_a_child.stderr
    assert in_a_child.returncode == REFUSED, in_a_child.stdout + in_a_child.stderr
    assert "no evidence from stage 'staging'" in in_a_child.stdout + in_a_child.stderr

    with serving_promote_stage(world):
        served = world.conveyor("promote", world.app, "prod", "--digest", digest)
    assert "flow run" in served.stderr and "child process" not in served.stderr, served.stderr
    assert served.returncode == REFUSED, served.stdout + served.stderr
    assert "no evidence from stage 'staging'" in served.stdout + served.stderr

    assert world.desired("prod-eu") is None
    assert world.state_log() == log_before
