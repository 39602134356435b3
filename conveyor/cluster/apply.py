"""Put a rendered bundle on a target: server-side apply in phases, then prune what it dropped.

An inventory ConfigMap in the target namespace records what Conveyor applied there for an app.
Before applying, the inventory is widened to old + new, so a run killed half-way still knows every
object it may have created; after applying, objects of the old set that the new bundle no longer
has are deleted (only if they still carry Conveyor's labels for this app and target: an object
somebody else created is never touched), and the inventory is narrowed to the new set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from conveyor.adapters.kube import Kube
from conveyor.cluster import health
from conveyor.cluster.ordering import (
    MANAGED_BY,
    ObjectRef,
    label,
    owned_by,
    phases,
)
from conveyor.errors import ClusterError
from conveyor.kit.progress import ProgressNote
from conveyor.kit.syntax import object_path

INVENTORY_LABEL = "conveyor.dev/inventory"
CRD_ESTABLISH_TIMEOUT = 60.0


@dataclass(frozen=True)
class Placement:
    """Where an app's objects go on a cluster: the app, the target's name (labels and inventory),
    its namespace, and whether to take over fields other managers own."""

    app: str
    target: str
    namespace: str
    force_conflicts: bool = False

    @property
    def inventory_name(self) -> str:
        return f"conveyor-inventory-{self.app}-{self.target}"


@dataclass
class ApplyReport:
    """What an apply did (or, in dry-run mode, would do)."""

    applied: list[ObjectRef] = field(default_factory=list)
    pruned: list[ObjectRef] = field(default_factory=list)
    live: dict[ObjectRef, dict[str, Any]] = field(default_factory=dict)
    """The objects as the server returned them from the apply (dry-run: as they would be)."""
    elapsed: float = 0.0


def prepare(
    kube: Kube, objects: Sequence[Mapping[str, Any]], placement: Placement, digest: str
) -> list[dict[str, Any]]:
    """Label the objects and put namespaced ones without a namespace into the target's."""
    prepared = label(objects, app=placement.app, target=placement.target, digest=digest)
    crd_kinds = _kinds_defined_by(prepared)
    for obj in prepared:
        metadata = obj["metadata"]
        if metadata.get("namespace"):
            continue
        key = (obj["apiVersion"], obj["kind"])
        namespaced = crd_kinds[key] if key in crd_kinds else kube.resource_type(*key).namespaced
        if namespaced:
            metadata["namespace"] = placement.namespace
    return prepared


def _kinds_defined_by(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], bool]:
    """(apiVersion, kind) -> namespaced, for the CRDs in the bundle (not yet served)."""
    kinds = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec", {})
        namespaced = spec.get("scope") == "Namespaced"
        for version in spec.get("versions", []):
            kinds[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = namespaced
    return kinds


def read_inventory(kube: Kube, placement: Placement) -> list[ObjectRef]:
    found = kube.get("v1", "ConfigMap", placement.inventory_name, placement.namespace)
    if not found:
        return []
    entries = json.loads(found.get("data", {}).get("objects", "[]"))
    return [ObjectRef(e["apiVersion"], e["kind"], e["namespace"], e["name"]) for e in entries]


def _write_inventory(
    kube: Kube, placement: Placement, refs: Sequence[ObjectRef], digest: str
) -> None:
    unique = sorted(set(refs), key=str)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": placement.inventory_name,
                "namespace": placement.namespace,
                "labels": {MANAGED_BY: "conveyor", INVENTORY_LABEL: "true"},
            },
            "data": {
                "app": placement.app,
                "target": placement.target,
                "digest": digest,
                "objects": json.dumps([ref.as_dict() for ref in unique], indent=1),
            },
        },
        force=True,
    )


def _ensure_namespace(kube: Kube, namespace: str, dry_run: bool) -> None:
    if kube.get("v1", "Namespace", namespace) is None:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {MANAGED_BY: "conveyor"}},
            },
            dry_run=dry_run,
        )


