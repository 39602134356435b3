"""Exit codes end to end: a refused promotion ends `conveyor promote` with 2, as the README says,
whether the flow runs in a child process (no served deployment) or in a served run."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from conveyor.adapters.prefect_api import (
    HEARTBEAT_ENVIRONMENT,
    PROMOTE_STAGE,
    SERVED_DEPLOYMENT,
)
from tests.support.world import World, stop_process

pytestmark = pytest.mark.serial  # a served deployment of its own: nothing else may run meanwhile

REFUSED = 2
SERVE_PROMOTE_STAGE = """
from prefect import serve
from conveyor.adapters.prefect_api import SERVED_DEPLOYMENT
from flows.promote_stage import promote_stage
serve(promote_stage.to_deployment(name=SERVED_DEPLOYMENT), pause_on_shutdown=False)
"""


def _served_since(world: World, started: datetime.datetime) -> bool:
    found = world.api.deployment_record(PROMOTE_STAGE, SERVED_DEPLOYMENT)
    polled = found.get("last_polled") if found else None
    return bool(
        found
        and found.get("status") == "READY"
        and polled
        and datetime.datetime.fromisoformat(polled) > started
    )


@contextmanager
def _served_promote_stage(world: World) -> Iterator[None]:
    """`promote-stage/conveyor` served by a child process (as `conveyor serve` serves it) until
    the block ends; then the deployment is deleted, so later tests run flows in child processes."""
    logfile = world.root / "serve.log"
    started = datetime.datetime.now(datetime.UTC)
    with logfile.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE_PROMOTE_STAGE],
            env={**world.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1", **HEARTBEAT_ENVIRONMENT},
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not _served_since(world, started):
            assert server.poll() is None, logfile.read_text()[-3000:]
            assert time.monotonic() < deadline, "promote-stage/conveyor not served within 90 s"
            time.sleep(0.5)
        yield
    finally:
        stop_process(server)
        world.api.delete_deployment(PROMOTE_STAGE, SERVED_DEPLOYMENT)


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

    with _served_promote_stage(world):
        served = world.conveyor("promote", world.app, "prod", "--digest", digest)
    assert "flow run" in served.stderr and "child process" not in served.stderr, served.stderr
    assert served.returncode == REFUSED, served.stdout + served.stderr
    assert "no evidence from stage 'staging'" in served.stdout + served.stderr

    assert world.desired("prod-eu") is None
    assert world.state_log() == log_before
