"""The three services of the local platform, each able to start, report its health and stop.

- Kubernetes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok-controller,
  run as local processes by `kwokctl --runtime binary` from binaries we built (see binaries.py).
  kwokctl keeps its own pid files; we drive it through its commands and read those files.
- Registry: Debian's `docker-registry` (CNCF distribution) with filesystem storage.
- Prefect: `prefect server start` with SQLite under the state folder, analytics off.

Everything binds 127.0.0.1. A component never signals a process it did not record itself.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conveyor.adapters.prefect_api import PrefectAPI
from conveyor.errors import PlatformError
from conveyor.platform import binaries, process
from conveyor.platform.binaries import Progress

CLUSTER_NAME = "conveyor"
NODE_COUNT = 2
PODS_PER_NODE = 1000
"""Simulated pods cost next to nothing; KWOK's default of 110 fills up under the benchmarks."""


@dataclass
class Health:
    """One component's state as `platform status` shows it."""

    component: str
    healthy: bool
    address: str
    detail: str
    processes: dict[str, int | None] = field(default_factory=dict)
    """Process name -> pid while alive, None when recorded but dead."""


def _http_ok(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _run(component: str, command: list[str], env: dict[str, str], log: Path) -> None:
    """Run a set-up command to completion; on failure raise naming the command and its output."""
    log.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise PlatformError(
            f"{component}: `{' '.join(command)}` exited {result.returncode}:\n{tail}",
            hint=f"full log: {log}",
        )


class Kubernetes:
    """A KWOK cluster run by kwokctl's binary runtime under `<state>/kwok`."""

    name = "kubernetes"

    def __init__(self, state: Path) -> None:
        self.workdir = state / "kwok"
        self.cluster_dir = self.workdir / "clusters" / CLUSTER_NAME
        self.kubeconfig = state / "kubeconfig"
        self.log = state / "logs" / "kubernetes.log"

    def _env(self) -> dict[str, str]:
        # kwokctl checks that the cluster serves with whatever `kubectl` PATH finds first:
        # make that ours, of the cluster's version (another may be missing, or a stub).
        kubectl_folder = binaries.set_folder(binaries.KUBERNETES)
        path = f"{kubectl_folder}{os.pathsep}{os.environ.get('PATH', '')}"
        # kwokctl edits the kubeconfig KUBECONFIG names (stop and delete remove the cluster's
        # entries): only ever ours, never the caller's (which may be another platform's).
        return dict(
            os.environ, KWOK_WORKDIR=str(self.workdir), PATH=path, KUBECONFIG=str(self.kubeconfig)
        )

    def _kwokctl(self, progress: Progress | None) -> Path:
        return binaries.ensure_built(binaries.KWOK, progress)["kwokctl"]

    def kubectl(self, progress: Progress | None = None) -> Path:
        return binaries.ensure_built(binaries.KUBERNETES, progress)["kubectl"]

    def _write_config(self, progress: Progress | None) -> Path:
        kube = binaries.ensure_built(binaries.KUBERNETES, progress)
        etcd = binaries.ensure_built(binaries.ETCD, progress)
        kwok = binaries.ensure_built(binaries.KWOK, progress)
        config = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "bindAddress": "127.0.0.1",
                "kubeVersion": binaries.KUBERNETES.version,
                "etcdVersion": binaries.ETCD.version,
                "kwokVersion": binaries.KWOK.version,
                "kubeApiserverBinary": str(kube["kube-apiserver"]),
                "kubeControllerManagerBinary": str(kube["kube-controller-manager"]),
                "kubeSchedulerBinary": str(kube["kube-scheduler"]),
                "kubectlBinary": str(kube["kubectl"]),
                "etcdBinary": str(etcd["etcd"]),
                "kwokControllerBinary": str(kwok["kwok"]),
                "cacheDir": str(self.workdir / "cache"),
                "quietPull": True,
            },
        }
        path = self.workdir / "kwokctl.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def exists(self) -> bool:
        return (self.cluster_dir / "kwok.yaml").is_file()

    def up(self, progress: Progress | None = None) -> None:
        config = self._write_config(progress)
        kwokctl = str(self._kwokctl(progress))
        if self.exists():
            if not self.health().healthy:
                if progress:
                    progress("starting kubernetes (existing cluster)", 0, 0)
                _run(
                    self.name,
                    [kwokctl, "start", "cluster", "--name", CLUSTER_NAME, "--wait", "2m"],
                    self._env(),
                    self.log,
                )
        else:
            if progress:
                progress("creating kubernetes cluster (etcd, apiserver, controllers, kwok)", 0, 0)
            _run(
                self.name,
                [
                    kwokctl,
                    "create",
                    "cluster",
                    "--name",
                    CLUSTER_NAME,
                    "--config",
                    str(config),
                    "--kubeconfig",
                    str(self.kubeconfig),
                    "--wait",
                    "3m",
                ],
                self._env(),
                self.log,
            )
        self._ensure_nodes(kwokctl, progress)
        health = self.health()
        if not health.healthy:
            raise PlatformError(
                f"kubernetes: cluster did not become ready: {health.detail}",
                hint=f"component logs are in {self.cluster_dir / 'logs'}",
            )

    def _ensure_nodes(self, kwokctl: str, progress: Progress | None) -> None:
        if progress:
            progress(f"ensuring {NODE_COUNT} simulated nodes", 0, 0)
        _run(
            self.name,
            [
                kwokctl,
                "scale",
                "node",
                "--name",
                CLUSTER_NAME,
                "--replicas",
                str(NODE_COUNT),
                "--param",
                f".allocatable.pods={PODS_PER_NODE}",
            ],
            self._env(),
            self.log,
        )

    def down(self, *, purge: bool = False) -> None:
        if not self.exists():
            return
        kwokctl = binaries.set_folder(binaries.KWOK) / "kwokctl"
        verb = "delete" if purge else "stop"
        if kwokctl.is_file():
            _run(
                self.name,
                [str(kwokctl), verb, "cluster", "--name", CLUSTER_NAME],
                self._env(),
                self.log,
            )
        else:
            # Without kwokctl we still own the pids it recorded: stop them one by one.
            for pid in self._component_pids().values():
                if pid is not None:
                    process.stop(process.ProcessRecord(pid, process.start_ticks(pid) or -1, ()))
        if purge:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.kubeconfig.unlink(missing_ok=True)

    def _component_pids(self) -> dict[str, int | None]:
        pids: dict[str, int | None] = {}
        for pidfile in sorted((self.cluster_dir / "pids").glob("*.pid")):
            try:
                pid = int(pidfile.read_text().strip())
            except (OSError, ValueError):
                pids[pidfile.stem] = None
                continue
            pids[pidfile.stem] = pid if process.start_ticks(pid) is not None else None
        return pids

    def server(self) -> str | None:
        """The API server URL from the kubeconfig, or None before the cluster exists."""
        try:
            config: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
            return str(config["clusters"][0]["cluster"]["server"])
        except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
            return None

    def _tls(self) -> ssl.SSLContext:
        pki = self.cluster_dir / "pki"
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def health(self) -> Health:
        pids = self._component_pids()
        server = self.server()
        if not self.exists() or server is None:
            return Health(self.name, False, "-", "not created", pids)
        dead = sorted(name for name, pid in pids.items() if pid is None)
        if dead:  # no need to ask the API server
            return Health(self.name, False, server, f"stopped: {', '.join(dead)}", pids)
        try:
            ready = _http_ok(f"{server}/readyz", context=self._tls())
        except (OSError, ssl.SSLError) as exc:
            return Health(self.name, False, server, f"cannot read client certificates: {exc}", pids)
        if not ready:
            return Health(self.name, False, server, "API server not ready (/readyz)", pids)
        return Health(self.name, True, server, f"{binaries.KUBERNETES.version}, kwok", pids)


