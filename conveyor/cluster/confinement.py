"""Where a target's bundle may write: its namespace, and the cluster-scoped kinds it allows.

Why: a bundle is built from any ref and rendered with parameters, so a manifest can name any
namespace (another target's, `kube-system`) or any cluster-scoped kind (a ClusterRoleBinding to
cluster-admin, an admission webhook). Server-side apply would write them wherever they say. So,
before anything is applied, every prepared object (namespaces resolved, `apply.prepare`) is
checked against its target's rules, and one that breaks them refuses the whole apply:

- a namespaced object goes to the target's namespace, or to one the target lists under
  `namespaces`;
- a cluster-scoped object must be of a kind the target allows: by default
  CustomResourceDefinition (a bundle that ships an operator needs its definitions),
  ClusterRole (it grants nothing until bound; a RoleBinding in the target's namespace binds it
  there only) and Namespace (only the target's own, or a listed one). A ClusterRole that
  aggregates into other roles (`rbac.authorization.k8s.io/aggregate-to-*` labels: it would
  widen `admin`, `edit` or `view` for everyone bound to them) needs ClusterRole listed
  explicitly. Anything else, ClusterRoleBinding and admission webhooks above all, needs the
  target to list the kind under `clusterScoped`.

The apply checks the prepared objects, whose scope the API server's discovery told. Rendering
checks earlier, before a promotion waits for its approval (`refuse_outside_rendered`), with
the scope of built-in kinds known here and of the kinds the bundle's own definitions declare;
an object of another custom kind is left to the apply's check.

Pure: scope comes with the objects, so the rules are tested without a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.cluster.ordering import (
    BUILTIN_GROUPS,
    group_of,
    is_cluster_scoped,
    placed,
)
from conveyor.errors import RenderError
from conveyor.kit.syntax import object_path

DEFAULT_CLUSTER_SCOPED = (
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("", "Namespace"),
)
_AGGREGATION_LABEL = "rbac.authorization.k8s.io/aggregate-to-"
BUILTIN_CLUSTER_SCOPED = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("storage.k8s.io", "VolumeAttributesClass"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("networking.k8s.io", "IngressClass"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("resource.k8s.io", "DeviceClass"),
    }
)
"""Cluster-scoped kinds of Kubernetes itself; every other kind of its groups is namespaced."""


class OutsideTarget(RenderError):
    """A rendered object would be written where its target does not allow (another namespace,
    a cluster-scoped kind the target does not list); nothing was applied."""


@dataclass(frozen=True)
class Confinement:
    """A target's rules: its namespace, the other namespaces it may write to, and the
    cluster-scoped kinds it allows beyond the defaults (`Kind`, or `Kind.group` for one group)."""

    namespace: str
    namespaces: tuple[str, ...] = ()
    cluster_scoped: tuple[str, ...] = ()

    @property
    def allowed_namespaces(self) -> tuple[str, ...]:
        return (self.namespace, *self.namespaces)

    def lists_kind(self, obj: Mapping[str, Any]) -> bool:
        kind, group = str(obj.get("kind")), group_of(str(obj.get("apiVersion", "")))
        return kind in self.cluster_scoped or f"{kind}.{group}" in self.cluster_scoped

    def problem(self, obj: Mapping[str, Any]) -> str | None:
        """Which rule `obj` (prepared) breaks, None when it may be applied."""
        metadata = obj.get("metadata", {})
        if not is_cluster_scoped(obj):
            if metadata["namespace"] in self.allowed_namespaces:
                return None
            return (
                f"namespaced objects go to the target's namespace {self.namespace!r}"
                + (f" or to {', '.join(map(repr, self.namespaces))}" if self.namespaces else "")
                + " (list more under the target's `namespaces`)"
            )
        kind = str(obj["kind"])
        group_kind = (group_of(str(obj["apiVersion"])), kind)
        if group_kind == ("", "Namespace"):
            if metadata["name"] in self.allowed_namespaces:
                return None
            return (
                "a bundle may create only its target's namespaces "
                f"({', '.join(map(repr, self.allowed_namespaces))}; "
                "list more under the target's `namespaces`)"
            )
        if self.lists_kind(obj):
            return None
        if group_kind in DEFAULT_CLUSTER_SCOPED:
            labels = metadata.get("labels") or {}
            if kind == "ClusterRole" and any(k.startswith(_AGGREGATION_LABEL) for k in labels):
                return (
                    "a ClusterRole that aggregates into other roles (aggregate-to-* labels) "
                    "needs ClusterRole listed under the target's `clusterScoped`"
                )
            return None
        allowed = [kind for _, kind in DEFAULT_CLUSTER_SCOPED] + list(self.cluster_scoped)
        return (
            f"cluster-scoped kind {kind} is not allowed for this target (allowed: "
            f"{', '.join(dict.fromkeys(allowed))}; list it under the target's `clusterScoped`)"
        )


def refuse_outside(
    prepared: Sequence[Mapping[str, Any]],
    confinement: Confinement,
    *,
    target: str,
    origins: Sequence[str] = (),
) -> None:
    """Raise OutsideTarget naming every object of `prepared` that breaks the target's rules,
    with its file where `origins` (one per object, in order) says."""
    refused = []
    for index, obj in enumerate(prepared):
        problem = confinement.problem(obj)
        if problem is None:
            continue
        metadata = obj.get("metadata", {})
        where = f"{origins[index]}: " if index < len(origins) else ""
        path = object_path(str(obj["kind"]), metadata.get("namespace"), str(metadata["name"]))
        refused.append(f"{where}{path}: {problem}")
    if refused:
        raise OutsideTarget(
            f"target {target!r} may not write {len(refused)} object(s) of the bundle: "
            + "; ".join(refused)
            + "; nothing was applied",
            hint="drop the explicit namespace or the object from the bundle, or allow it in the "
            "target's configuration (`namespaces`, `clusterScoped`; for `conveyor apply`: "
            "`--allow-namespace`, `--allow-cluster-scoped`) if that target should own it",
        )


def refuse_outside_rendered(
    objects: Sequence[Mapping[str, Any]],
    confinement: Confinement,
    *,
    target: str,
    origins: Sequence[str] = (),
) -> None:
    """`refuse_outside` for rendered objects, before any cluster is asked: each object whose
    scope is known (a built-in kind, a kind a definition of the bundle declares) is placed as
    the apply will place it and checked; the others are left to the apply's check."""
    declared = _scopes_declared_by(objects)
    checked: list[Mapping[str, Any]] = []
    checked_origins: list[str] = []
    for index, obj in enumerate(objects):
        group_kind = (group_of(str(obj.get("apiVersion", ""))), str(obj.get("kind")))
        if group_kind in declared:
            namespaced = declared[group_kind]
        elif group_kind[0] in BUILTIN_GROUPS:
            namespaced = group_kind not in BUILTIN_CLUSTER_SCOPED
        else:
            continue
        checked.append(placed(obj, namespaced=namespaced, namespace=confinement.namespace))
        checked_origins.append(origins[index] if index < len(origins) else "")
    refuse_outside(checked, confinement, target=target, origins=checked_origins if origins else ())


def _scopes_declared_by(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    """(group, kind) -> namespaced, for the kinds the bundle's definitions declare."""
    scopes = {}
    for obj in objects:
        spec = obj.get("spec") if obj.get("kind") == "CustomResourceDefinition" else None
        if isinstance(spec, dict) and isinstance(spec.get("names"), dict):
            scopes[(str(spec.get("group")), str(spec["names"].get("kind")))] = (
                spec.get("scope") == "Namespaced"
            )
    return scopes