def apply_bundle(
    kube: Kube,
    objects: Sequence[Mapping[str, Any]],
    placement: Placement,
    *,
    digest: str,
    concurrency: int = 16,
    dry_run: bool = False,
    prune: bool = True,
    progress: ProgressNote | None = None,
) -> ApplyReport:
    """Apply `objects` (rendered, unlabelled) to `placement`; prune what the bundle dropped."""
    started = time.monotonic()
    report = ApplyReport()
    _ensure_namespace(kube, placement.namespace, dry_run)
    prepared = prepare(kube, objects, placement, digest)
    new_refs = [ObjectRef.of(obj) for obj in prepared]
    before = read_inventory(kube, placement)
    if not dry_run and not set(new_refs) <= set(before):  # already covered: no widening needed
        _write_inventory(kube, placement, [*before, *new_refs], digest)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for group in phases(prepared):
            if progress:
                progress(f"applying {len(group)} object(s): {_kinds(group)}")
            results = pool.map(
                lambda obj: kube.apply(obj, force=placement.force_conflicts, dry_run=dry_run), group
            )
            for obj, live in zip(group, results, strict=True):
                ref = ObjectRef.of(obj)
                report.applied.append(ref)
                report.live[ref] = live
            crds = [o for o in group if o["kind"] == "CustomResourceDefinition"]
            if crds and not dry_run:
                _wait_established(kube, crds, progress)

    if prune:
        report.pruned = _prune(kube, _stale(before, new_refs), placement, dry_run, progress)
        if not dry_run:
            _write_inventory(kube, placement, new_refs, digest)
    report.elapsed = time.monotonic() - started
    return report


def prune(
    kube: Kube,
    objects: Sequence[Mapping[str, Any]],
    placement: Placement,
    *,
    digest: str,
    dry_run: bool = False,
) -> list[ObjectRef]:
    """Only the prune half of an apply: delete what the inventory has and `objects` lack."""
    new_refs = [ObjectRef.of(obj) for obj in prepare(kube, objects, placement, digest)]
    pruned = _prune(
        kube, _stale(read_inventory(kube, placement), new_refs), placement, dry_run, None
    )
    if not dry_run:
        _write_inventory(kube, placement, new_refs, digest)
    return pruned


def _stale(before: Sequence[ObjectRef], new_refs: Sequence[ObjectRef]) -> list[ObjectRef]:
    kept = {(ref.group_kind, ref.namespace, ref.name) for ref in new_refs}
    return [ref for ref in before if (ref.group_kind, ref.namespace, ref.name) not in kept]


def _kinds(group: Sequence[Mapping[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for obj in group:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def _wait_established(
    kube: Kube, crds: Sequence[Mapping[str, Any]], progress: ProgressNote | None
) -> None:
    """Block until every CRD reports Established, so its custom resources can be applied."""
    if progress:
        progress(f"waiting for {len(crds)} CustomResourceDefinition(s) to be established")
    deadline = time.monotonic() + CRD_ESTABLISH_TIMEOUT
    pending = {crd["metadata"]["name"] for crd in crds}
    while pending:
        for name in sorted(pending):
            live = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            verdict = health.status(live) if live else None
            if verdict and verdict.state is health.State.CURRENT:
                pending.discard(name)
            elif verdict and verdict.state is health.State.FAILED:
                crd = object_path("CustomResourceDefinition", None, name)
                raise ClusterError(f"{crd}: {verdict.reason}")
        if pending and time.monotonic() > deadline:
            raise ClusterError(
                f"CustomResourceDefinition(s) {', '.join(sorted(pending))} not established "
                f"after {CRD_ESTABLISH_TIMEOUT:.0f}s",
                hint="check the API server's log for errors about these definitions",
            )
        if pending:
            time.sleep(0.05)


def _prune(
    kube: Kube,
    stale: Sequence[ObjectRef],
    placement: Placement,
    dry_run: bool,
    progress: ProgressNote | None,
) -> list[ObjectRef]:
    pruned = []
    for ref in stale:
        live = kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)
        if live is None or not owned_by(live, app=placement.app, target=placement.target):
            continue  # already gone, or no longer ours: never delete what we did not create
        if progress:
            progress(f"pruning {ref}")
        kube.delete(ref.api_version, ref.kind, ref.name, ref.namespace, dry_run=dry_run)
        pruned.append(ref)
    return pruned
