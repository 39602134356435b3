"""The control loop end to end: reconcile corrects drift and applies what git says, a killed run
converges on the next one, rollback puts the previous digest back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.prefect_api import HEARTBEAT_SECONDS, SILENCE_SECONDS
from tests.support.world import World, log_times


def _dev_only(pipeline: dict[str, Any]) -> None:
    pipeline["stages"][0]["autoPromote"] = False


def _release(world: World) -> str:
    code, output = world.run("release", app=world.app, ref="HEAD")
    assert code == 0, output
    return world.desired("dev").digest  # type: ignore[union-attr]


def _two_versions(world: World) -> tuple[str, str]:
    world.edit_pipeline(_dev_only)
    first = _release(world)
    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "release: two\n  log-level:", "web v2"
    )
    second = _release(world)
    assert second != first
    assert world.live_digest("dev") == second
    return first, second


def test_reconcile_undoes_a_manual_kubectl_change(world: World) -> None:
    world.edit_pipeline(_dev_only)
    digest = _release(world)
    log_before = world.state_log()
    world.kubectl("dev", "scale", "deployment/web", "--replicas=5")
    world.kubectl("dev", "delete", "configmap", "web-config")
    assert world.live("ConfigMap", "web-config", "dev") is None

    code, output = world.run("reconcile", app=world.app, target="dev")

    assert code == 0, output
    assert "drifted" in output and "spec.replicas" in output, output
    deployment = world.live("Deployment", "web", "dev")
    assert deployment is not None and deployment["spec"]["replicas"] == 1
    assert world.live("ConfigMap", "web-config", "dev") is not None
    assert world.live_digest("dev") == digest
    code, output = world.run("reconcile", app=world.app, target="dev")
    assert code == 0, output
    assert f"live matches {digest[:19]}" in output
    assert world.state_log() == log_before, "reconcile records nothing in git"


def test_reconcile_applies_a_revert_committed_to_the_state_repository(
    world: World, tmp_path: Path
) -> None:
    first, second = _two_versions(world)
    clone = tmp_path / "state-clone"
    world.git("clone", "-q", world.state_repository, str(clone), cwd=tmp_path)
    log = world.git("log", "--format=%H %s", cwd=clone).splitlines()
    promoted = [
        line.split()[0] for line in log if f"{world.app}/dev: promote {second[:19]}" in line
    ]
    assert len(promoted) == 1, log
    world.git("revert", "--no-edit", promoted[0], cwd=clone)
    world.git("push", "-q", "origin", "HEAD:main", cwd=clone)
    assert world.desired("dev").digest == first  # type: ignore[union-attr]

    code, output = world.run("reconcile", app=world.app, target="dev")

    assert code == 0, output
    assert world.live_digest("dev") == first
    assert world.desired("dev").digest == first  # type: ignore[union-attr]


def _read_until(process: subprocess.Popen[str], marker: str, lines: list[str]) -> threading.Event:
    """Collect the process's output lines in a thread; the event is set once `marker` shows."""
    seen = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    return seen


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started (its gate commands), as a dying host would."""
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    os.kill(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone already
            _kill_tree(child)


# It times Prefect's crash automation, which a busy server runs late: on a server of its own.
@pytest.mark.own_prefect
def test_a_run_killed_mid_apply_converges_on_the_next_run(world: World) -> None:
    def slow_dev(pipeline: dict[str, Any]) -> None:
        _dev_only(pipeline)
        pipeline["stages"][0]["gates"] = [
            {
                "type": "command",
                "name": "slow",
                "command": [sys.executable, "-c", "import time; time.sleep(20)"],
            }
        ]

    world.edit_pipeline(slow_dev)
    killed = world.start("release", app=world.app, ref="HEAD")
    lines: list[str] = []
    applied = _read_until(killed, "Task run 'apply-dev' - Finished in state Completed", lines)
    assert applied.wait(120), "".join(lines)
    _kill_tree(killed.pid)
    killed_at = time.monotonic()
    killed.wait(30)

    assert world.desired("dev") is None, "nothing recorded for a run that did not finish"
    assert not any("/dev:" in line for line in world.state_log())
    digest = world.live_digest("dev")
    assert digest is not None, "the killed run had applied"
    evidence = world.evidence(digest, "dev")
    assert evidence is None or evidence.verdict != "passed"
    holders = world.api.flow_runs(tags=[f"conveyor-holds:{world.app}/dev"], states=["RUNNING"])
    assert len(holders) == 1, "the killed run still holds dev until its lease runs out"

    world.edit_pipeline(lambda p: p["stages"][0].pop("gates"))
    code, output = world.run("release", timeout=150, app=world.app, ref="HEAD")

    assert code == 0, output
    waited = min(log_times(output, "Task run 'apply-dev'")) - min(log_times(output, "Flow run"))
    print(f"\nthe re-run waited about {waited:.0f}s for the killed run's lease on dev")
    assert world.desired("dev").digest == digest  # type: ignore[union-attr]
    evidence = world.evidence(digest, "dev")
    assert evidence is not None and evidence.verdict == "passed"
    assert sum(f"{world.app}/dev: promote" in line for line in world.state_log()) == 1
    inventory = world.kube.get(
        "v1", "ConfigMap", f"conveyor-inventory.{world.app}.dev", world.namespace("dev")
    )
    assert inventory is not None
    objects = json.loads(inventory["data"]["objects"])
    assert sorted((o["kind"], o["name"]) for o in objects) == [
        ("ConfigMap", "web-config"),
        ("Deployment", "web"),
        ("Service", "web"),
    ]
    # Its heartbeats stopped with it: Conveyor's automation marks it Crashed (within
    # SILENCE_SECONDS of its last heartbeat, HEARTBEAT_SECONDS apart)
    deadline = killed_at + HEARTBEAT_SECONDS + SILENCE_SECONDS + 45
    while (run := world.api.flow_run(holders[0].id)).state_type != "CRASHED":
        assert time.monotonic() < deadline, f"still {run.state_name} after the kill"
        time.sleep(2)
    print(f"marked Crashed {time.monotonic() - killed_at:.0f}s after the kill")
    assert "no heartbeat" in run.message
    assert not world.api.flow_runs(tags=[f"conveyor-holds:{world.app}/dev"], states=["RUNNING"])


def test_rollback_puts_the_previous_digest_back(world: World) -> None:
    first, second = _two_versions(world)

    code, output = world.run("rollback", app=world.app, target="dev")

    assert code == 0, output
    assert world.live_digest("dev") == first
    assert world.desired("dev").digest == first  # type: ignore[union-attr]
    assert world.state_log()[0] == f"{world.app}/dev: rollback {first[:19]}… (from {second[:19]})"
