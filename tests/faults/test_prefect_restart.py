"""The Prefect server restarts while a promotion holds its target (its gate is running).

Prefect keeps concurrency leases in memory unless told otherwise: before the fix the restart lost
the promotion's lease, its slot stayed taken for good, and every later promotion of the target
ended in TargetBusy. Now the local platform's server keeps its leases in files (the run keeps its
lease and gives the slot back), and on a server that still keeps them in memory the next
promotion finds the slot held by no live run and frees it after a lease. The scenario runs on a
Prefect server of its own (the shared one serves other tests), started, stopped and restarted by
its pid here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.platform import process
from conveyor.platform.components import PrefectServer
from conveyor.platform.local import LocalPlatform
from tasks.locks import LEASE_SECONDS, limit_name
from tests.support.convergence import (
    REPOSSESSOR_LOOP,
    assert_git_and_cluster_agree,
    held_slots,
    hold_the_dev_gate,
    wait_for,
)
from tests.support.world import World, isolated_world


class _LeasesInMemory(PrefectServer):
    """A server with Prefect's default lease storage, as a shared server may still run."""

    def environment(self) -> dict[str, str]:
        memory = "prefect.server.concurrency.lease_storage.memory"
        return {**super().environment(), "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": memory}


@pytest.fixture(params=["leases-in-files", "leases-in-memory"])
def own_prefect(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrefectServer]:
    kind = PrefectServer if request.param == "leases-in-files" else _LeasesInMemory
    server = kind(tmp_path / "prefect-state", process.free_port())
    server.up()
    try:
        yield server
    finally:
        server.down()


@pytest.fixture
def world(platform: LocalPlatform, own_prefect: PrefectServer, tmp_path: Path) -> Iterator[World]:
    prefix = f"f{uuid.uuid4().hex[:6]}"
    with isolated_world(platform, tmp_path / "world", prefix, prefect=own_prefect) as world:
        yield world


def _restart(server: PrefectServer) -> None:
    record = process.read_pidfile(server.pidfile)
    assert record is not None and process.is_running(record), "the test's Prefect server is down"
    process.stop(record, grace_seconds=server.stop_grace_seconds)
    assert not process.is_running(record)
    server.up()


def test_a_prefect_restart_during_a_gate_leaves_no_slot_held(
    world: World, own_prefect: PrefectServer, tmp_path: Path
) -> None:
    world.edit_pipeline(hold_the_dev_gate(tmp_path))
    (tmp_path / "hold").touch()
    release = world.start("release", app=world.app)
    wait_for((tmp_path / "entered").exists, "the dev gate started", 180)
    assert held_slots(world, "dev") == 1

    began = time.monotonic()
    _restart(own_prefect)
    restarted = time.monotonic()
    print(f"Prefect server restarted in {restarted - began:.1f}s")
    (tmp_path / "hold").unlink()
    code, output = world.finish(release)
    print(f"first release exited {code}:\n{output[-3000:]}")

    if not isinstance(own_prefect, _LeasesInMemory):  # the run kept its lease and gave it back
        freed = wait_for(
            lambda: held_slots(world, "dev") == 0,
            "the dev slot freed",
            LEASE_SECONDS + 2 * REPOSSESSOR_LOOP + 30,
        )
        print(f"dev slot free {freed:.1f}s after the first run ended")

    first = world.desired("dev")
    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
    )
    second = time.monotonic()
    code, output = world.run("release", app=world.app, timeout=300)
    print(f"second release exited {code} after {time.monotonic() - second:.1f}s")
    assert code == 0 and "TargetBusy" not in output, output
    if isinstance(own_prefect, _LeasesInMemory):  # the forgotten lease's slot, freed by the waiter
        assert f"{limit_name(world.app, 'dev')}: 1 slot(s) taken" in output, output
    promoted = world.desired("dev")
    assert promoted is not None and (first is None or promoted.digest != first.digest)
    assert_git_and_cluster_agree(world, "dev")

    code, again = world.run("reconcile", app=world.app, target="dev")
    assert code == 0 and "live matches" in again, again
    assert_git_and_cluster_agree(world, "dev")
    print(f"converged {time.monotonic() - restarted:.1f}s after the restart")


def _approval_after_dev(pipeline: dict[str, object]) -> None:
    """dev, then a `test` stage that needs an approval (no gates): the run waits at test.
    The server restarts while the run waits, and again right after the answer."""
    stages = pipeline["stages"]
    assert isinstance(stages, list)
    dev, test = stages[0], stages[1]
    test["approval"] = {"required": True, "timeout": "10m"}
    test.pop("gates", None)
    test["autoPromote"] = False
    pipeline["stages"] = [dev, test]


@pytest.mark.parametrize("own_prefect", ["leases-in-files"], indirect=True)
def test_a_prefect_restart_during_an_approval_wait_keeps_the_pause(
    world: World, own_prefect: PrefectServer
) -> None:
    world.edit_pipeline(_approval_after_dev)
    release = world.start("release", app=world.app)
    paused = world.waiting_run("test", timeout=240)

    began = time.monotonic()
    _restart(own_prefect)
    print(f"Prefect server restarted in {time.monotonic() - began:.1f}s")
    time.sleep(5)  # the paused run polls its state: it must come through the restart waiting
    assert release.poll() is None, world.finish(release)[1][-3000:]
    assert world.waiting_run("test", timeout=30).id == paused.id

    world.answer("test", approve=True, approver="carol")
    _restart(own_prefect)  # again, before the run may have read the answer
    code, output = world.finish(release, timeout=300)
    print(f"release exited {code} {time.monotonic() - began:.1f}s after the restart")
    assert code == 0, output[-4000:]
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    evidence = world.evidence(digest, "test")
    assert evidence is not None and evidence.approval is not None
    assert evidence.approval.approver == "carol"
    assert_git_and_cluster_agree(world, "dev", "test")
    print(f"converged {time.monotonic() - began:.1f}s after the restart")
