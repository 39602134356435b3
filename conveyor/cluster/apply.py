"""Put a rendered bundle on a target: server-side apply in phases, then prune what it dropped.

An inventory ConfigMap in the target namespace records what Conveyor applied there for an app.
Before applying, the inventory is widened to old + new, so a run killed half-way still knows every
object it may have created; after applying, objects of the old set that the new bundle no longer
has are deleted (only if they still carry Conveyor's labels for this app and target: an object
somebody else created is never touched), and the inventory is narrowed to the new set.

Cluster-scoped objects (CRDs, ClusterRoles, Namespaces) have one owner per cluster: the app,
whichever of its targets applies them (see `ordering`). So, before anything is applied:
- a cluster-scoped object that another app's bundle put there is a ConflictError naming both
  apps, never a silent takeover;
- a cluster-scoped object the bundle dropped is pruned only when no other target of the app on
  this cluster still ships it (their inventories, read with one labelled LIST, say);
- a CustomResourceDefinition is kept unless the pipeline opts in (`pruneCustomResourceDefinitions`),
  because deleting it deletes every custom resource of its kind in the cluster; even then,
  pruning it while custom resources of it exist (other than the ones this prune removes) is a
  ConflictError naming the definition and how many there are.

Where a bundle may write is checked first, before anything is read or written
(`confinement`): its target's namespace (and those the target lists), and the cluster-scoped kinds
the target allows.

Each app and target applies with a field manager of its own (`ordering.field_manager`), the app
alone for cluster-scoped objects, so taking a field another target set is a conflict naming that
target. Objects applied before, under the one manager `conveyor` every target shared, move to the
new manager once: when an apply by the new manager answers with (or conflicts with) fields of the
old one on an object this placement's labels say is its own, the old manager's entry is merged
into the new one's in the object's managedFields (guarded by its resourceVersion) and, after a
conflict, the apply is sent again. Fields of any other manager still conflict.

The target's namespace: apply creates it when it is missing, labelled as Conveyor's
(`app.kubernetes.io/managed-by: conveyor`), and prune never deletes it, even when a bundle that
shipped it drops it: it may hold what others put there. Delete it by hand when the target goes.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from conveyor.adapters.kube import ApplyConflict, Kube, NotFound
from conveyor.cluster import health
from conveyor.cluster.confinement import Confinement, refuse_outside
from conveyor.cluster.ordering import (
    LEGACY_FIELD_MANAGER,
    MANAGED_BY,
    ObjectRef,
    field_manager,
    is_cluster_scoped,
    label,
    owned_by,
    owner_app,
    phases,
    placed,
)
from conveyor.errors import ClusterError, ConflictError
from conveyor.kit.progress import ProgressNote
from conveyor.kit.syntax import object_path

INVENTORY_LABEL = "conveyor.dev/inventory"
CRD_ESTABLISH_TIMEOUT = 60.0
_CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


@dataclass(frozen=True)
class Placement:
    """Where an app's objects go on a cluster: the app, the target's name (labels and inventory),
    its namespace, whether to take over fields other managers own, whether prune may delete
    CustomResourceDefinitions the bundle dropped, and where else the target may write (other
    namespaces, cluster-scoped kinds beyond the defaults: see `confinement`)."""

    app: str
    target: str
    namespace: str
    force_conflicts: bool = False
    prune_definitions: bool = False
    namespaces: tuple[str, ...] = ()
    cluster_scoped: tuple[str, ...] = ()

    @property
    def confinement(self) -> Confinement:
        return Confinement(self.namespace, self.namespaces, self.cluster_scoped)

    def field_manager(self, obj: Mapping[str, Any]) -> str:
        """The manager `obj` (prepared) is applied with: the app's and target's, the app's
        alone for a cluster-scoped object."""
        return field_manager(self.app, None if is_cluster_scoped(obj) else self.target)

    @property
    def inventory_name(self) -> str:
        """`conveyor-inventory.<app>.<target>`: app and target names are DNS labels, which hold
        no dot, so no two placements share it (with `-`, app `a-b`/target `c` and app `a`/target
        `b-c` did)."""
        return f"conveyor-inventory.{self.app}.{self.target}"

    @property
    def legacy_inventory_name(self) -> str:
        """The name inventories had before: still read (when its data names this app and
        target) until the next write moves it to `inventory_name`."""
        return f"conveyor-inventory-{self.app}-{self.target}"

    def owns_inventory(self, inventory: Mapping[str, Any]) -> bool:
        """Whether an inventory ConfigMap (under either name) is this placement's: its
        namespace, app and target, as it records them, are this placement's."""
        data = inventory.get("data") or {}
        return (inventory["metadata"].get("namespace"), data.get("app"), data.get("target")) == (
            self.namespace,
            self.app,
            self.target,
        )


