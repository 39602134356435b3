"""`conveyor platform up --profile scale` in a state folder of its own, through the real CLI.

The whole profile comes up (the cluster and the registry too: `up` starts them, and a run of a
deployment may need them), so the test owns every process it checks and kills. It asks the
servers themselves whether Prefect uses them: PostgreSQL holds the flow run, Redis carries the
run's events and a concurrency lease. A run of a real Conveyor deployment registered from
deployments/prefect.yaml goes through a worker; a killed worker is restarted by `up`, the others
left alone; `down` leaves no process behind, even when the test fails half-way.

It runs alone (`serial`): it starts some fifteen processes on this 2-core machine and must end
within 120 s, which it does alone (40 to 55 s here), not beside four other tests (its first `up`
alone then took 90 s).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.platform import process
from conveyor.platform.local import LocalPlatform
from conveyor.platform.redis_server import Redis
from tests.support.prefect import PrefectREST
from tests.support.processes import processes_mentioning

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = [
    "kubernetes",
    "registry",
    "postgres",
    "redis",
    "prefect-api",
    "prefect-services",
    "worker-1",
    "worker-2",
]


def _conveyor(
    env: dict[str, str], *args: str, timeout: float = 110
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from conveyor.cli import main; main()", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _components(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.stdout, result.stderr[-3000:]
    data = json.loads(result.stdout)
    assert data["profile"] == "scale"
    return {component["component"]: component for component in data["components"]}


def _config(folder: Path, state: Path) -> Path:
    """config/ with its state repository in `folder` and its cluster the platform's own."""
    shutil.copytree(REPO_ROOT / "config", folder)
    path = folder / "conveyor.yaml"
    conveyor = yaml.safe_load(path.read_text())
    conveyor["stateRepository"] = str(folder.parent / "state.git")
    conveyor["clusters"]["local"]["kubeconfig"] = str(state / "kubeconfig")
    path.write_text(yaml.safe_dump(conveyor, sort_keys=False))
    return path