class Registry:
    """CNCF distribution (`docker-registry`) serving OCI artifacts from `<state>/registry`."""

    name = "registry"

    def __init__(self, state: Path, port: int) -> None:
        self.root = state / "registry"
        self.port = port
        self.pidfile = state / "run" / "registry.pid"
        self.log = state / "logs" / "registry.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _binary(self) -> str:
        found = shutil.which("docker-registry")
        if not found:
            raise PlatformError(
                "registry: `docker-registry` is not installed",
                hint="run ./dev setup (it installs the Debian package docker-registry)",
            )
        return found

    def up(self, progress: Progress | None = None) -> None:
        if self.health().healthy:
            return
        self.down()
        config = self.root / "config.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(self.root / "data")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": self.address, "secret": "conveyor-local-platform"},
                }
            )
        )
        if progress:
            progress(f"starting registry on {self.address}", 0, 0)
        process.spawn(
            self.name,
            [self._binary(), "serve", str(config)],
            pidfile=self.pidfile,
            logfile=self.log,
        )
        _wait_healthy(self, timeout=15)

    def down(self, *, purge: bool = False) -> None:
        record = process.read_pidfile(self.pidfile)
        if record:
            process.stop(record)
        self.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.root, ignore_errors=True)

    def health(self) -> Health:
        record = process.read_pidfile(self.pidfile)
        alive = record is not None and process.is_running(record)
        pids = {"docker-registry": record.pid if alive and record else None} if record else {}
        if not alive:
            return Health(self.name, False, self.address, "not running", pids)
        if not _http_ok(f"http://{self.address}/v2/"):
            return Health(self.name, False, self.address, "not answering /v2/", pids)
        return Health(self.name, True, self.address, "distribution (docker-registry)", pids)


