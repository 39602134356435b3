"""In which order a bundle's objects reach the cluster, and which labels they carry there.

Pure functions of the rendered objects, so the order and the labelling are tested without a
cluster.

Labels say who owns an object. A namespaced object belongs to one target of an app (its
namespace is the target's), so it carries the app and the target. A cluster-scoped object (a
CRD, a ClusterRole, a Namespace) is shared by every target of the app on that cluster: it carries
the app only, and no bundle digest, since targets of one cluster run different digests while a
release moves along. Were it to carry a target, each target's apply would take it from the
previous one, and every target but the last would see it as missing.

Order: Namespaces, then CustomResourceDefinitions (the caller waits until they are
Established), then RBAC, then configuration (ConfigMaps, Secrets, storage claims), then workloads
and everything else, then custom resources. Objects within one phase do not depend on each other
and may be applied in parallel.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.kit.syntax import object_path

MANAGED_BY = "app.kubernetes.io/managed-by"
APP_LABEL = "conveyor.dev/app"
TARGET_LABEL = "conveyor.dev/target"
DIGEST_ANNOTATION = "conveyor.dev/bundle-digest"
LEGACY_FIELD_MANAGER = "conveyor"
"""The one field manager every target used before each got its own: its fields are taken over
by the app's and target's manager (`apply`), never left to conflict for ever."""
_FIELD_MANAGER_BYTES = 128

PHASES = ("namespaces", "definitions", "rbac", "configuration", "workloads", "custom resources")

_PHASE_OF_KIND = {
    "Namespace": 0,
    "CustomResourceDefinition": 1,
    "ServiceAccount": 2,
    "Role": 2,
    "ClusterRole": 2,
    "RoleBinding": 2,
    "ClusterRoleBinding": 2,
    "ConfigMap": 3,
    "Secret": 3,
    "PersistentVolumeClaim": 3,
    "ResourceQuota": 3,
    "LimitRange": 3,
}

# API groups served by Kubernetes itself; anything else is a custom resource.
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
    "node.k8s.io",
    "certificates.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "resource.k8s.io",
    "apiregistration.k8s.io",
}


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def phase_of(obj: Mapping[str, Any]) -> int:
    kind = str(obj.get("kind", ""))
    if kind in _PHASE_OF_KIND:
        return _PHASE_OF_KIND[kind]
    if group_of(str(obj.get("apiVersion", ""))) not in BUILTIN_GROUPS:
        return 5
    return 4


@dataclass(frozen=True)
class ObjectRef:
    """The identity of one object: what an inventory records and prune compares."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        metadata = obj.get("metadata", {})
        return cls(
            str(obj["apiVersion"]),
            str(obj["kind"]),
            metadata.get("namespace"),
            str(metadata["name"]),
        )

    def __str__(self) -> str:
        return object_path(self.kind, self.namespace, self.name)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }

    @property
    def group_kind(self) -> tuple[str, str]:
        """Identity across API versions (apps/v1 and apps/v1beta1 name the same object)."""
        return group_of(self.api_version), self.kind


def phases(objects: Iterable[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """The objects split into the apply phases, in order, empty phases dropped."""
    buckets: list[list[dict[str, Any]]] = [[] for _ in PHASES]
    for obj in objects:
        buckets[phase_of(obj)].append(dict(obj))
    return [bucket for bucket in buckets if bucket]


def is_cluster_scoped(obj: Mapping[str, Any]) -> bool:
    """True for an object without a namespace: prepared objects have one exactly when their
    kind is namespaced, and live cluster-scoped objects never have one."""
    return not obj.get("metadata", {}).get("namespace")


def label(
    objects: Sequence[Mapping[str, Any]], *, app: str, target: str, digest: str
) -> list[dict[str, Any]]:
    """Copies of `objects` (namespaces resolved) carrying Conveyor's ownership labels: the app
    and the target, with the bundle digest, on namespaced ones; the app alone on cluster-scoped
    ones."""
    labelled = []
    for obj in objects:
        copied = copy.deepcopy(dict(obj))
        metadata = copied.setdefault("metadata", {})
        labels = metadata.setdefault("labels", {})
        labels.update({MANAGED_BY: "conveyor", APP_LABEL: app})
        if is_cluster_scoped(copied):
            labels.pop(TARGET_LABEL, None)
        else:
            labels[TARGET_LABEL] = target
            metadata.setdefault("annotations", {})[DIGEST_ANNOTATION] = digest
        labelled.append(copied)
    return labelled


def owned_by(obj: Mapping[str, Any], *, app: str, target: str) -> bool:
    """True when `obj` carries the labels Conveyor puts on it for this app and target (the app
    alone for a cluster-scoped object)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(
        labels.get(MANAGED_BY) == "conveyor"
        and labels.get(APP_LABEL) == app
        and (is_cluster_scoped(obj) or labels.get(TARGET_LABEL) == target)
    )


def owner_app(obj: Mapping[str, Any]) -> str | None:
    """The app a live object was applied for, None when Conveyor did not apply it."""
    labels = obj.get("metadata", {}).get("labels") or {}
    if labels.get(MANAGED_BY) != "conveyor":
        return None
    app = labels.get(APP_LABEL)
    return str(app) if app else None


def field_manager(app: str, target: str | None) -> str:
    """The server-side apply field manager of an app on a target, `conveyor/<app>.<target>`
    (`conveyor/<app>` for cluster-scoped objects, which the app's targets share), so that one
    target taking another's field is a conflict naming the other. The API server allows 128
    bytes: a longer name keeps its start and ends in a hash of the whole."""
    name = f"{LEGACY_FIELD_MANAGER}/{app}" + (f".{target}" if target is not None else "")
    if len(name.encode()) <= _FIELD_MANAGER_BYTES:
        return name
    return f"{name[: _FIELD_MANAGER_BYTES - 13]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def selector(*, app: str, target: str | None) -> str:
    """The label selector matching what Conveyor applied for an app on a target (`target` None:
    for the app, which is how cluster-scoped objects are matched)."""
    if target is None:
        return f"{APP_LABEL}={app}"
    return f"{APP_LABEL}={app},{TARGET_LABEL}={target}"


def placed(obj: Mapping[str, Any], *, namespaced: bool, namespace: str) -> dict[str, Any]:
    """A copy of `obj` where the apply puts it: a namespaced object without a namespace in
    `namespace`, a cluster-scoped one without any."""
    copied = copy.deepcopy(dict(obj))
    metadata = copied.setdefault("metadata", {})
    if not namespaced:
        metadata.pop("namespace", None)
    elif not metadata.get("namespace"):
        metadata["namespace"] = namespace
    return copied
