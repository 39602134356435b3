"""What a run works with, obtained once when it starts, from the configuration file.

Why a module of its own: every flow starts from a configuration file and an app name, and every
step after that needs the same few things: the app's configuration, the state repository, the
app's bundle store and a connection to each cluster it deploys to. `open_run_context` is the one
place the configuration is read for a run and those are opened; the steps and tasks then take
what they use (a repository, a store, a cluster connection) and never look anything up again.

Connections are costly to open (a kubeconfig read and API discovery, a registry session, a git
clone) and safe to share, so each is opened once per process, in `Connections`, and shared by
every run the process serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from conveyor.adapters import gitrepo, oci
from conveyor.adapters.kube import Kube
from conveyor.bundles import artifact
from conveyor.bundles.render import Rendered
from conveyor.config.model import App, Cluster, Config, Target
from conveyor.config.reader import load_config

Key = TypeVar("Key")
Client = TypeVar("Client")


class _OpenedOnce(Generic[Key, Client]):
    """Clients by key, each opened on first use; one lock per kind of client, so that a slow
    opening (a git clone) holds up only the callers that wait for the same kind."""

    def __init__(self, open_client: Callable[[Key], Client]) -> None:
        self._open = open_client
        self._lock = threading.Lock()
        self._clients: dict[Key, Client] = {}

    def get(self, key: Key) -> Client:
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._open(key)
            return self._clients[key]


class Connections:
    """Clients opened on first use and kept for the life of the process: one Kube per cluster
    (kubeconfig and context), one bundle store per location, one state repository per location
    (created when missing). Safe to use from several threads (tasks work in worker threads)."""

    def __init__(self) -> None:
        self._kubes = _OpenedOnce[tuple[Path | None, str | None], Kube](lambda key: Kube(*key))
        self._stores = _OpenedOnce[str, oci.BundleStore](artifact.open_store)
        self._repositories = _OpenedOnce[str, gitrepo.StateRepository](
            gitrepo.open_state_repository
        )

    def kube(self, cluster: Cluster) -> Kube:
        return self._kubes.get((cluster.kubeconfig, cluster.context))

    def store(self, location: str) -> oci.BundleStore:
        return self._stores.get(location)

    def state_repository(self, location: str) -> gitrepo.StateRepository:
        return self._repositories.get(location)


PROCESS_CONNECTIONS = Connections()
"""The connections of this process, shared by every run in it."""


@dataclass(frozen=True)
class RunContext:
    """One run's view of the configuration, for one app, with what it reads and writes."""

    config: Config
    app: App
    state: gitrepo.StateRepository
    store: oci.BundleStore
    connections: Connections
    renders: dict[tuple[str, str], dict[str, Rendered]] = field(default_factory=dict)
    """The stages this run rendered, by (stage, digest): a digest and the run's configuration
    render the same way every time, and a release checks each stage against the one before."""

    def kube(self, target: Target) -> Kube:
        """The connection to the target's cluster."""
        return self.connections.kube(target.cluster)


def open_run_context(app: str, *, connections: Connections = PROCESS_CONNECTIONS) -> RunContext:
    """Read this process's configuration ($CONVEYOR_CONFIG, else the default file: never a path
    a caller chose, see conveyor.config.binding), check that it has `app`, and open the state
    repository and the app's bundle store (once per process)."""
    config = load_config()
    spec = config.app(app)
    return RunContext(
        config=config,
        app=spec,
        state=connections.state_repository(config.state_repository),
        store=connections.store(config.store_location(spec.name)),
        connections=connections,
    )


@dataclass(frozen=True)
class ClusterContext:
    """A control-loop run's view: the configuration, the state repository, one cluster."""

    config: Config
    cluster: Cluster
    state: gitrepo.StateRepository
    connections: Connections

    @property
    def kube(self) -> Kube:
        return self.connections.kube(self.cluster)

    def targets(self) -> list[tuple[App, Target]]:
        """Every target of every app that lives on this cluster."""
        return [
            (app, target)
            for app in self.config.apps.values()
            for target in app.pipeline.targets()
            if target.cluster.name == self.cluster.name
        ]

    def store(self, app: App) -> oci.BundleStore:
        return self.connections.store(self.config.store_location(app.name))


def open_cluster_context(
    cluster: str, *, connections: Connections = PROCESS_CONNECTIONS
) -> ClusterContext:
    """`open_run_context` for a cluster rather than an app (ConfigError when the configuration
    names no such cluster)."""
    config = load_config()
    return ClusterContext(
        config=config,
        cluster=config.cluster(cluster),
        state=connections.state_repository(config.state_repository),
        connections=connections,
    )
