"""An isolated world on the local platform, for end-to-end tests and the release benchmark.

A world is a folder holding a git repository with a copy of examples/web, a copy of config/ whose
app is `web-<prefix>`, whose targets deploy to namespaces `<prefix>-<target>` and whose registry
prefix is its own, and a state repository of its own. It shares the platform's registry, cluster
and Prefect server with every other world. Flows run the way the CLI runs them without served
deployments (`python -m flows ...`, a child process talking to the Prefect server), and approvals
are answered through Prefect's REST API, as `conveyor approve` does.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.adapters import gitrepo
from conveyor.adapters.kube import Kube
from conveyor.adapters.prefect_api import (
    HEARTBEAT_ENVIRONMENT,
    PROMOTE_STAGE,
    SERVED_DEPLOYMENT,
    FlowRun,
)
from conveyor.platform.components import PrefectServer
from conveyor.platform.local import LocalPlatform
from conveyor.records import state
from tests.support.git import git, init_repository
from tests.support.prefect import PrefectREST

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("dev", "test", "staging", "prod-eu", "prod-us")
BUILT = re.compile(r"(sha256:[0-9a-f]{64}) at [0-9a-f]{40} \(commit ([0-9a-f]{40})\)")
"""How a release's log names what it built: the bundle digest, then the commit it came from."""
LOG_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \| \w+ *\| (.*)$", re.MULTILINE)


@dataclass
class World:
    root: Path
    platform: LocalPlatform
    prefix: str
    env: dict[str, str]
    kube: Kube
    """The platform's first cluster (`local`), where every target runs unless the world was made
    with two clusters."""
    api: PrefectREST
    running: list[subprocess.Popen[Any]] = field(default_factory=list)
    second_kube: Kube | None = None
    """The platform's second cluster (`local-2`), where a two-cluster world runs prod-us."""

    @property
    def source(self) -> Path:
        return self.root / "apps"

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "conveyor.yaml"

    @property
    def state_repository(self) -> str:
        return str(self.root / "state.git")

    @property
    def app(self) -> str:
        return f"web-{self.prefix}"

    def namespace(self, target: str) -> str:
        return f"{self.prefix}-{target}"

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return git(cwd or self.source, *args)

    def commit_change(self, path: str, old: str, new: str, message: str) -> None:
        file = self.source / "web" / path
        text = file.read_text()
        assert old in text, f"{old!r} not in {file}"
        file.write_text(text.replace(old, new))
        self.git("commit", "-qam", message)

    def set_parameter(self, target: str, name: str, value: Any) -> None:
        path = self.root / "config" / "environments" / f"{target}.yaml"
        values = yaml.safe_load(path.read_text()) or {}
        values[name] = value
        path.write_text(yaml.safe_dump(values))

    def edit_source(self, **fields: Any) -> None:
        """Set fields of the app's `source` in conveyor.yaml (`ref`, `allowedRefs`...)."""
        conveyor = yaml.safe_load(self.config_path.read_text())
        conveyor["apps"][self.app]["source"].update(fields)
        self.config_path.write_text(yaml.safe_dump(conveyor, sort_keys=False))

    def edit_pipeline(self, change: Callable[[dict[str, Any]], Any]) -> None:
        path = self.root / "config" / "pipelines" / "web.yaml"
        pipeline = yaml.safe_load(path.read_text())
        change(pipeline)
        path.write_text(yaml.safe_dump(pipeline, sort_keys=False))

    def start(self, flow: str, **parameters: Any) -> subprocess.Popen[str]:
        """`python -m flows <flow> '<parameters>'` in a session of its own (see stop_process)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "flows", flow, json.dumps(parameters)],
            env=self.env,
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def finish(self, process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
        output, _ = process.communicate(timeout=timeout)
        self.running.remove(process)  # waiting_run only looks at runs still under way
        return process.returncode, output

    def run(self, flow: str, timeout: float = 240, **parameters: Any) -> tuple[int, str]:
        return self.finish(self.start(flow, **parameters), timeout)

    def conveyor(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from conveyor.cli import main; main()", *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def waiting_run(self, stage: str, timeout: float = 120) -> FlowRun:
        """The run paused for an approval of `stage` in this world."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api.awaiting_approval(self.app, stage)
            if runs:
                return runs[0]
            for process in self.running:
                if process.poll() is not None and process.returncode != 0:
                    raise AssertionError(
                        f"a flow ended before pausing:\n{process.stdout.read()}"
                        if process.stdout
                        else "a flow ended before pausing"
                    )
            time.sleep(0.5)
        raise AssertionError(f"no run paused for an approval of {stage} in {timeout}s")

    def answer(
        self, stage: str, *, approve: bool, approver: str = "alice", reason: str = ""
    ) -> None:
        run = self.waiting_run(stage)
        verdict = self.api.resume(
            run.id, {"approve": approve, "approver": approver, "reason": reason}
        )
        assert verdict.accepted, str(verdict)

    def repository(self) -> gitrepo.StateRepository:
        return gitrepo.open_state_repository(self.state_repository)

    def desired(self, target: str) -> state.DesiredState | None:
        return state.read_desired(self.repository(), self.app, target)

    def evidence(self, digest: str, stage: str) -> state.Evidence | None:
        return state.read_evidence(self.repository(), self.app, digest, stage)

    def cluster_of(self, target: str) -> str:
        pipeline = yaml.safe_load((self.root / "config" / "pipelines" / "web.yaml").read_text())
        for stage in pipeline["stages"]:
            for each in stage["targets"]:
                if each["name"] == target:
                    return str(each["cluster"])
        raise AssertionError(f"no target {target} in the world's pipeline")

    def on_second_cluster(self, target: str) -> bool:
        return self.cluster_of(target) == "local-2"

    def kube_for(self, target: str) -> Kube:
        """The cluster the target runs on."""
        if self.on_second_cluster(target):
            assert self.second_kube is not None
            return self.second_kube
        return self.kube

    def kubectl(self, target: str, *args: str) -> None:
        """`kubectl -n <the target's namespace> ARGS` on the target's cluster, as a person
        changing it out of band would (the platform's kubectl; it must succeed)."""
        cluster = self.platform.clusters[1 if self.on_second_cluster(target) else 0]
        subprocess.run(
            [
                str(self.platform.kubernetes.kubectl()),
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                self.namespace(target),
                *args,
            ],
            check=True,
            timeout=60,
        )

    def live(self, kind: str, name: str, target: str) -> dict[str, Any] | None:
        api_version = {"Deployment": "apps/v1", "Job": "batch/v1"}.get(kind, "v1")
        return self.kube_for(target).get(api_version, kind, name, self.namespace(target))

    def live_digest(self, target: str) -> str | None:
        deployment = self.live("Deployment", "web", target)
        if deployment is None:
            return None
        return str(deployment["metadata"]["annotations"]["conveyor.dev/bundle-digest"])

    def state_log(self) -> list[str]:
        """Every line of every commit message, newest commit first (a commit that records a
        stage's targets has one line per target)."""
        log = self.git("log", "--format=%B", cwd=Path(self.state_repository))
        return [line for line in log.splitlines() if line.strip()]


