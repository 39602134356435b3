"""Drift: where the live objects of a target no longer match what Conveyor applied.

Under server-side apply Conveyor owns exactly the fields it sets, so drift is a field we set whose
live value differs (somebody ran `kubectl scale`), or an object we applied that is gone. Fields
we do not set (defaults, status, other managers' labels) are not drift, nor is an empty map or
list we set that the server leaves out. The comparison is a pure function: every field of the
desired object must be present in the live one with an equal value; lists compare item by item,
and Kubernetes quantities compare by value ("1000m" equals "1").

A Secret is compared as the API server stores it: `stringData` is write-only, merged into `data`
(base64 of the UTF-8 text, winning over `data` for the same key), so a Secret written with
`stringData` matches its live object. Its values never leave this module: a drifting field of a
Secret's `data` shows the short hash of each side (`sha256:1a2b3c4d…`), as drift tables, logs,
artifacts and approval forms are read by people who may not read the Secret.

Detection reads each (kind, namespace) once with a label selector: the number of API requests
grows with the kinds and namespaces of a bundle, not with its objects. A control loop checking
every target of a cluster reads each kind once for the whole cluster (`read_live_fleet`).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from conveyor.adapters.kube import Kube
from conveyor.cluster.ordering import APP_LABEL, TARGET_LABEL, ObjectRef, selector
from conveyor.kit.absent import ABSENT
from conveyor.kit.redaction import short_hash

_SERVER_OWNED_METADATA = {
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "ownerReferences",
    "finalizers",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
}

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$")
_SUFFIX = {
    None: Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


@dataclass(frozen=True)
class FieldDrift:
    path: str
    desired: Any
    live: Any


DRIFT_COLUMNS = ("object", "field", "desired", "live")
"""The columns of a drift table (`ObjectDrift.rows`): the CLI and the reconcile report show it."""
_DELETED = "deleted out of band"


@dataclass(frozen=True)
class ObjectDrift:
    ref: ObjectRef
    missing: bool = False
    fields: tuple[FieldDrift, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        if self.missing:
            return f"{self.ref}: {_DELETED}"
        changes = "; ".join(f"{f.path}: want {f.desired!r}, live {f.live!r}" for f in self.fields)
        return f"{self.ref}: {changes}"

    def rows(self) -> list[dict[str, str]]:
        """The drift as rows of a drift table (`DRIFT_COLUMNS`): one a field, or one row for an
        object deleted out of band."""
        if self.missing:
            return [self._row("(object)", "present", _DELETED)]
        return [self._row(f.path, repr(f.desired), repr(f.live)) for f in self.fields]

    def _row(self, path: str, desired: str, live: str) -> dict[str, str]:
        return {"object": str(self.ref), "field": path, "desired": desired, "live": live}

    def as_dict(self) -> dict[str, Any]:
        """The drift as JSON: `live` is null where the field is absent from the live object."""
        return {
            "object": str(self.ref),
            "missing": self.missing,
            "fields": [
                {"path": f.path, "desired": f.desired, "live": None if f.live is ABSENT else f.live}
                for f in self.fields
            ],
        }


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    match = _QUANTITY.match(str(value))
    if not match:
        return None
    number, suffix = match.groups()
    try:
        if suffix and suffix.startswith("e"):
            return Decimal(number) * (Decimal(10) ** int(suffix[1:]))
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, KeyError):
        return None


_QUANTITY_MAPS = frozenset(
    {
        "requests",  # resources of containers, PVCs
        "limits",  # resources of containers; LimitRange items
        "hard",  # ResourceQuota
        "overhead",  # Pod, RuntimeClass
        "capacity",  # PersistentVolume
        "max",  # LimitRange items
        "min",
        "default",
        "defaultRequest",
        "maxLimitRequestRatio",
    }
)
"""Mappings whose values are Kubernetes quantities (the API server writes `0.5` back as
`500m`); elsewhere a string is compared as written."""
_QUANTITY_FIELDS = frozenset({"sizeLimit", "averageValue"})


def _holds_quantities(path: str, key: str) -> bool:
    return (
        key in _QUANTITY_MAPS
        or key in _QUANTITY_FIELDS
        or (key == "value" and path.endswith("target"))  # HorizontalPodAutoscaler metrics
    )


def _equal_scalars(desired: Any, live: Any, quantities: bool) -> bool:
    if desired == live and type(desired) is type(live):
        return True
    if isinstance(desired, str) or isinstance(live, str):
        if not quantities:
            return False
        a, b = _quantity(desired), _quantity(live)
        return a is not None and a == b
    return bool(desired == live) and not isinstance(desired, bool) and not isinstance(live, bool)


def compare(
    desired: Any, live: Any, path: str = "", *, quantities: bool = False
) -> list[FieldDrift]:
    """Fields of `desired` whose value in `live` differs (desired must be a subset of live).
    Values under quantity fields (resources, quotas, size limits) are compared as quantities,
    or everywhere below `path` when `quantities` is set."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [FieldDrift(path or ".", desired, live)]
        drifts = []
        for key, value in desired.items():
            child = f"{path}.{key}" if path else str(key)
            if path == "metadata" and key in _SERVER_OWNED_METADATA:
                continue
            if key not in live:
                if value != {} and value != []:  # the server omits empty maps and lists
                    drifts.append(FieldDrift(child, value, ABSENT))
            else:
                below = quantities or _holds_quantities(path, str(key))
                drifts.extend(compare(value, live[key], child, quantities=below))
        return drifts
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [FieldDrift(path, desired, live)]
        drifts = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            drifts.extend(compare(want, have, f"{path}[{index}]", quantities=quantities))
        return drifts
    if _equal_scalars(desired, live, quantities):
        return []
    return [FieldDrift(path, desired, live)]


