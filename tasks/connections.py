"""One Kube connection and one bundle store per process and location, shared by every task."""

from __future__ import annotations

import threading

from conveyor.adapters import oci
from conveyor.adapters.kube import Kube
from conveyor.bundles import artifact
from conveyor.config.model import Cluster, Config

_lock = threading.Lock()
_kubes: dict[tuple[str, str | None], Kube] = {}
_stores: dict[str, oci.BundleStore] = {}


def kube_for(cluster: Cluster) -> Kube:
    key = (str(cluster.kubeconfig), cluster.context)
    with _lock:
        if key not in _kubes:
            _kubes[key] = Kube(cluster.kubeconfig, cluster.context)
        return _kubes[key]


def store_for(config: Config, app: str) -> oci.BundleStore:
    location = config.store_location(app)
    with _lock:
        if location not in _stores:
            _stores[location] = artifact.open_store(location)
        return _stores[location]
