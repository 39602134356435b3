"""A caller of the Prefect API cannot pick the configuration a run reads.

The attack, before: create a run of promote-stage/conveyor with `config_file` pointing at a
configuration whose first stage is prod (no approval, a command gate running anything): it
deployed to prod and wrote a desired state into the real state repository. Now flows take no
configuration path; served runs read the configuration `serve` loaded, bound to its deployments
by digest."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conveyor.adapters.prefect_api import HEARTBEAT_ENVIRONMENT, PROMOTE_STAGE, SERVED_DEPLOYMENT
from conveyor.errors import InputError
from tests.support.world import World, stop_process

pytestmark = pytest.mark.serial  # a served deployment of its own: nothing else may run meanwhile

SERVE = """
from prefect import serve
from conveyor.config.reader import load_config
from deployments.serve import deployments
import os
config = load_config()
os.environ["CONVEYOR_CONFIG"] = str(config.path)
served = [d for d in deployments(config) if d.flow_name == "promote-stage"]
serve(*served, pause_on_shutdown=False)
"""


@contextmanager
def _served(world: World) -> Iterator[None]:
    started = datetime.datetime.now(datetime.UTC)
    logfile = world.root / "serve.log"
    with logfile.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE],
            env={**world.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1", **HEARTBEAT_ENVIRONMENT},
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            found = world.api.deployment_record(PROMOTE_STAGE, SERVED_DEPLOYMENT)
            polled = found.get("last_polled") if found else None
            if polled and datetime.datetime.fromisoformat(polled) > started:
                break
            assert server.poll() is None, logfile.read_text()[-3000:]
            assert time.monotonic() < deadline, "promote-stage/conveyor not served in 90 s"
            time.sleep(0.5)
        yield
    finally:
        stop_process(server)
        world.api.delete_deployment(PROMOTE_STAGE, SERVED_DEPLOYMENT)


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

    with _served(world):
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
