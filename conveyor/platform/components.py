"""The three services of the local platform, each able to start, report its health and stop.

- Kubernetes: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok-controller,
  run as local processes by `kwokctl --runtime binary` from binaries we built (see binaries.py).
  kwokctl keeps its own pid files; we drive it through its commands and read those files.
- Registry: Debian's `docker-registry` (CNCF distribution) with filesystem storage.
- Prefect: `prefect server start` with SQLite and its concurrency leases under the state folder,
  analytics off.

The registry and Prefect are each one process of ours, started, probed and stopped the same way
(`service.ServiceProcess`). The scale profile replaces the Prefect server by the processes of
postgres.py, redis_server.py, prefect_split.py and workers.py (see scale.py).

Everything binds 127.0.0.1. A component never signals a process it did not record itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from conveyor.adapters.image_registry import ImageRegistries, push_small_image
from conveyor.adapters.prefect_api import PrefectAPI
from conveyor.errors import InputError, PlatformError
from conveyor.kit.paths import cache_root
from conveyor.platform import binaries, process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.service import (
    Health,
    ServiceProcess,
    debian_program,
    generated_secret,
    http_ok,
    run_command,
)

CLUSTER_NAME = "conveyor"
"""kwokctl's name of the platform's first cluster; the n-th is `conveyor-n`."""
API_READY_SECONDS = 60.0
"""How long `up` waits for a started API server to answer before scaling its nodes."""
NODE_COUNT = 2
PODS_PER_NODE = 1000
"""Simulated pods cost next to nothing; KWOK's default of 110 fills up under the benchmarks."""


def cluster_name(number: int) -> str:
    return CLUSTER_NAME if number == 1 else f"{CLUSTER_NAME}-{number}"


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
                self._refuse_ports_taken()
                if progress:
                    progress("starting kubernetes (existing cluster)", 0, 0)
                run_command(
                    self.name,
                    [kwokctl, "start", "cluster", "--name", self.cluster, "--wait", "2m"],
                    self._env(),
                    self.log,
                )
        else:
            if progress:
                progress("creating kubernetes cluster (etcd, apiserver, controllers, kwok)", 0, 0)
            # kwokctl picks the new cluster's ports among those free now and its processes bind
            # them later: two clusters created at once on this machine (another state folder's,
            # a test's) could pick the same port. One creation at a time, machine-wide.
            with (cache_root() / "kwok-create.lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                run_command(
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

    def _refuse_ports_taken(self) -> None:
        """Fail when a port the cluster was created with is held by another program: started,
        its API server could not listen and kwokctl would talk to whatever answers there."""
        documents = yaml.safe_load_all((self.cluster_dir / "kwok.yaml").read_text())
        components = [c for d in documents if d for c in d.get("components") or []]
        running = {name for name, pid in self._component_pids().items() if pid is not None}
        taken = [
            f"127.0.0.1:{port['port']} ({component['name']})"
            for component in components
            if component.get("name") not in running
            for port in component.get("ports") or []
            if not process.port_is_free(int(port["port"]))
        ]
        if taken:
            raise PlatformError(
                f"{self.name}: another program listens on {', '.join(taken)}, where this "
                "stopped cluster's components must listen",
                hint="stop that program, or `conveyor platform down --purge` to delete the "
                "platform's data and create it again on free ports",
            )

    def _ensure_nodes(self, kwokctl: str, progress: PlatformProgress | None) -> None:
        if progress:
            progress(f"ensuring {NODE_COUNT} simulated nodes", 0, 0)
        # kwokctl's own --wait can return while a restarted API server still refuses
        # connections, and `scale node` then fails: wait for /readyz first.
        deadline = time.monotonic() + API_READY_SECONDS
        while not self.health().healthy and time.monotonic() < deadline:
            time.sleep(0.5)
        run_command(
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
            run_command(
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
            ready = http_ok(f"{server}/readyz", context=self._tls())
        except (OSError, ssl.SSLError) as exc:
            return Health(self.name, False, server, f"cannot read client certificates: {exc}", pids)
        if not ready:
            return Health(self.name, False, server, "API server not ready (/readyz)", pids)
        return Health(self.name, True, server, f"{binaries.KUBERNETES.version}, kwok", pids)


EXAMPLE_IMAGES = {
    "web:1.0.0": "the example app web, version 1.0.0\n",
    "web:1.1.0": "the example app web, version 1.1.0\n",
    "curl:8": "the example app's smoke test client\n",
}
"""The images examples/web names (under registry.example), as the registry serves them."""


class Registry(ServiceProcess):
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
        self._start(
            [debian_program(self.name, "docker-registry"), "serve", str(config)], timeout=15
        )

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


def prefect_command() -> str:
    """The `prefect` command of this Python environment (else the one on PATH)."""
    beside_python = Path(sys.executable).with_name("prefect")
    found = str(beside_python) if beside_python.is_file() else shutil.which("prefect")
    if not found:
        raise PlatformError(
            "prefect: the `prefect` command is not installed in this environment",
            hint="run ./dev setup (it installs Conveyor's Python dependencies)",
        )
    return found


class PrefectServer(ServiceProcess):
    """`prefect server start` with its SQLite database under `<state>/prefect`, its concurrency
    leases in files there, and an API credential (PREFECT_SERVER_API_AUTH_STRING, generated into
    `<state>/prefect/api-auth-string`, mode 0600): nothing on the machine drives promotions
    through its API without it (the health probe excepted)."""

    name = "prefect"
    process_name = "prefect-server"
    stop_grace_seconds = 15.0
    healthy_detail = "API at /api, UI at /"
    start_timeout = 90.0

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
        return generated_secret(self.auth_file, lambda: "conveyor:" + secrets.token_urlsafe(32))

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

    def server_environment(self) -> dict[str, str]:
        """What the server process runs with: a client's settings and its own credential."""
        return {**self.environment(), "PREFECT_SERVER_API_AUTH_STRING": self.auth_string()}

    def server_command(self) -> list[str]:
        return [
            prefect_command(),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def up(self, progress: PlatformProgress | None = None) -> None:
        if not self.health().healthy:
            self.home.mkdir(parents=True, exist_ok=True)
            if progress:
                progress(f"starting {self.name} server on {self.ui_url}", 0, 0)
            self._start(
                self.server_command(),
                timeout=self.start_timeout,
                env=self.server_environment(),
                cwd=self.home,
            )
        self.api().ensure_crash_automation()

    def api(self) -> PrefectAPI:
        """A client of this server, with its credential."""
        return PrefectAPI(self.api_url, auth_string=self.auth_string())