@pytest.fixture
def scale_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a shell whose CONVEYOR_STATE is a new folder; whatever the test
    does, the platform there is taken down at the end."""
    state = tmp_path / "state"
    env = dict(
        os.environ,
        CONVEYOR_STATE=str(state),
        CONVEYOR_CONFIG=str(_config(tmp_path / "config", state)),
    )
    for name in [name for name in env if name.startswith("PREFECT_")]:
        del env[name]  # another platform's Prefect, if the shell had one
    try:
        yield env
    finally:
        _conveyor(env, "platform", "down", timeout=120)


def _wait_for_run(api: PrefectREST, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = api.flow_run_record(run_id)
        if record["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return record
        time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish within {timeout}s: {record}")


@pytest.mark.serial  # see the module's docstring
@pytest.mark.timeout(120)
def test_the_scale_profile_runs_deployments_on_postgres_redis_and_workers(
    scale_env: dict[str, str],
) -> None:
    started = time.monotonic()
    state = Path(scale_env["CONVEYOR_STATE"])

    up = _conveyor(
        scale_env, "platform", "up", "--profile", "scale", "--clusters", "1", "--output", "json"
    )
    assert up.returncode == 0, up.stderr[-3000:]
    components = _components(up)
    assert list(components) == COMPONENTS
    assert all(c["healthy"] for c in components.values()), components
    status = _conveyor(scale_env, "platform", "status", "--output", "json")
    assert status.returncode == 0, status.stdout
    pids = {name: c["processes"] for name, c in _components(status).items()}
    assert json.loads((state / "platform.json").read_text())["profile"] == "scale"

    platform = LocalPlatform(state)  # the recorded profile
    assert platform.scale is not None
    scale = platform.scale
    api = PrefectREST(platform.prefect.api_url, auth_string=platform.prefect.auth_string())
    # Prefect's database is PostgreSQL: its tables are there, and the API reads what is in them.
    assert scale.postgres.psql("SELECT to_regclass('public.flow_run') IS NOT NULL") == "t\n"
    assert "postgresql+asyncpg://" in _environ(pids["prefect-api"]["prefect-api"])

    # A real Conveyor deployment of deployments/prefect.yaml, run by one of the workers: an app
    # with no desired state yet, so the reconcile finds nothing to do.
    run = api.create_flow_run("reconcile", "conveyor", {"app": "web", "target": "dev"})
    record = _wait_for_run(api, run.id)
    assert record["state_type"] == "COMPLETED", record
    assert record["work_pool_name"] == "conveyor"
    in_postgres = scale.postgres.psql(
        "SELECT f.name, d.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
        f" JOIN deployment d ON d.id = r.deployment_id WHERE r.id = '{run.id}'"
    )
    assert in_postgres == "reconcile|conveyor|COMPLETED\n"

    # A caller of the API may give a run job variables; the pool's template takes none, so a
    # run cannot be pointed at another configuration or made to run another command.
    marker = state.parent / "job-variables-obeyed"
    crafted = {
        "env": {"CONVEYOR_CONFIG": str(state.parent / "theirs.yaml")},
        "command": f"touch {marker}",
    }
    deployment = api.deployment_id("reconcile", "conveyor")
    body = {"parameters": {"app": "web", "target": "dev"}, "job_variables": crafted}
    crafted_run = api.post(f"/deployments/{deployment}/create_flow_run", body)
    record = _wait_for_run(api, crafted_run["id"])
    assert record["state_type"] == "COMPLETED", record
    assert not marker.exists(), "the worker ran the caller's command"

    # Redis carries Prefect's events from the API (the run's state changes went through its
    # stream) to the services process, which reads them (its triggers and event persister) ...
    assert scale.redis.call("TYPE", "events") == "stream"
    assert _stream_mentions(scale.redis, "events", run.id), "no event of the run in Redis"
    readers = _groups(scale.redis, "events")
    assert readers["reactive-triggers"]["entries-read"] > 0, readers
    assert readers["event-persister"]["entries-read"] > 0, readers
    # ... and holds the concurrency leases (Conveyor's target locks).
    limit = f"scale-check-{uuid.uuid4().hex[:8]}"
    api.post("/v2/concurrency_limits/", {"name": limit, "limit": 1})
    taken = api.post(
        "/v2/concurrency_limits/increment-with-lease",
        {"names": [limit], "slots": 1, "mode": "concurrency", "lease_duration": 60},
    )
    lease = f"prefect:concurrency:lease:{taken['lease_id']}"
    assert scale.redis.call("EXISTS", lease) == 1
    api.post("/v2/concurrency_limits/decrement-with-lease", {"lease_id": taken["lease_id"]})
    assert scale.redis.call("EXISTS", lease) == 0

    # A worker dies (with the runs it started): `status` says so, `up` starts it again and
    # leaves every other process as it was.
    dead = pids["worker-1"]["prefect-worker"]
    os.killpg(dead, signal.SIGKILL)
    status = _conveyor(scale_env, "platform", "status", "--output", "json")
    assert status.returncode == 1
    assert not _components(status)["worker-1"]["healthy"]
    again = _conveyor(scale_env, "platform", "up", "--output", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    after = {name: c["processes"] for name, c in _components(again).items()}
    assert after["worker-1"]["prefect-worker"] not in (None, dead)
    assert {n: p for n, p in after.items() if n != "worker-1"} == {
        n: p for n, p in pids.items() if n != "worker-1"
    }

    down = _conveyor(scale_env, "platform", "down")
    assert down.returncode == 0, down.stderr
    every_pid = [pid for processes in after.values() for pid in processes.values() if pid]
    assert not [pid for pid in every_pid if process.start_ticks(pid) is not None]
    assert processes_mentioning(state) == []
    print(f"scale profile test: {time.monotonic() - started:.1f}s")


def _environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().replace(b"\0", b"\n").decode()


def _stream_mentions(redis: Redis, stream: str, text: str) -> bool:
    """True when one of the stream's last thousand entries mentions `text`."""
    entries = redis.call("XREVRANGE", stream, "+", "-", "COUNT", "1000")
    return text in json.dumps(entries)


def _groups(redis: Redis, stream: str) -> dict[str, dict[str, Any]]:
    """The consumer groups reading `stream`, by name, each as its field -> value."""
    found = redis.call("XINFO", "GROUPS", stream)
    assert isinstance(found, list)
    groups = [dict(zip(group[::2], group[1::2], strict=True)) for group in found]
    return {str(group["name"]): group for group in groups}
