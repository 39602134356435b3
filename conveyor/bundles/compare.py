"""What differs between two targets of one bundle: their parameters and the fields they render.

Why: environments may differ only by declared parameters, and `conveyor diff APP TARGET_A
TARGET_B` shows exactly that difference, nothing else: each parameter whose value differs
(defaults applied) and each rendered field whose value differs.

Objects are paired by position, not by name: both renders come from the same source, so the
i-th object of one is the i-th object of the other even when a parameter changes its name or
namespace (which then shows up as a differing `metadata.name` or `metadata.namespace`).

Secrets stay secret: a parameter marked `writeOnly`, a value under a Secret's `data` or
`stringData`, and a sensitive parameter's text inside any other rendered string are shown as
their short hash (`sha256:1a2b3c4d…`); the comparison itself is made on the values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from conveyor.bundles.render import (
    KubeObject,
    describe_object,
    render,
    resolve_for,
)
from conveyor.bundles.source import Source
from conveyor.errors import ConveyorError
from conveyor.kit.absent import ABSENT, Absent
from conveyor.kit.field_paths import FieldPath, field_path
from conveyor.kit.redaction import short_hash
from conveyor.kit.strict_yaml import JsonValue

Side = JsonValue | Absent


@dataclass(frozen=True)
class ParameterDifference:
    name: str
    a: Side
    b: Side


@dataclass(frozen=True)
class FieldDifference:
    """A rendered field that differs: in which object ('Kind namespace/name'), at which path."""

    object: str
    path: str
    a: Side
    b: Side


@dataclass(frozen=True)
class Comparison:
    parameters: tuple[ParameterDifference, ...]
    fields: tuple[FieldDifference, ...]


def compare(
    source: Source,
    parameters_a: Mapping[str, object],
    parameters_b: Mapping[str, object],
    *,
    labels: tuple[str, str] = ("A", "B"),
    namespaces: tuple[str | None, str | None] = (None, None),
) -> Comparison:
    """The parameter and field differences between rendering `source` with A and with B.

    `labels` name the two sides (e.g. the targets) in the error raised when one side's
    parameters do not fit the bundle; `namespaces` are where each side's Helm chart is rendered
    for.
    """
    values_a, objects_a = _resolve_and_render(source, parameters_a, labels[0], namespaces[0])
    values_b, objects_b = _resolve_and_render(source, parameters_b, labels[1], namespaces[1])
    sensitive = source.spec.parameters.sensitive_names
    secrets = [
        value
        for values in (values_a, values_b)
        for name, value in values.items()
        if name in sensitive and isinstance(value, str) and value
    ]
    parameter_differences = tuple(
        ParameterDifference(
            name,
            *(_hidden(side) if name in sensitive else side for side in (value_a, value_b)),
        )
        for name in source.spec.parameters.names
        for value_a, value_b in [(values_a.get(name, ABSENT), values_b.get(name, ABSENT))]
        if not _same(value_a, value_b)
    )
    field_differences = tuple(
        FieldDifference(
            _pair_label(object_a, object_b),
            field_path(path),
            *(
                _hidden(side) if _in_secret_data(object_a, path) else _masked(side, secrets)
                for side in (a, b)
            ),
        )
        for object_a, object_b in zip(objects_a, objects_b, strict=True)
        for path, a, b in _differences(object_a, object_b, ())
    )
    return Comparison(parameters=parameter_differences, fields=field_differences)


def _hidden(value: Side) -> Side:
    return value if value is ABSENT else short_hash(value)


def _in_secret_data(obj: KubeObject, path: FieldPath) -> bool:
    is_secret = obj.get("apiVersion") == "v1" and obj.get("kind") == "Secret"
    return is_secret and bool(path) and path[0] in ("data", "stringData")


def _masked(value: Side, secrets: list[str]) -> Side:
    """A rendered string with the text of every sensitive parameter replaced by its hash."""
    if not isinstance(value, str):
        return value
    for secret in secrets:
        value = value.replace(secret, short_hash(secret))
    return value


def _resolve_and_render(
    source: Source, parameters: Mapping[str, object], label: str, namespace: str | None
) -> tuple[dict[str, JsonValue], list[KubeObject]]:
    try:
        values = resolve_for(source, parameters, source.label)
        return values, render(source, values, namespace=namespace)
    except ConveyorError as error:
        raise type(error)(f"{label}: {error.message}", hint=error.hint) from None


def _pair_label(object_a: KubeObject, object_b: KubeObject) -> str:
    label_a, label_b = describe_object(object_a), describe_object(object_b)
    return label_a if label_a == label_b else f"{label_a} / {label_b}"


def _same(a: Side, b: Side) -> bool:
    return type(a) is type(b) and a == b


def _differences(a: Side, b: Side, path: FieldPath) -> Iterator[tuple[FieldPath, Side, Side]]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(a) + [key for key in b if key not in a]
        for key in keys:
            yield from _differences(a.get(key, ABSENT), b.get(key, ABSENT), (*path, key))
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            item_a = a[index] if index < len(a) else ABSENT
            item_b = b[index] if index < len(b) else ABSENT
            yield from _differences(item_a, item_b, (*path, index))
    elif not _same(a, b):
        yield path, a, b
