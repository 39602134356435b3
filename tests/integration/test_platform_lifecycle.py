"""`conveyor platform up | status | env | down` on a platform of its own, through the real CLI.

This test owns a second platform in a temporary state folder, so it can kill, restart and stop
components without disturbing the session's platform.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conveyor.platform import process
from tests.support.processes import processes_mentioning


def _conveyor(state: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # KUBECONFIG names another platform's kubeconfig, as after `eval "$(conveyor platform env)"`
    environment = dict(os.environ, CONVEYOR_STATE=str(state), KUBECONFIG=str(_users(state)))
    command = [sys.executable, "-c", "from conveyor.cli import main; main()", *args]
    return subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )


def _users(state: Path) -> Path:
    """A kubeconfig of the user's, with a context of the name our cluster has."""
    path = state.parent / "users-kubeconfig"
    if not path.exists():
        path.write_text(USERS_KUBECONFIG)
    return path


USERS_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: kwok-conveyor, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: kwok-conveyor, user: {}}]
contexts: [{name: kwok-conveyor, context: {cluster: kwok-conveyor, user: kwok-conveyor}}]
current-context: kwok-conveyor
"""


def _components(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(result.stdout)
    return {component["component"]: component for component in data["components"]}


def test_up_is_idempotent_restarts_dead_parts_and_down_leaves_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"

    # One cluster is enough here (the session's platform runs two: test_local_platform.py).
    first = _conveyor(state, "platform", "up", "--clusters", "1", "--output", "json")
    assert first.returncode == 0, first.stderr
    components = _components(first)
    assert "kubernetes-2" not in components
    assert all(c["healthy"] for c in components.values()), components
    assert components["kubernetes"]["address"].startswith("https://127.0.0.1:")
    pids = {name: c["processes"] for name, c in components.items()}
    assert set(pids["kubernetes"]) >= {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok-controller",
    }

    started = time.monotonic()
    again = _conveyor(state, "platform", "up", "--output", "json")
    assert again.returncode == 0, again.stderr
    assert {n: c["processes"] for n, c in _components(again).items()} == pids
    assert time.monotonic() - started < 30, "a second `up` reuses healthy components"
    other = _conveyor(state, "platform", "up", "--clusters", "3")
    assert other.returncode == 2, other.stderr
    assert "runs 1 cluster(s), not 3" in other.stderr and "down --purge" in other.stderr

    # Kill the registry, and leave its pid file pointing at a live process that is not ours
    # (this test's own pid): `up` must not signal it, and must start a new registry.
    registry_pid = pids["registry"]["docker-registry"]
    os.kill(registry_pid, signal.SIGKILL)
    pidfile = state / "run" / "registry.pid"
    record = json.loads(pidfile.read_text())
    pidfile.write_text(json.dumps(dict(record, pid=os.getpid())))
    status = _conveyor(state, "platform", "status", "--output", "json")
    assert status.returncode == 1
    assert not _components(status)["registry"]["healthy"]

    restarted = _conveyor(state, "platform", "up", "--output", "json")
    assert restarted.returncode == 0, restarted.stderr
    after = {n: c["processes"] for n, c in _components(restarted).items()}
    assert after["registry"]["docker-registry"] not in (registry_pid, os.getpid())
    assert after["kubernetes"] == pids["kubernetes"]
    assert after["prefect"] == pids["prefect"]

    exports = _conveyor(state, "platform", "env")
    assert f"export KUBECONFIG={state / 'kubeconfig'}" in exports.stdout
    assert "export PREFECT_API_URL=http://127.0.0.1:" in exports.stdout
    credential = (state / "prefect" / "api-auth-string").read_text().strip()
    assert f"export PREFECT_API_AUTH_STRING={credential}" in exports.stdout, "else every call 401s"

    assert processes_mentioning(state), "the platform's processes are found by the scan"
    down = _conveyor(state, "platform", "down")
    assert down.returncode == 0, down.stderr
    all_pids = [pid for procs in after.values() for pid in procs.values()]
    assert not [pid for pid in all_pids if process.start_ticks(pid) is not None]
    assert processes_mentioning(state) == []
    assert _conveyor(state, "platform", "status").returncode == 1

    purged = _conveyor(state, "platform", "down", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not (state / "kwok").exists() and not (state / "kubeconfig").exists()
    # kwokctl removes a deleted cluster's entries from the kubeconfig KUBECONFIG names
    assert _users(state).read_text() == USERS_KUBECONFIG, "the user's kubeconfig is untouched"
