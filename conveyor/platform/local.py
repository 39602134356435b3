"""The local platform as one unit: bring it up, report on it, hand out its addresses, take it down.

All state lives in one folder (`.conveyor/` in the working directory unless CONVEYOR_STATE says
otherwise): the clusters (two KWOK clusters unless `up --clusters` said otherwise on the first
start), the registry's storage, Prefect's database, logs, pid files, and `platform.json` with
the profile, the number of clusters and the ports chosen on the first start, so every later
start, `status`, `env` and `down` find the same platform. `up` is idempotent: healthy
components are left alone, dead ones are restarted, stale pid files are replaced.

Two profiles share that contract, the cluster and the registry:

- `embedded` (the default): one `prefect server start` on SQLite; `conveyor serve` runs the flows.
- `scale`: PostgreSQL, Redis, Prefect's API and services as separate processes, and process
  workers running the deployments of deployments/prefect.yaml (scale.py): what a team runs on
  its own servers.

A state folder runs one profile at a time: `up --profile` refuses to switch while a component
only the recorded profile has is running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from conveyor.errors import InputError, PlatformError
from conveyor.kit.paths import state_dir
from conveyor.platform import binaries, process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.components import Kubernetes, PrefectServer, Registry
from conveyor.platform.scale import ScalePrefect
from conveyor.platform.service import Health

PREFERRED_PREFECT_PORT = 4200
EMBEDDED = "embedded"
SCALE = "scale"
PROFILES = (EMBEDDED, SCALE)


class Component(Protocol):
    name: str

    def health(self) -> Health: ...

    def down(self, *, purge: bool = False) -> None: ...


CLUSTERS = 2
"""KWOK clusters a platform runs unless its platform.json says otherwise: the example
configuration puts prod-us on the second."""


@dataclass(frozen=True)
class Ports:
    registry: int
    prefect: int
    postgres: int | None = None
    redis: int | None = None
    clusters: int = CLUSTERS
    """Not a port: how many clusters, recorded with the ports on the first start."""


class LocalPlatform:
    """Kubernetes (KWOK), an OCI registry and Prefect (as the profile runs it), sharing one
    state folder."""

    def __init__(
        self, state: Path | None = None, profile: str | None = None, clusters: int | None = None
    ) -> None:
        """`clusters`: how many KWOK clusters a platform starting afresh runs (CLUSTERS by
        default); a platform that exists keeps its own number and refuses another."""
        self.state = (state or state_dir()).absolute()
        record = self._record()
        recorded = str(record.get("profile", EMBEDDED))
        if profile is not None and profile not in PROFILES:
            raise InputError(
                f"no platform profile {profile!r}; choose one of {', '.join(PROFILES)}"
            )
        self.profile = profile or recorded
        if self.profile != recorded and record:
            LocalPlatform(self.state)._refuse_switch(self.profile)
        self.ports = self._ports(record, clusters or CLUSTERS)
        if clusters is not None and clusters != self.ports.clusters:
            raise InputError(
                f"the platform in {self.state} runs {self.ports.clusters} cluster(s), not "
                f"{clusters}",
                hint="`conveyor platform down --purge` first to start afresh with another number",
            )
        self.clusters = [Kubernetes(self.state, n) for n in range(1, self.ports.clusters + 1)]
        self.kubernetes = self.clusters[0]
        self.registry = Registry(self.state, self.ports.registry)
        self.scale: ScalePrefect | None = None
        self.prefect: PrefectServer
        if self.profile == SCALE:
            assert self.ports.postgres is not None and self.ports.redis is not None
            self.scale = ScalePrefect(
                self.state,
                api_port=self.ports.prefect,
                postgres_port=self.ports.postgres,
                redis_port=self.ports.redis,
            )
            self.prefect = self.scale.api
        else:
            self.prefect = PrefectServer(self.state, self.ports.prefect)

    @property
    def components(self) -> tuple[Component, ...]:
        """In the order they are brought up."""
        prefect: tuple[Component, ...] = (
            tuple(self.scale.components) if self.scale else (self.prefect,)
        )
        return (*self.clusters, self.registry, *prefect)

    def _record(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state / "platform.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _refuse_switch(self, wanted: str) -> None:
        """Raise when a component only this (the recorded) profile has is running."""
        shared = {cluster.name for cluster in self.clusters} | {self.registry.name}
        running = [
            c.name
            for c in self.components
            if c.name not in shared and any(pid for pid in c.health().processes.values())
        ]
        if running:
            raise PlatformError(
                f"platform: {self.state} runs the {self.profile} profile "
                f"({', '.join(running)} running); it cannot become {wanted} while they run",
                hint=f"stop it with `conveyor platform down`, then `up --profile {wanted}`",
            )

    def _ports(self, record: dict[str, Any], clusters: int) -> Ports:
        """Ports recorded on the first start, or newly chosen free ones (recorded now, with the
        profile and `clusters`)."""
        wanted = dict(record)
        if not record:
            wanted["clusters"] = clusters  # an older record without it runs CLUSTERS
        try:
            registry, prefect = int(record["registry_port"]), int(record["prefect_port"])
        except (KeyError, TypeError, ValueError):
            prefect = (
                PREFERRED_PREFECT_PORT
                if process.port_is_free(PREFERRED_PREFECT_PORT)
                else process.free_port()
            )
            registry = process.free_port()
            wanted.update(registry_port=registry, prefect_port=prefect)
        if self.profile == SCALE:
            for key in ("postgres_port", "redis_port"):
                if not isinstance(wanted.get(key), int):
                    taken = {wanted.get(k) for k in ("registry_port", "prefect_port")}
                    taken |= {wanted.get("postgres_port"), wanted.get("redis_port")}
                    wanted[key] = _free_port_except(taken)
        if record.get("profile", EMBEDDED) != self.profile or not record:
            wanted["profile"] = self.profile
        if wanted != record:
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / "platform.json").write_text(json.dumps(wanted) + "\n")
        return Ports(
            registry=registry,
            prefect=prefect,
            postgres=wanted.get("postgres_port"),
            redis=wanted.get("redis_port"),
            clusters=int(wanted.get("clusters", CLUSTERS)),
        )

    def up(self, progress: PlatformProgress | None = None) -> list[Health]:
        """Start whatever is not healthy; return every component's health afterwards."""
        for cluster in self.clusters:
            cluster.up(progress)
        self.registry.up(progress)
        if self.scale is not None:
            self.scale.up(self.environment(), progress)
        else:
            self.prefect.up(progress)
        binaries.ensure_built(binaries.HELM, progress)  # renders Helm-chart sources
        self.registry.add_example_images()
        return self.status()

    def down(self, *, purge: bool = False) -> None:
        """Stop every process the platform started; with purge, delete all its state too."""
        for component in reversed(self.components):
            component.down(purge=purge)
        if purge:
            (self.state / "platform.json").unlink(missing_ok=True)

    def status(self) -> list[Health]:
        return [component.health() for component in self.components]

    def environment(self) -> dict[str, str]:
        """What a shell (or a test) needs to talk to this platform."""
        return {
            "KUBECONFIG": str(self.kubernetes.kubeconfig),
            # The other clusters' (the example configuration names them by path).
            **{
                f"CONVEYOR_KUBECONFIG_{n}": str(cluster.kubeconfig)
                for n, cluster in enumerate(self.clusters[1:], start=2)
            },
            "CONVEYOR_REGISTRY": self.registry.address,
            # Every image registry is looked up here first (containerd's mirror rule), then
            # at its own address: stand-ins for registries this machine cannot reach.
            "CONVEYOR_IMAGE_MIRRORS": f"*={self.registry.address}",
            # The kubectl built with the cluster: it builds Kustomize overlays at bundle build.
            "CONVEYOR_KUBECTL": str(binaries.set_folder(binaries.KUBERNETES) / "kubectl"),
            # The Helm built for this platform: it renders Helm-chart sources per target.
            "CONVEYOR_HELM": str(binaries.set_folder(binaries.HELM) / "helm"),
            "PREFECT_API_URL": self.prefect.api_url,
            # The API's credential (a file of the platform's, mode 0600): without it every
            # command that starts or answers a run gets 401.
            "PREFECT_API_AUTH_STRING": self.prefect.auth_string(),
        }


def _free_port_except(taken: set[Any]) -> int:
    while True:
        port = process.free_port()
        if port not in taken:
            return port