def log_times(output: str, start: str) -> list[float]:
    """When a flow's log lines starting (after time and level) with `start` were written, in
    seconds of the day: `log_times(output, "Task run 'apply-dev'")`."""
    return [
        int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000
        for hours, minutes, seconds, millis, rest in LOG_LINE.findall(output)
        if rest.startswith(start)
    ]


def stop_process(process: subprocess.Popen[Any], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds, to a process started in a session of its
    own; then SIGKILL to its process group, which it leads (what it spawned: gate commands, a
    runner's flow runs)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def isolated_world(
    platform: LocalPlatform,
    root: Path,
    prefix: str,
    prefect: PrefectServer | None = None,
    *,
    two_clusters: bool = False,
) -> Iterator[World]:
    """A world in the empty folder `root`, named by `prefix`; when the block ends, the processes
    it still runs are killed and its namespaces deleted (`root` itself is left to the caller).
    Its flows talk to the platform's Prefect server, or to `prefect` (a test's own server, which
    the test may stop and restart without disturbing the others)."""
    prefect = prefect or platform.prefect
    environment = {
        **os.environ,
        **platform.environment(),
        **prefect.environment(),
        "CONVEYOR_CONFIG": str(root / "config" / "conveyor.yaml"),
        "CONVEYOR_STATE": str(root / "conveyor-state"),
        "CONVEYOR_REGISTRY": "",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    world = World(
        root,
        platform,
        prefix,
        environment,
        Kube(platform.kubernetes.kubeconfig),
        PrefectREST(prefect.api_url, auth_string=prefect.auth_string()),
        second_kube=Kube(platform.clusters[1].kubeconfig) if two_clusters else None,
    )
    shutil.copytree(REPO_ROOT / "examples" / "web", world.source / "web")
    init_repository(world.source, "web v1")
    _write_config(world, two_clusters=two_clusters)
    try:
        yield world
    finally:
        for process in world.running:
            stop_process(process, grace=0)
        for target in TARGETS:
            for kube in (world.kube, world.second_kube):
                if kube is not None:
                    kube.delete("v1", "Namespace", world.namespace(target))


def _write_config(world: World, *, two_clusters: bool) -> None:
    """config/ for the world: its app, registry prefix, state repository and namespaces; every
    target on the first cluster, unless `two_clusters` (then prod-us runs on the second, as in
    the example configuration)."""
    shutil.copytree(REPO_ROOT / "config", world.root / "config")
    conveyor = yaml.safe_load(world.config_path.read_text())
    conveyor["stateRepository"] = world.state_repository
    conveyor["registry"] = f"{world.platform.registry.address}/{world.prefix}"
    conveyor["clusters"]["local"]["kubeconfig"] = str(world.platform.kubernetes.kubeconfig)
    if two_clusters:
        conveyor["clusters"]["local-2"]["kubeconfig"] = str(world.platform.clusters[1].kubeconfig)
    else:
        del conveyor["clusters"]["local-2"]
    web = conveyor["apps"].pop("web")
    web["source"] = {"repository": str(world.source), "ref": "HEAD", "path": "web"}
    conveyor["apps"] = {world.app: web}
    world.config_path.write_text(yaml.safe_dump(conveyor, sort_keys=False))

    def isolate(pipeline: dict[str, Any]) -> None:
        for stage in pipeline["stages"]:
            for target in stage["targets"]:
                target["namespace"] = world.namespace(target["name"])
                if not two_clusters:
                    target["cluster"] = "local"

    world.edit_pipeline(isolate)


SERVE_PROMOTE_STAGE = """
import os
from prefect import serve
from conveyor.config.reader import load_config
from deployments.serve import deployments
config = load_config()
os.environ["CONVEYOR_CONFIG"] = str(config.path)
serve(*[d for d in deployments(config) if d.flow_name == "promote-stage"], pause_on_shutdown=False)
"""


def start_serving(world: World, arguments: list[str]) -> subprocess.Popen[bytes]:
    """`python ARGUMENTS` serving deployments for the world, polling every second, as the
    leader of a process group of its own (stop it with stop_process); its output goes to
    serve.log in the world's folder."""
    with (world.root / "serve.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, *arguments],
            env={**world.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1", **HEARTBEAT_ENVIRONMENT},
            cwd=world.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def serving_promote_stage(world: World) -> Iterator[subprocess.Popen[bytes]]:
    """`promote-stage/conveyor` served by a child process (yielded, the leader of its process
    group), as `conveyor serve` serves it (bound to the world's configuration), until the block
    ends; then the deployment is deleted, so later tests run flows in child processes again."""
    logfile = world.root / "serve.log"
    started = datetime.datetime.now(datetime.UTC)
    server = start_serving(world, ["-c", SERVE_PROMOTE_STAGE])
    try:
        deadline = time.monotonic() + 90
        while not _polled_since(world, started):
            assert server.poll() is None, logfile.read_text()[-3000:]
            assert time.monotonic() < deadline, "promote-stage/conveyor not served within 90 s"
            time.sleep(0.5)
        yield server
    finally:
        stop_process(server)
        world.api.delete_deployment(PROMOTE_STAGE, SERVED_DEPLOYMENT)


def _polled_since(world: World, started: datetime.datetime) -> bool:
    found = world.api.deployment_record(PROMOTE_STAGE, SERVED_DEPLOYMENT)
    polled = found.get("last_polled") if found else None
    return bool(
        found
        and found.get("status") == "READY"
        and polled
        and datetime.datetime.fromisoformat(polled) > started
    )


def prefect_for(request: pytest.FixtureRequest) -> PrefectServer | None:
    """The test's own Prefect server (the `own_prefect` fixture) when it is marked
    `own_prefect`, else None: the platform's shared server."""
    if request.node.get_closest_marker("own_prefect") is None:
        return None
    server: PrefectServer = request.getfixturevalue("own_prefect")
    return server


def world_for(
    request: pytest.FixtureRequest, platform: LocalPlatform, root: Path, prefix: str
) -> contextlib.AbstractContextManager[World]:
    """`isolated_world` as the test's markers ask: on its own Prefect server (`own_prefect`),
    with prod-us on the second cluster (`two_clusters`)."""
    return isolated_world(
        platform,
        root,
        prefix,
        prefect=prefect_for(request),
        two_clusters=request.node.get_closest_marker("two_clusters") is not None,
    )