@dataclass
class ApplyReport:
    """What an apply did (or, in dry-run mode, would do)."""

    applied: list[ObjectRef] = field(default_factory=list)
    pruned: list[ObjectRef] = field(default_factory=list)
    kept: list[ObjectRef] = field(default_factory=list)
    """Objects the bundle dropped that prune left in place: shared, or a protected kind."""
    live: dict[ObjectRef, dict[str, Any]] = field(default_factory=dict)
    """The objects as the server returned them from the apply (dry-run: as they would be)."""
    notes: list[str] = field(default_factory=list)
    """What a person should know: an inventory found damaged and rewritten, say."""
    elapsed: float = 0.0


def prepare(
    kube: Kube, objects: Sequence[Mapping[str, Any]], placement: Placement, digest: str
) -> list[dict[str, Any]]:
    """Put namespaced objects without a namespace into the target's, take the namespace off
    cluster-scoped ones, and label them (`ordering.label`)."""
    crd_kinds = _kinds_defined_by(objects)
    scoped = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        namespaced = crd_kinds[key] if key in crd_kinds else kube.resource_type(*key).namespaced
        scoped.append(placed(obj, namespaced=namespaced, namespace=placement.namespace))
    return label(scoped, app=placement.app, target=placement.target, digest=digest)


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


class DamagedInventory(ClusterError):
    """An inventory ConfigMap that does not hold a list of objects (edited by hand, say)."""


def read_inventory(kube: Kube, placement: Placement) -> list[ObjectRef]:
    """What Conveyor last applied for the placement; DamagedInventory when the ConfigMap does
    not hold Conveyor's list (anyone who may edit ConfigMaps in the namespace can break it)."""
    found = kube.get("v1", "ConfigMap", placement.inventory_name, placement.namespace)
    if not found:
        found = _legacy_inventory(kube, placement)
    if not found:
        return []
    refs = _inventory_refs(found)
    if refs is None:
        raise DamagedInventory(
            f"ConfigMap {placement.namespace}/{found['metadata']['name']}: data.objects is not "
            "Conveyor's inventory (a JSON list of apiVersion, kind, namespace, name)"
        )
    return refs


def _inventory_refs(inventory: Mapping[str, Any]) -> list[ObjectRef] | None:
    """The objects an inventory ConfigMap lists; None when it does not hold a sound list."""
    try:
        entries = json.loads((inventory.get("data") or {}).get("objects", "[]"))
    except ValueError:
        return None
    fields = ("apiVersion", "kind", "namespace", "name")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict)
        and all(isinstance(e.get(f), str) for f in ("apiVersion", "kind", "name"))
        and isinstance(e.get("namespace"), (str, type(None)))
        and set(e) <= set(fields)
        for e in entries
    ):
        return None
    return [ObjectRef(e["apiVersion"], e["kind"], e.get("namespace"), e["name"]) for e in entries]


def _inventory_or_nothing(kube: Kube, placement: Placement, notes: list[str]) -> list[ObjectRef]:
    """The placement's inventory; a damaged one counts as empty (nothing is deleted on the
    word of junk) and says so in `notes`; the write that follows replaces it."""
    try:
        return read_inventory(kube, placement)
    except DamagedInventory as damaged:
        notes.append(f"{damaged.message}; rewritten, nothing it listed was pruned")
        return []


