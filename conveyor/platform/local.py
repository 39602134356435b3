"""The local platform as one unit: bring it up, report on it, hand out its addresses, take it down.

All state lives in one folder (`.conveyor/` in the working directory unless CONVEYOR_STATE says
otherwise): the cluster, the registry's storage, Prefect's database, logs, pid files, and
`platform.json` with the ports chosen on the first start, so every later start reuses them.
`up` is idempotent: healthy components are left alone, dead ones are restarted, stale pid files
are replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import InputError
from conveyor.kit.paths import state_dir
from conveyor.platform import binaries, process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.components import Health, Kubernetes, PrefectServer, Registry

PREFERRED_PREFECT_PORT = 4200


CLUSTERS = 2
"""KWOK clusters a platform runs unless its platform.json says otherwise: the example
configuration puts prod-us on the second."""


@dataclass(frozen=True)
class Ports:
    registry: int
    prefect: int
    clusters: int = CLUSTERS
    """Not a port: how many clusters, recorded with the ports on the first start."""


class LocalPlatform:
    """Kubernetes (KWOK clusters, two by default), an OCI registry and a Prefect server, sharing
    one state folder."""

    def __init__(self, state: Path | None = None, *, clusters: int | None = None) -> None:
        """`clusters`: how many KWOK clusters a platform starting afresh runs (CLUSTERS by
        default); a platform that exists keeps its own number and refuses another."""
        self.state = (state or state_dir()).absolute()
        self.ports = self._ports(clusters or CLUSTERS)
        if clusters is not None and clusters != self.ports.clusters:
            raise InputError(
                f"the platform in {self.state} runs {self.ports.clusters} cluster(s), not "
                f"{clusters}",
                hint="`conveyor platform down --purge` first to start afresh with another number",
            )
        self.clusters = [Kubernetes(self.state, n) for n in range(1, self.ports.clusters + 1)]
        self.kubernetes = self.clusters[0]
        self.registry = Registry(self.state, self.ports.registry)
        self.prefect = PrefectServer(self.state, self.ports.prefect)

    @property
    def components(self) -> tuple[Kubernetes | Registry | PrefectServer, ...]:
        return (*self.clusters, self.registry, self.prefect)

    def _ports(self, clusters: int) -> Ports:
        """Ports (and the number of clusters) recorded on the first start, or newly chosen free
        ones with `clusters` (recorded now)."""
        record = self.state / "platform.json"
        try:
            data = json.loads(record.read_text())
            return Ports(
                registry=int(data["registry_port"]),
                prefect=int(data["prefect_port"]),
                clusters=int(data.get("clusters", CLUSTERS)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            pass
        prefect = (
            PREFERRED_PREFECT_PORT
            if process.port_is_free(PREFERRED_PREFECT_PORT)
            else process.free_port()
        )
        ports = Ports(registry=process.free_port(), prefect=prefect, clusters=clusters)
        self.state.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps(
                {
                    "registry_port": ports.registry,
                    "prefect_port": ports.prefect,
                    "clusters": ports.clusters,
                }
            )
            + "\n"
        )
        return ports

    def up(self, progress: PlatformProgress | None = None) -> list[Health]:
        """Start whatever is not healthy; return every component's health afterwards."""
        for component in self.components:
            component.up(progress)
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
        }
