"""The three services of the local platform, each able to start, report its health and stop.

- Kubernetes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok-controller,
  run as local processes by `kwokctl --runtime binary` from binaries we built (see binaries.py).
  kwokctl keeps its own pid files; we drive it through its commands and read those files.
- Registry: Debian's `docker-registry` (CNCF distribution) with filesystem storage.
- Prefect: `prefect server start` with SQLite and its concurrency leases under the state folder,
  analytics off.

The registry and Prefect are each one process of ours, started, probed and stopped the same way
(`_ServiceProcess`).

Everything binds 127.0.0.1. A component never signals a process it did not record itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from conveyor.adapters.image_registry import ImageRegistries, push_small_image
from conveyor.adapters.prefect_api import PrefectAPI
from conveyor.errors import InputError, PlatformError
from conveyor.platform import binaries, process
from conveyor.platform.binaries import PlatformProgress

CLUSTER_NAME = "conveyor"
"""kwokctl's name of the platform's first cluster; the n-th is `conveyor-n`."""


API_READY_SECONDS = 60.0
"""How long `up` waits for a started API server to answer before scaling its nodes."""
NODE_COUNT = 2
PODS_PER_NODE = 1000
"""Simulated pods cost next to nothing; KWOK's default of 110 fills up under the benchmarks."""


