"""The scale profile's workers and deployments: deployments/prefect.yaml, run as a team runs it.

Instead of one `conveyor serve` process that registers and runs every flow, the deployments of
`deployments/prefect.yaml` are registered with `prefect deploy --prefect-file
deployments/prefect.yaml --all` on its process work pool, and two or more `prefect worker start
--pool <pool> --type process` processes take their flow runs, each run in a child process of a
worker. So the file a team deploys to its own servers is the one that runs here.

The file's pull step moves a run into `$CONVEYOR_HOME`, resolved when it is deployed: the
checkout that holds the file. A worker runs with what a served run gets: the platform's
environment (cluster, registry, image mirrors, kubectl, Helm), the Prefect client's settings,
the configuration the runs read ($CONVEYOR_CONFIG when `up` runs, else the checkout's
config/conveyor.yaml) and the heartbeats that let Conveyor's automation mark a run whose process
died as Crashed. A running worker keeps the environment it started with: `down`, then `up`, to
change it.

A worker is healthy while its process runs and the Prefect API has had a heartbeat from it (by
its name) since that process started. Deployments are registered again when the file or a flow
module changed since the last registration (a digest in `<state>/prefect/deployed`), or when the
pool has fewer deployments than the file names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from conveyor.adapters.prefect_api import HEARTBEAT_ENVIRONMENT, PLAIN_CONSOLE_ENVIRONMENT
from conveyor.errors import ConveyorError, PlatformError
from conveyor.platform import process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.components import prefect_command
from conveyor.platform.prefect_split import PrefectAPIServer
from conveyor.platform.service import ServiceProcess, run_command

DEPLOYMENTS_FILE = Path("deployments") / "prefect.yaml"
JOB_TEMPLATE_FILE = Path("deployments") / "process-job-template.json"
"""The process pool's base job template: it declares no job variable, so what a caller of the
API passes as a run's job variables (an `env` with another CONVEYOR_CONFIG, a `command`) is
ignored; the flow runs get the worker's environment and Prefect's own command."""
FLOW_RUN_ENVIRONMENT = {**HEARTBEAT_ENVIRONMENT, **PLAIN_CONSOLE_ENVIRONMENT}
"""What a worker gives the flow runs it starts, besides the platform's environment (the pool's
template passes nothing: see JOB_TEMPLATE_FILE)."""
WORKER_QUERY_SECONDS = "5"
"""How often a worker asks for scheduled runs (Prefect's default: 10 s)."""
START_SECONDS = 90.0


def conveyor_home() -> Path:
    """The Conveyor checkout whose deployments/prefect.yaml is deployed: $CONVEYOR_HOME, else the
    checkout this package is installed from (an editable install, as ./dev makes)."""
    configured = os.environ.get("CONVEYOR_HOME")
    home = Path(configured) if configured else Path(__file__).resolve().parents[2]
    if not (home / DEPLOYMENTS_FILE).is_file():
        raise PlatformError(
            f"deployments: no {DEPLOYMENTS_FILE} in {home}",
            hint="set CONVEYOR_HOME to the Conveyor checkout whose deployments the workers run",
        )
    return home.absolute()


def conveyor_config(home: Path) -> Path:
    """The configuration the workers' runs read: $CONVEYOR_CONFIG, else the checkout's."""
    chosen = Path(os.environ.get("CONVEYOR_CONFIG") or home / "config" / "conveyor.yaml")
    if not chosen.is_file():
        raise PlatformError(
            f"workers: no configuration at {chosen}",
            hint="set CONVEYOR_CONFIG to the conveyor.yaml the flow runs should read",
        )
    return chosen.absolute()


class Deployments:
    """The deployments of deployments/prefect.yaml, on the file's process work pool."""

    name = "deployments"

    def __init__(self, state: Path, api: PrefectAPIServer, home: Path) -> None:
        self.api = api
        self.home = home
        self.file = home / DEPLOYMENTS_FILE
        self.record = api.home / "deployed"
        self.log = state / "logs" / "deployments.log"
        self._spec: dict[str, Any] = yaml.safe_load(self.file.read_text()) or {}

    @property
    def pool(self) -> str:
        """The process pool the file's deployments use (`definitions.work_pool.name`)."""
        try:
            return str(self._spec["definitions"]["work_pool"]["name"])
        except (KeyError, TypeError):
            raise PlatformError(
                f"deployments: {self.file} names no process work pool (definitions.work_pool)"
            ) from None

    def on_pool(self) -> int:
        return sum(
            1
            for deployment in self._spec.get("deployments") or []
            if (deployment.get("work_pool") or {}).get("name") == self.pool
        )

    def digest(self) -> str:
        """What a registration depends on: the file and every flow module."""
        digest = hashlib.sha256()
        for path in [self.file, *sorted((self.home / "flows").glob("*.py"))]:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()

    def environment(self) -> dict[str, str]:
        return dict(os.environ, **self.api.environment(), CONVEYOR_HOME=str(self.home))

    def _prefect(self, *arguments: str) -> None:
        # From the checkout: prefect deploy reads the file's entrypoints relative to its folder.
        command = [prefect_command(), "--no-prompt", *arguments]
        run_command(self.name, command, self.environment(), self.log, timeout=300, cwd=self.home)

    def ensure(self, progress: PlatformProgress | None = None) -> None:
        """Create the pool if it is missing; register the deployments when they are stale."""
        api = self.api.api()
        template_file = self.home / JOB_TEMPLATE_FILE
        wanted = json.loads(template_file.read_text())
        template = api.work_pool_template(self.pool)
        if template is None:
            if progress:
                progress(f"creating the process work pool {self.pool}", 0, 0)
            self._prefect(
                "work-pool",
                "create",
                self.pool,
                "--type",
                "process",
                "--base-job-template",
                str(template_file),
            )
        elif template != wanted:
            self._prefect(
                "work-pool", "update", self.pool, "--base-job-template", str(template_file)
            )
        digest = self.digest()
        try:
            recorded = self.record.read_text().strip()
        except OSError:
            recorded = ""
        if recorded == digest and api.count_deployments(self.pool) >= self.on_pool():
            return
        if progress:
            progress(f"registering the deployments of {DEPLOYMENTS_FILE}", 0, 0)
        self.record.unlink(missing_ok=True)
        self._prefect("deploy", "--prefect-file", str(DEPLOYMENTS_FILE), "--all")
        self.record.write_text(digest + "\n")


class PrefectWorker(ServiceProcess):
    """`prefect worker start --pool <pool> --type process --name worker-<n>`."""

    process_name = "prefect-worker"
    stop_grace_seconds = 15.0
    healthy_detail = "process worker"

    def __init__(self, state: Path, number: int, api: PrefectAPIServer, pool: str) -> None:
        self.name = f"worker-{number}"
        super().__init__(state, api.port)
        self.api = api
        self.pool = pool

    @property
    def data_folder(self) -> None:
        return None

    @property
    def shown_address(self) -> str:
        return f"pool {self.pool}"

    def detail(self, record: process.ProcessRecord) -> str:
        config = _environment_of(record.pid).get("CONVEYOR_CONFIG", "?")
        return f"process worker, runs read {config}"

    def probe(self, record: process.ProcessRecord) -> str | None:
        try:
            workers = self.api.api().pool_workers(self.pool)
        except ConveyorError as exc:
            return f"cannot ask the Prefect API about it: {exc.message}"
        found = workers.get(self.name)
        beat = found.get("last_heartbeat_time") if found else None
        if not beat:
            return "no heartbeat at the Prefect API yet"
        try:
            started = self.pidfile.stat().st_mtime
        except OSError:
            return "no pid file"
        # The pid file is written just after the process starts, and a worker beats once
        # before it polls: a heartbeat older than the pid file came from a previous process.
        if datetime.fromisoformat(beat).timestamp() < started - 1:
            return "no heartbeat at the Prefect API since it started"
        if found and found.get("status") != "ONLINE":
            return f"the Prefect API says {found.get('status')}"
        return None

    def spawn(self, environment: Mapping[str, str]) -> None:
        """Start the worker (stopping a dead one of ours first); `wait` for it after."""
        command = [prefect_command(), "worker", "start", "--pool", self.pool]
        command += ["--type", "process", "--name", self.name]
        self._spawn(command, env=environment, cwd=self.api.home)

    def wait(self) -> None:
        self._wait_healthy(START_SECONDS)


def start_workers(
    workers: Sequence[PrefectWorker],
    environment: Mapping[str, str],
    progress: PlatformProgress | None = None,
) -> None:
    """Start every worker that is not healthy, all at once, and wait for each."""
    starting = [worker for worker in workers if not worker.health().healthy]
    if starting and progress:
        progress(f"starting {', '.join(worker.name for worker in starting)}", 0, 0)
    worker_environment = {
        **environment,
        **FLOW_RUN_ENVIRONMENT,
        "PREFECT_WORKER_QUERY_SECONDS": WORKER_QUERY_SECONDS,
    }
    for worker in starting:
        worker.spawn(worker_environment)
    for worker in starting:
        worker.wait()


def _environment_of(pid: int) -> dict[str, str]:
    """The environment process `pid` started with (ours: we may read it)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {name.decode(errors="replace"): value.decode(errors="replace") for name, value in pairs}