class PrefectServer:
    """`prefect server start` with its SQLite database under `<state>/prefect`."""

    name = "prefect"

    def __init__(self, state: Path, port: int) -> None:
        self.home = state / "prefect"
        self.port = port
        self.pidfile = state / "run" / "prefect.pid"
        self.log = state / "logs" / "prefect.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A run waiting for a target's slot asks again after at most this long (default 30).
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
            "DO_NOT_TRACK": "1",
        }

    def _binary(self) -> str:
        beside_python = Path(sys.executable).with_name("prefect")
        found = str(beside_python) if beside_python.is_file() else shutil.which("prefect")
        if not found:
            raise PlatformError(
                "prefect: the `prefect` command is not installed in this environment",
                hint="run ./dev setup (it installs Conveyor's Python dependencies)",
            )
        return found

    def up(self, progress: Progress | None = None) -> None:
        if not self.health().healthy:
            self.down()
            self.home.mkdir(parents=True, exist_ok=True)
            if progress:
                progress(f"starting prefect server on {self.ui_url}", 0, 0)
            command = [self._binary(), "server", "start", "--host", "127.0.0.1"]
            process.spawn(
                self.name,
                [*command, "--port", str(self.port)],
                pidfile=self.pidfile,
                logfile=self.log,
                env=self.environment(),
                cwd=self.home,
            )
            _wait_healthy(self, timeout=90)
        PrefectAPI(self.api_url).ensure_crash_automation()

    def down(self, *, purge: bool = False) -> None:
        record = process.read_pidfile(self.pidfile)
        if record:
            process.stop(record, grace_seconds=15)
        self.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.home, ignore_errors=True)

    def health(self) -> Health:
        record = process.read_pidfile(self.pidfile)
        alive = record is not None and process.is_running(record)
        pids = {"prefect-server": record.pid if alive and record else None} if record else {}
        if not alive:
            return Health(self.name, False, self.ui_url, "not running", pids)
        if not _http_ok(f"{self.api_url}/health"):
            return Health(self.name, False, self.ui_url, "not answering /api/health", pids)
        return Health(self.name, True, self.ui_url, "API at /api, UI at /", pids)


def _wait_healthy(component: Registry | PrefectServer, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    outcome = f"did not become healthy within {timeout:.0f}s"
    while time.monotonic() < deadline:
        if component.health().healthy:
            return
        record = process.read_pidfile(component.pidfile)
        if record is None or not process.is_running(record):
            outcome = "exited before becoming healthy"
            break
        time.sleep(0.25)
    raise PlatformError(
        f"{component.name}: {outcome} ({component.health().detail}); "
        f"last lines of {component.log}:\n{process.log_tail(component.log)}",
    )


def describe(health: Health) -> dict[str, Any]:
    """A JSON-ready view of a component's health."""
    return asdict(health)