def cluster_name(number: int) -> str:
    return CLUSTER_NAME if number == 1 else f"{CLUSTER_NAME}-{number}"


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
    """A KWOK cluster run by kwokctl's binary runtime under `<state>/kwok`: the platform's
    first (`kubernetes`, kubeconfig `<state>/kubeconfig`) or its n-th (`kubernetes-n`,
    `<state>/kubeconfig-n`), each with its own etcd, API server and controllers."""

    def __init__(self, state: Path, number: int = 1) -> None:
        self.cluster = cluster_name(number)
        self.name = "kubernetes" if number == 1 else f"kubernetes-{number}"
        self.workdir = state / "kwok"
        self.cluster_dir = self.workdir / "clusters" / self.cluster
        self.kubeconfig = state / ("kubeconfig" if number == 1 else f"kubeconfig-{number}")
        self.log = state / "logs" / f"{self.name}.log"

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

    def _kwokctl(self, progress: PlatformProgress | None) -> Path:
        return binaries.ensure_built(binaries.KWOK, progress)["kwokctl"]

    def kubectl(self, progress: PlatformProgress | None = None) -> Path:
        return binaries.ensure_built(binaries.KUBERNETES, progress)["kubectl"]

    def _write_config(self, progress: PlatformProgress | None) -> Path:
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
        path = self.workdir / f"kwokctl-{self.cluster}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def exists(self) -> bool:
        return (self.cluster_dir / "kwok.yaml").is_file()

    def up(self, progress: PlatformProgress | None = None) -> None:
        config = self._write_config(progress)
        kwokctl = str(self._kwokctl(progress))
        if self.exists():
            if not self.health().healthy:
                if progress:
                    progress("starting kubernetes (existing cluster)", 0, 0)
                _run(
                    self.name,
                    [kwokctl, "start", "cluster", "--name", self.cluster, "--wait", "2m"],
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
                    self.cluster,
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

    def _ensure_nodes(self, kwokctl: str, progress: PlatformProgress | None) -> None:
        if progress:
            progress(f"ensuring {NODE_COUNT} simulated nodes", 0, 0)
        # kwokctl's own --wait can return while a restarted API server still refuses
        # connections, and `scale node` then fails: wait for /readyz first.
        deadline = time.monotonic() + API_READY_SECONDS
        while not self.health().healthy and time.monotonic() < deadline:
            time.sleep(0.5)
        _run(
            self.name,
            [
                kwokctl,
                "scale",
                "node",
                "--name",
                self.cluster,
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
                [str(kwokctl), verb, "cluster", "--name", self.cluster],
                self._env(),
                self.log,
            )
        else:
            # Without kwokctl we still own the pids it recorded: stop them one by one.
            for pid in self._component_pids().values():
                if pid is not None:
                    process.stop(process.ProcessRecord(pid, process.start_ticks(pid) or -1, ()))
        if purge:  # this cluster's data only: the platform's other clusters share workdir
            shutil.rmtree(self.cluster_dir, ignore_errors=True)
            (self.workdir / f"kwokctl-{self.cluster}.yaml").unlink(missing_ok=True)
            self.kubeconfig.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the last cluster gone: the folder too
                if not any((self.workdir / "clusters").iterdir()):
                    shutil.rmtree(self.workdir)

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


class _ServiceProcess(ABC):
    """A component that is one process of ours: started detached and recorded in a pid file,
    healthy while that process runs and its HTTP health endpoint answers, its data in one folder.
    Subclasses say what runs, where it keeps its data and where it answers."""

    name: ClassVar[str]
    process_name: ClassVar[str]
    """The process's name in `platform status`."""
    stop_grace_seconds: ClassVar[float] = 10.0
    healthy_detail: ClassVar[str]

    def __init__(self, state: Path, port: int) -> None:
        self.port = port
        self.pidfile = state / "run" / f"{self.name}.pid"
        self.log = state / "logs" / f"{self.name}.log"

    @property
    @abstractmethod
    def data_folder(self) -> Path:
        """What `down(purge=True)` deletes."""

    @property
    @abstractmethod
    def shown_address(self) -> str:
        """Where people reach it, as `platform status` shows it."""

    @property
    @abstractmethod
    def health_url(self) -> str:
        """What answers 2xx while it is healthy."""

    def down(self, *, purge: bool = False) -> None:
        record = process.read_pidfile(self.pidfile)
        if record:
            process.stop(record, grace_seconds=self.stop_grace_seconds)
        self.pidfile.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.data_folder, ignore_errors=True)

    def health(self) -> Health:
        record = process.read_pidfile(self.pidfile)
        alive = record is not None and process.is_running(record)
        pids = {self.process_name: record.pid if alive and record else None} if record else {}
        if not alive:
            return Health(self.name, False, self.shown_address, "not running", pids)
        if not _http_ok(self.health_url):
            path = urllib.parse.urlsplit(self.health_url).path
            return Health(self.name, False, self.shown_address, f"not answering {path}", pids)
        return Health(self.name, True, self.shown_address, self.healthy_detail, pids)

    def _start(
        self,
        command: list[str],
        *,
        timeout: float,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start the process (stopping a dead one first) and wait until it is healthy."""
        self.down()
        process.spawn(self.name, command, pidfile=self.pidfile, logfile=self.log, env=env, cwd=cwd)
        deadline = time.monotonic() + timeout
        outcome = f"did not become healthy within {timeout:.0f}s"
        while time.monotonic() < deadline:
            if self.health().healthy:
                return
            record = process.read_pidfile(self.pidfile)
            if record is None or not process.is_running(record):
                outcome = "exited before becoming healthy"
                break
            time.sleep(0.25)
        raise PlatformError(
            f"{self.name}: {outcome} ({self.health().detail}); "
            f"last lines of {self.log}:\n{process.log_tail(self.log)}",
        )


EXAMPLE_IMAGES = {
    "web:1.0.0": "the example app web, version 1.0.0\n",
    "web:1.1.0": "the example app web, version 1.1.0\n",
    "curl:8": "the example app's smoke test client\n",
}
"""The images examples/web names (under registry.example), as the registry serves them."""


class Registry(_ServiceProcess):
    """CNCF distribution (`docker-registry`) serving OCI artifacts from `<state>/registry`."""

    name = "registry"
    process_name = "docker-registry"
    healthy_detail = "distribution (docker-registry)"

    def __init__(self, state: Path, port: int) -> None:
        super().__init__(state, port)
        self.root = state / "registry"

    @property
    def data_folder(self) -> Path:
        return self.root

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def shown_address(self) -> str:
        return self.address

    @property
    def health_url(self) -> str:
        return f"http://{self.address}/v2/"

    def _binary(self) -> str:
        found = shutil.which("docker-registry")
        if not found:
            raise PlatformError(
                "registry: `docker-registry` is not installed",
                hint="run ./dev setup (it installs the Debian package docker-registry)",
            )
        return found

    def up(self, progress: PlatformProgress | None = None) -> None:
        if self.health().healthy:
            return
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
        self._start([self._binary(), "serve", str(config)], timeout=15)

    def add_example_images(self) -> None:
        """Push the example app's stand-in images that are not there yet (a tag someone moved
        stays where they moved it). The platform's registry mirrors every registry
        (`environment()`), so `registry.example/web:1.0.0` resolves to `web:1.0.0` here."""
        registries = ImageRegistries()
        for image, content in EXAMPLE_IMAGES.items():
            repository, tag = image.rsplit(":", 1)
            try:
                registries.digest(self.address, repository, tag)
            except InputError:  # no such tag yet
                push_small_image(self.address, repository, tag, content)


class PrefectServer(_ServiceProcess):
    """`prefect server start` with its SQLite database under `<state>/prefect`, its concurrency
    leases in files there, and an API credential (PREFECT_SERVER_API_AUTH_STRING, generated into
    `<state>/prefect/api-auth-string`, mode 0600): nothing on the machine drives promotions
    through its API without it (the health probe excepted)."""

    name = "prefect"
    process_name = "prefect-server"
    stop_grace_seconds = 15.0
    healthy_detail = "API at /api, UI at /"

    def __init__(self, state: Path, port: int) -> None:
        super().__init__(state, port)
        self.home = state / "prefect"

    @property
    def data_folder(self) -> Path:
        return self.home

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def shown_address(self) -> str:
        return self.ui_url

    @property
    def health_url(self) -> str:
        return f"{self.api_url}/health"

    @property
    def auth_file(self) -> Path:
        return self.home / "api-auth-string"

    def auth_string(self) -> str:
        """`conveyor:<random>`, the server's API credential: generated on first use, kept with
        the platform's state, readable by its owner only (0600)."""
        try:
            return self.auth_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.home.mkdir(parents=True, exist_ok=True)
        value = "conveyor:" + secrets.token_urlsafe(32)
        try:
            descriptor = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return self.auth_file.read_text().strip()
        with os.fdopen(descriptor, "w") as file:
            file.write(value + "\n")
        return value

    def environment(self) -> dict[str, str]:
        """What a client of this server needs: its URL and credential (and the settings the
        server itself runs with, harmless to a client)."""
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.auth_string(),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A run waiting for a target's slot asks again after at most this long (default 30).
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
            # Concurrency leases in files under PREFECT_HOME (default: in memory, so a restart
            # forgot every lease and the slots they held stayed taken for good).
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
                "prefect.server.concurrency.lease_storage.filesystem"
            ),
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

    def up(self, progress: PlatformProgress | None = None) -> None:
        if not self.health().healthy:
            self.home.mkdir(parents=True, exist_ok=True)
            if progress:
                progress(f"starting prefect server on {self.ui_url}", 0, 0)
            command = [self._binary(), "server", "start", "--host", "127.0.0.1"]
            self._start(
                [*command, "--port", str(self.port)],
                timeout=90,
                env={**self.environment(), "PREFECT_SERVER_API_AUTH_STRING": self.auth_string()},
                cwd=self.home,
            )
        self.api().ensure_crash_automation()

    def api(self) -> PrefectAPI:
        """A client of this server, with its credential."""
        return PrefectAPI(self.api_url, auth_string=self.auth_string())


def describe(health: Health) -> dict[str, Any]:
    """A JSON-ready view of a component's health."""
    return asdict(health)
