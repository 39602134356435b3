"""What differs between two targets of one bundle: their parameters and the fields they render.

Why: environments may differ only by declared parameters, and `conveyor diff APP TARGET_A
TARGET_B` shows exactly that difference, nothing else: each parameter whose value differs
(defaults applied) and each rendered field whose value differs.

Objects are paired by position, not by name: both renders come from the same source, so the
i-th object of one is the i-th object of the other even when a parameter changes its name or
namespace (which then shows up as a differing `metadata.name` or `metadata.namespace`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from conveyor.bundles.render import (
    FieldPath,
    KubeObject,
    describe_object,
    field_path,
    render,
    resolve_parameters,
)
from conveyor.bundles.source import Source
from conveyor.errors import ConveyorError
from conveyor.kit.absent import ABSENT, Absent
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
) -> Comparison:
    """The parameter and field differences between rendering `source` with A and with B.

    `labels` name the two sides (e.g. the targets) in the error raised when one side's
    parameters do not fit the bundle.
    """
    values_a, objects_a = _resolve_and_render(source, parameters_a, labels[0])
    values_b, objects_b = _resolve_and_render(source, parameters_b, labels[1])
    parameter_differences = tuple(
        ParameterDifference(name, values_a.get(name, ABSENT), values_b.get(name, ABSENT))
        for name in source.spec.parameters.names
        if not _same(values_a.get(name, ABSENT), values_b.get(name, ABSENT))
    )
    field_differences = tuple(
        FieldDifference(_pair_label(object_a, object_b), field_path(path), a, b)
        for object_a, object_b in zip(objects_a, objects_b, strict=True)
        for path, a, b in _differences(object_a, object_b, ())
    )
    return Comparison(parameters=parameter_differences, fields=field_differences)


def _resolve_and_render(
    source: Source, parameters: Mapping[str, object], label: str
) -> tuple[dict[str, JsonValue], list[KubeObject]]:
    try:
        values = resolve_parameters(source.spec.parameters, parameters, source.label)
        return values, render(source, values)
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