def _legacy_inventory(kube: Kube, placement: Placement) -> dict[str, Any] | None:
    """The placement's inventory under its old name, if there is one and it is this
    placement's (the old name may be another app's and target's)."""
    found = kube.get("v1", "ConfigMap", placement.legacy_inventory_name, placement.namespace)
    return found if found and placement.owns_inventory(found) else None


def _write_inventory(
    kube: Kube, placement: Placement, refs: Sequence[ObjectRef], digest: str
) -> None:
    """Write the inventory under its name; one left under the old name is then deleted."""
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
        field_manager=field_manager(placement.app, placement.target),
    )
    if _legacy_inventory(kube, placement) is not None:
        kube.delete("v1", "ConfigMap", placement.legacy_inventory_name, placement.namespace)


def _ensure_namespace(kube: Kube, placement: Placement, dry_run: bool) -> None:
    if kube.get("v1", "Namespace", placement.namespace) is None:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": placement.namespace, "labels": {MANAGED_BY: "conveyor"}},
            },
            dry_run=dry_run,
            field_manager=field_manager(placement.app, None),
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
    origins: Sequence[str] = (),
) -> ApplyReport:
    """Apply `objects` (rendered, unlabelled) to `placement`; prune what the bundle dropped.

    An object outside the target (`confinement.OutsideTarget`, naming its file from `origins`,
    one per object) and conflicts (another app's cluster-scoped object, a definition whose
    custom resources exist) are raised before anything is written."""
    started = time.monotonic()
    report = ApplyReport()
    prepared = prepare(kube, objects, placement, digest)
    refuse_outside(prepared, placement.confinement, target=placement.target, origins=origins)
    new_refs = [ObjectRef.of(obj) for obj in prepared]
    before = _inventory_or_nothing(kube, placement, report.notes)
    refuse_other_apps_objects(kube, prepared, placement.app)
    plan = plan_prune(kube, _stale(before, new_refs), placement) if prune else None
    _ensure_namespace(kube, placement, dry_run)
    if not dry_run and not set(new_refs) <= set(before):  # already covered: no widening needed
        _write_inventory(kube, placement, [*before, *new_refs], digest)
    _apply_in_phases(kube, prepared, placement, report, concurrency, dry_run, progress)
    if plan is not None:
        report.pruned = _delete(kube, plan.delete, dry_run, progress)
        report.kept = plan.kept
        if not dry_run:
            _write_inventory(kube, placement, new_refs, digest)
    report.elapsed = time.monotonic() - started
    return report


def _apply_in_phases(
    kube: Kube,
    prepared: Sequence[Mapping[str, Any]],
    placement: Placement,
    report: ApplyReport,
    concurrency: int,
    dry_run: bool,
    progress: ProgressNote | None,
) -> None:
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for group in phases(prepared):
            if progress:
                progress(f"applying {len(group)} object(s): {_kinds(group)}")
            results = pool.map(lambda obj: _apply_one(kube, obj, placement, dry_run=dry_run), group)
            for obj, live in zip(group, results, strict=True):
                ref = ObjectRef.of(obj)
                report.applied.append(ref)
                report.live[ref] = live
            crds = [o for o in group if o["kind"] == "CustomResourceDefinition"]
            if crds and not dry_run:
                _wait_established(kube, crds, progress)


def _apply_one(
    kube: Kube, obj: Mapping[str, Any], placement: Placement, *, dry_run: bool
) -> dict[str, Any]:
    """Apply one prepared object with the placement's manager, moving the fields the legacy
    manager holds on it to that manager (see the module's docstring)."""
    manager = placement.field_manager(obj)
    try:
        live = kube.apply(
            obj, force=placement.force_conflicts, dry_run=dry_run, field_manager=manager
        )
    except ApplyConflict:
        ref = ObjectRef.of(obj)
        current = kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)
        if dry_run or current is None or not _migrate_legacy_fields(kube, current, placement):
            raise
        return kube.apply(obj, force=placement.force_conflicts, field_manager=manager)
    if not dry_run:
        _migrate_legacy_fields(kube, live, placement)
    return live


