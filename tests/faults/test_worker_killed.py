"""The process serving promote-stage (what `conveyor serve` runs) is SIGKILLed after a
promotion's apply and before its record: the host died mid-promotion.

Nothing is recorded for the killed run, so git still says what ran before and the cluster runs
the new digest. The scenario checks that this disagreement is the control loop's to correct: the
killed run's slot frees itself once its lease runs out, a reconcile puts git's digest back, and
the same promotion started again on a new worker passes, each without a human untangling state.
(tests/faults/test_prefect_worker_killed.py kills a `prefect worker` of a work pool instead.)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tasks.locks import LEASE_SECONDS
from tests.support.convergence import (
    REPOSSESSOR_LOOP,
    assert_git_and_cluster_agree,
    dev_then_held_test,
    held_slots,
    wait_for,
)
from tests.support.world import World, serving_promote_stage


@pytest.mark.own_prefect  # serves promote-stage/conveyor, which other tests' CLI runs would find
def test_a_worker_killed_between_apply_and_record_converges(world: World, tmp_path: Path) -> None:
    world.edit_pipeline(dev_then_held_test(tmp_path))
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    before = world.desired("dev").digest  # type: ignore[union-attr]
    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
    )
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    after = world.desired("dev").digest  # type: ignore[union-attr]
    assert after != before

    with serving_promote_stage(world) as worker:
        first = world.conveyor("promote", world.app, "test", "--digest", before, timeout=240)
        assert first.returncode == 0, first.stdout + first.stderr
        (tmp_path / "entered").unlink()
        (tmp_path / "hold").touch()
        created = world.conveyor("promote", world.app, "test", "--digest", after, "--no-wait")
        assert created.returncode == 0, created.stdout + created.stderr
        wait_for((tmp_path / "entered").exists, "the served run's test gate started", 180)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and the run it was serving
        killed_at = time.monotonic()

    assert world.live_digest("test") == after, "the killed run had applied"
    assert world.desired("test").digest == before, "nothing recorded for the killed run"  # type: ignore[union-attr]
    evidence = world.evidence(after, "test")
    assert evidence is None or evidence.verdict != "passed", evidence

    freed = wait_for(
        lambda: held_slots(world, "test") == 0,
        "the killed run's slot on test freed",
        LEASE_SECONDS + 2 * REPOSSESSOR_LOOP + 30,
    )
    print(f"\ntest's slot free {freed:.0f}s after the kill")
    code, output = world.run("reconcile", app=world.app, target="test")
    assert code == 0, output
    assert_git_and_cluster_agree(world, "test")
    print(f"reconcile put git's digest back {time.monotonic() - killed_at:.0f}s after the kill")

    (tmp_path / "hold").unlink()
    with serving_promote_stage(world):
        again = world.conveyor("promote", world.app, "test", "--digest", after, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert world.desired("test").digest == after  # type: ignore[union-attr]
    evidence = world.evidence(after, "test")
    assert evidence is not None and evidence.verdict == "passed", evidence
    assert_git_and_cluster_agree(world, "dev", "test")
    print(
        f"the re-run on a new worker converged {time.monotonic() - killed_at:.0f}s after the kill"
    )
