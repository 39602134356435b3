"""One of two `prefect worker` processes of a process work pool, taking the deployments of
deployments/prefect.yaml as a team runs them (the scale profile's way), is SIGKILLed with the
flow run it started, after the run's apply and before its record: the worker's host died.

The run is marked Crashed by Conveyor's automation once its heartbeats stop, its slot on the
target frees itself once its lease runs out, and the same promotion started again is taken by
the surviving worker and converges: git and the cluster agree, with no human untangling state.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.adapters.prefect_api import PROMOTE_STAGE, SERVED_DEPLOYMENT, SILENCE_SECONDS
from conveyor.platform import process
from conveyor.platform.components import prefect_command
from conveyor.platform.workers import FLOW_RUN_ENVIRONMENT, JOB_TEMPLATE_FILE
from tasks.locks import LEASE_SECONDS
from tests.support.convergence import (
    REPOSSESSOR_LOOP,
    assert_git_and_cluster_agree,
    dev_then_held_test,
    held_slots,
    wait_for,
)
from tests.support.world import REPO_ROOT, World, stop_process

POOL = "conveyor"
"""The process work pool of deployments/prefect.yaml (on this module's own Prefect server)."""


@contextlib.contextmanager
def _process_workers(world: World, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """promote-stage/conveyor registered from deployments/prefect.yaml on its process pool
    (with Conveyor's job template) and `count` workers taking its runs (each the leader of a
    process group of its own), as the scale profile runs them, with the world's configuration;
    all gone when the block ends."""
    env = {
        **world.env,
        **FLOW_RUN_ENVIRONMENT,
        "CONVEYOR_HOME": str(REPO_ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }

    def prefect(*arguments: str) -> None:
        done = subprocess.run(
            [prefect_command(), "--no-prompt", *arguments],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    template = str(JOB_TEMPLATE_FILE)
    prefect("work-pool", "create", POOL, "--type", "process", "--base-job-template", template)
    deployment = f"{PROMOTE_STAGE}/{SERVED_DEPLOYMENT}"
    prefect("deploy", "--prefect-file", "deployments/prefect.yaml", "--name", deployment)
    workers = []
    try:
        for number in range(1, count + 1):
            command = [prefect_command(), "worker", "start", "--pool", POOL]
            with (world.root / f"worker-{number}.log").open("w") as log:
                workers.append(
                    subprocess.Popen(
                        [*command, "--name", f"worker-{number}"],
                        env=env,
                        cwd=world.root,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        wait_for(
            lambda: (
                world.api.deployment_record(PROMOTE_STAGE, SERVED_DEPLOYMENT).get("status")
                == "READY"
            ),
            "the workers polled the pool (the deployment READY)",
            90,
        )
        yield workers
    finally:
        for worker in workers:
            stop_process(worker)
        world.api.delete_deployment(PROMOTE_STAGE, SERVED_DEPLOYMENT)


def _process_running(run_id: str) -> int | None:
    """The pid of the process running flow run `run_id` (a worker's child), if one runs it."""
    needle = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and needle in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
    return None


def _worker_of(pid: int, workers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """The worker among `workers` that `pid` descends from."""
    by_pid = {worker.pid: worker for worker in workers}
    ancestor: int | None = pid
    while ancestor is not None and ancestor > 1:
        if ancestor in by_pid:
            return by_pid[ancestor]
        ancestor = process.parent_pid(ancestor)
    raise AssertionError("the run's process descends from none of the workers")


@pytest.mark.own_prefect  # registers promote-stage/conveyor on a work pool of its own server
def test_a_prefect_worker_killed_mid_run_is_marked_crashed_and_another_worker_converges(
    world: World, tmp_path: Path
) -> None:
    world.edit_pipeline(dev_then_held_test(tmp_path))
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    (tmp_path / "hold").touch()

    with _process_workers(world, 2) as workers:
        created = world.conveyor(
            "promote", world.app, "test", "--digest", digest, "--no-wait", "--output", "json"
        )
        assert created.returncode == 0, created.stdout + created.stderr
        run_id = json.loads(created.stdout)["id"]
        wait_for((tmp_path / "entered").exists, "the worker's run reached the test gate", 180)
        running = _process_running(run_id)
        assert running is not None, "no process runs the flow run"
        killed = _worker_of(running, workers)
        os.killpg(killed.pid, signal.SIGKILL)  # the worker and the run it started
        with contextlib.suppress(ProcessLookupError):
            os.kill(running, signal.SIGKILL)
        killed_at = time.monotonic()

        assert world.live_digest("test") == digest, "the killed run had applied"
        assert world.desired("test") is None, "nothing recorded for the killed run"
        crashed = wait_for(
            lambda: world.api.flow_run_record(run_id)["state_type"] == "CRASHED",
            "the killed run marked Crashed",
            SILENCE_SECONDS + 90,
        )
        print(f"\nthe killed run was marked Crashed {crashed:.0f}s after the kill")
        wait_for(
            lambda: held_slots(world, "test") == 0,
            "the killed run's slot on test freed",
            LEASE_SECONDS + 2 * REPOSSESSOR_LOOP + 30,
        )
        print(f"test's slot free {time.monotonic() - killed_at:.0f}s after the kill")

        (tmp_path / "hold").unlink()
        again = world.conveyor(
            "promote", world.app, "test", "--digest", digest, "--output", "json", timeout=240
        )
        assert again.returncode == 0, again.stdout + again.stderr
        rerun_id = json.loads(again.stdout)["id"]
        survivor = next(worker for worker in workers if worker is not killed)
        assert survivor.poll() is None, "the other worker still runs"
        log = (world.root / f"worker-{workers.index(survivor) + 1}.log").read_text()
        assert rerun_id in log, f"the re-run {rerun_id} went through the surviving worker:\n{log}"

    assert world.desired("test").digest == digest  # type: ignore[union-attr]
    evidence = world.evidence(digest, "test")
    assert evidence is not None and evidence.verdict == "passed", evidence
    assert_git_and_cluster_agree(world, "dev", "test")
    print(f"the re-run on the other worker converged {time.monotonic() - killed_at:.0f}s after")