def _migrate_legacy_fields(kube: Kube, live: Mapping[str, Any], placement: Placement) -> bool:
    """Give the placement's manager the fields the legacy manager applied on `live`, when its
    labels say it is this placement's; False when there was nothing to move, the object is not
    ours, or it changed meanwhile (the next apply tries again)."""
    metadata = live.get("metadata", {})
    entries = metadata.get("managedFields") or []
    legacy = [e for e in entries if _is_apply_by(e, LEGACY_FIELD_MANAGER)]
    if not legacy or not owned_by(live, app=placement.app, target=placement.target):
        return False
    manager = placement.field_manager(live)
    moved = [e for e in entries if not _is_apply_by(e, LEGACY_FIELD_MANAGER)]
    for old in legacy:
        mine = next(
            (e for e in moved if _is_apply_by(e, manager) and e["apiVersion"] == old["apiVersion"]),
            None,
        )
        if mine is None:
            moved.append({**old, "manager": manager})
        else:
            mine["fieldsV1"] = _union(mine.get("fieldsV1", {}), old.get("fieldsV1", {}))
    ref = ObjectRef.of(live)
    resource = kube.resource_type(ref.api_version, ref.kind)
    try:
        kube.request(
            "PATCH",
            resource.path(ref.namespace, ref.name),
            body={
                "metadata": {"managedFields": moved, "resourceVersion": metadata["resourceVersion"]}
            },
            content_type="application/merge-patch+json",
            what=f"move {ref}'s fields from field manager {LEGACY_FIELD_MANAGER!r} to {manager!r}",
        )
    except ApplyConflict:  # its resourceVersion moved on: somebody wrote it meanwhile
        return False
    return True


def _is_apply_by(entry: Mapping[str, Any], manager: str) -> bool:
    return bool(entry.get("manager") == manager and entry.get("operation") == "Apply")