def is_secret(obj: Mapping[str, Any]) -> bool:
    return obj.get("apiVersion") == "v1" and obj.get("kind") == "Secret"


def as_stored(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """`obj` as the API server stores it: a Secret's `stringData` merged into `data` (base64 of
    the UTF-8 text; `stringData` wins for a key both have). Other objects are returned as given."""
    string_data = obj.get("stringData")
    if not is_secret(obj) or not isinstance(string_data, Mapping):
        return obj
    stored = {key: value for key, value in obj.items() if key != "stringData"}
    data = dict(obj.get("data") or {})
    for key, text in string_data.items():
        data[key] = base64.b64encode(str(text).encode("utf-8")).decode("ascii")
    stored["data"] = data
    return stored


def _hidden(value: Any) -> Any:
    """A Secret's value as drift shows it: its short hash (absent stays absent)."""
    return value if value is ABSENT else short_hash(value)


def _without_secret_values(fields: list[FieldDrift]) -> list[FieldDrift]:
    return [
        FieldDrift(f.path, _hidden(f.desired), _hidden(f.live))
        if f.path.split(".")[0].split("[")[0] in ("data", "stringData", ".")
        else f
        for f in fields
    ]


def object_drift(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[FieldDrift]:
    """Fields of the `desired` object whose live value differs; a Secret is compared as stored
    and its values are shown as short hashes."""
    if not is_secret(desired):
        return compare(desired, live)
    return _without_secret_values(compare(as_stored(desired), live))


def read_live(
    kube: Kube, desired: Sequence[Mapping[str, Any]], *, app: str, target: str
) -> dict[ObjectRef, Mapping[str, Any] | None]:
    """The live object of every desired one (prepared: labelled and namespaced), or None when
    the cluster has no such object carrying Conveyor's labels: one labelled LIST per kind and
    namespace, whatever the number of objects. Cluster-scoped objects are matched by app alone:
    every target of the app on the cluster shares them."""
    live: dict[ObjectRef, Mapping[str, Any] | None] = {}
    for (api_version, kind, namespace), objects in _by_kind_and_namespace(desired):
        labels = selector(app=app, target=target if namespace else None)
        items, _ = kube.list(api_version, kind, namespace, label_selector=labels)
        by_name = {item["metadata"]["name"]: item for item in items}
        live.update((ref, by_name.get(ref.name)) for ref in map(ObjectRef.of, objects))
    return live


TargetKey = tuple[str, str]
"""(app, target): which target of which app a set of objects belongs to."""


def read_live_fleet(
    kube: Kube, desired: Mapping[TargetKey, Sequence[Mapping[str, Any]]]
) -> dict[TargetKey, dict[ObjectRef, Mapping[str, Any] | None]]:
    """`read_live` for many targets of one cluster at once: one LIST per kind over the whole
    cluster, selecting every object Conveyor labelled, whatever the number of targets, apps and
    namespaces. A live object counts for a target only when its labels name that app and, for
    a namespaced object, that target (as `read_live`'s selectors do)."""
    kinds = sorted({(o["apiVersion"], o["kind"]) for objs in desired.values() for o in objs})
    listed: dict[ObjectRef, Mapping[str, Any]] = {}
    for api_version, kind in kinds:
        items, _ = kube.list(api_version, kind, None, label_selector=APP_LABEL)
        listed.update((ObjectRef.of(item), item) for item in items)
    live: dict[TargetKey, dict[ObjectRef, Mapping[str, Any] | None]] = {}
    for (app, target), objects in desired.items():
        found: dict[ObjectRef, Mapping[str, Any] | None] = {}
        for ref in map(ObjectRef.of, objects):
            item = listed.get(ref)
            labels = item.get("metadata", {}).get("labels") or {} if item else {}
            owned = labels.get(APP_LABEL) == app and (
                ref.namespace is None or labels.get(TARGET_LABEL) == target
            )
            found[ref] = item if owned else None
        live[(app, target)] = found
    return live


def _by_kind_and_namespace(
    objects: Sequence[Mapping[str, Any]],
) -> list[tuple[tuple[str, str, str | None], list[Mapping[str, Any]]]]:
    groups: dict[tuple[str, str, str | None], list[Mapping[str, Any]]] = {}
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"))
        groups.setdefault(key, []).append(obj)
    return sorted(groups.items(), key=str)


def detect(
    kube: Kube,
    desired: Sequence[Mapping[str, Any]],
    *,
    app: str,
    target: str,
    live: Mapping[ObjectRef, Mapping[str, Any] | None] | None = None,
) -> list[ObjectDrift]:
    """Drift of every desired object (prepared: labelled and namespaced) against the cluster,
    or against `live` when the caller has read it already (read_live)."""
    if live is None:
        live = read_live(kube, desired, app=app, target=target)
    drifts = []
    for obj in (o for _, group in _by_kind_and_namespace(desired) for o in group):
        ref = ObjectRef.of(obj)
        found = live.get(ref)
        if found is None:
            drifts.append(ObjectDrift(ref, missing=True))
            continue
        fields = object_drift(obj, found)
        if fields:
            drifts.append(ObjectDrift(ref, fields=tuple(fields)))
    return drifts