def _union(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """Two managedFields field sets (FieldsV1: nested mappings, `{}` leaves) merged."""
    merged = copy.deepcopy(dict(mine))
    for key, value in theirs.items():
        merged[key] = _union(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


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
    plan = plan_prune(kube, _stale(_inventory_or_nothing(kube, placement, []), new_refs), placement)
    pruned = _delete(kube, plan.delete, dry_run, None)
    if not dry_run:
        _write_inventory(kube, placement, new_refs, digest)
    return pruned


def refuse_other_apps_objects(kube: Kube, prepared: Sequence[Mapping[str, Any]], app: str) -> None:
    """Raise ConflictError when a cluster-scoped object of the bundle was applied by Conveyor
    for another app: one object has one owner per cluster."""
    taken = []
    for obj in prepared:
        if not is_cluster_scoped(obj):
            continue
        live = kube.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        owner = owner_app(live) if live else None
        if owner and owner != app:
            taken.append(f"{ObjectRef.of(obj)} (owned by app {owner!r})")
    if taken:
        raise ConflictError(
            f"app {app!r} ships cluster-scoped object(s) another app already owns on this "
            f"cluster: {', '.join(taken)}; nothing was applied",
            hint="ship each cluster-scoped object from one app only: drop it from one of the "
            "bundles (the other app keeps it), or move it to an app both depend on",
        )


@dataclass(frozen=True)
class PrunePlan:
    """What prune will delete, and which dropped objects it keeps (shared or protected)."""

    delete: list[ObjectRef]
    kept: list[ObjectRef]


def plan_prune(kube: Kube, stale: Sequence[ObjectRef], placement: Placement) -> PrunePlan:
    """Decide, before anything is applied, what to do with each object the bundle dropped.

    Raises ConflictError when the plan would delete a CustomResourceDefinition whose custom
    resources (others than those this prune deletes) exist anywhere in the cluster."""
    shared: set[tuple[tuple[str, str], str]] | None = (
        _shipped_by_other_targets(kube, placement)
        if any(ref.namespace is None for ref in stale)
        else set()
    )
    delete: list[ObjectRef] = []
    kept: list[ObjectRef] = []
    definitions: list[tuple[ObjectRef, Mapping[str, Any]]] = []
    for ref in stale:
        live = kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)
        if live is None or not owned_by(live, app=placement.app, target=placement.target):
            continue  # already gone, or no longer ours: never delete what we did not create
        if ref.namespace is None and (
            _protected(ref, placement) or shared is None or (ref.group_kind, ref.name) in shared
        ):
            kept.append(ref)
        elif _is_definition(ref):
            definitions.append((ref, live))
        else:
            delete.append(ref)
    refused = []
    for ref, definition in definitions:
        left = _custom_resources_left(kube, definition, delete)
        if left:
            refused.append(f"{ref}: {len(left)} custom resource(s) exist, e.g. {left[0]}")
        delete.append(ref)
    if refused:
        raise ConflictError(
            f"{placement.app}/{placement.target}: the bundle dropped definition(s) whose custom "
            f"resources still exist in the cluster: {'; '.join(refused)}; deleting a definition "
            "deletes all of them, so nothing was applied or deleted",
            hint="delete those custom resources first, keep the definition in the bundle, or "
            "set `pruneCustomResourceDefinitions: false` in the pipeline to leave it in place",
        )
    return PrunePlan(delete, kept)


def _is_definition(ref: ObjectRef) -> bool:
    return ref.group_kind == ("apiextensions.k8s.io", "CustomResourceDefinition")


def _protected(ref: ObjectRef, placement: Placement) -> bool:
    """The target's namespace, and definitions unless the pipeline opted in: never pruned."""
    if ref.group_kind == ("", "Namespace"):
        return ref.name == placement.namespace
    return _is_definition(ref) and not placement.prune_definitions


def _shipped_by_other_targets(
    kube: Kube, placement: Placement
) -> set[tuple[tuple[str, str], str]] | None:
    """(group_kind, name) of the cluster-scoped objects in the inventories of the app's other
    targets on this cluster: one labelled LIST of ConfigMaps across namespaces. None when one
    of them is damaged: what that target ships is unknown, so nothing shared may be pruned."""
    inventories, _ = kube.list("v1", "ConfigMap", label_selector=f"{INVENTORY_LABEL}=true")
    shipped: set[tuple[tuple[str, str], str]] = set()
    for inventory in inventories:
        data = inventory.get("data") or {}
        if placement.owns_inventory(inventory) or data.get("app") != placement.app:
            continue
        refs = _inventory_refs(inventory)
        if refs is None:
            return None
        shipped.update((ref.group_kind, ref.name) for ref in refs if ref.namespace is None)
    return shipped


def _custom_resources_left(
    kube: Kube, definition: Mapping[str, Any], pruned_with_it: Sequence[ObjectRef]
) -> list[ObjectRef]:
    """Custom resources of `definition` anywhere in the cluster, but for those in
    `pruned_with_it` (this prune deletes them anyway)."""
    spec = definition.get("spec", {})
    served = [v["name"] for v in spec.get("versions", []) if v.get("served")]
    if not served:
        return []  # no version served: nothing can be listed, nor exist to be lost
    try:
        items, _ = kube.list(f"{spec['group']}/{served[0]}", spec["names"]["kind"])
    except NotFound:
        return []
    leaving = {(ref.group_kind, ref.namespace, ref.name) for ref in pruned_with_it}
    left = [ObjectRef.of(item) for item in items]
    return [ref for ref in left if (ref.group_kind, ref.namespace, ref.name) not in leaving]


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
    """Block until every CRD reports Established and discovery serves its kinds (a busy API
    server lists a new group moments after it reports Established), so its custom resources
    can be applied."""
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
    for definition in crds:
        spec = definition.get("spec", {})
        kind = spec.get("names", {}).get("kind", "")
        for version in spec.get("versions", []):
            if version.get("served"):
                _wait_discovered(kube, f"{spec.get('group')}/{version['name']}", kind, deadline)


def _wait_discovered(kube: Kube, api_version: str, kind: str, deadline: float) -> None:
    while True:
        try:
            kube.resource_type(api_version, kind)
            return
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _delete(
    kube: Kube, refs: Sequence[ObjectRef], dry_run: bool, progress: ProgressNote | None
) -> list[ObjectRef]:
    deleted = []
    for ref in refs:
        if progress:
            progress(f"pruning {ref}")
        if kube.delete(ref.api_version, ref.kind, ref.name, ref.namespace, dry_run=dry_run):
            deleted.append(ref)
    return deleted
