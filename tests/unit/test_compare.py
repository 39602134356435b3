"""Differences between two renders of one bundle: parameters and rendered fields only."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conveyor.bundles.compare import FieldDifference, ParameterDifference, compare
from conveyor.bundles.source import Source, load_source
from conveyor.errors import RenderError
from conveyor.kit.absent import ABSENT

SourceBuilder = Callable[..., Source]
PARAMETERS: dict[str, Any] = {
    "region": {"type": "string", "default": "eu"},
    "replicas": {"type": "integer", "default": 1},
    "hosts": {"type": "array", "items": {"type": "string"}, "default": ["a"]},
    "note": {"type": "string"},
}
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-${region}
  namespace: apps
  labels:
    app.kubernetes.io/name: web
spec:
  replicas: ${replicas}
  template:
    spec:
      containers:
        - name: web
          env:
            - name: REGION
              value: ${region}
          hosts: ${hosts}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    region: ${region}
"""


@pytest.fixture
def source(build_source: SourceBuilder) -> Source:
    return build_source({"app.yaml": MANIFEST}, PARAMETERS)


def test_same_parameters_have_no_differences(source: Source) -> None:
    comparison = compare(source, {"replicas": 2}, {"replicas": 2})

    assert comparison.parameters == ()
    assert comparison.fields == ()


def test_a_default_and_the_same_explicit_value_do_not_differ(source: Source) -> None:
    comparison = compare(source, {}, {"region": "eu", "replicas": 1})

    assert comparison.parameters == ()
    assert comparison.fields == ()


CASES = [
    (
        "integer-field",
        {"replicas": 3},
        [ParameterDifference("replicas", 1, 3)],
        [FieldDifference("Deployment apps/web-eu", "spec.replicas", 1, 3)],
    ),
    (
        "renamed-object-and-nested-list-field",
        {"region": "us"},
        [ParameterDifference("region", "eu", "us")],
        [
            FieldDifference(
                "Deployment apps/web-eu / Deployment apps/web-us",
                "metadata.name",
                "web-eu",
                "web-us",
            ),
            FieldDifference(
                "Deployment apps/web-eu / Deployment apps/web-us",
                "spec.template.spec.containers[0].env[0].value",
                "eu",
                "us",
            ),
            FieldDifference("Service web", "spec.selector.region", "eu", "us"),
        ],
    ),
    (
        "longer-list",
        {"hosts": ["a", "b"]},
        [ParameterDifference("hosts", ["a"], ["a", "b"])],
        [
            FieldDifference(
                "Deployment apps/web-eu",
                "spec.template.spec.containers[0].hosts[1]",
                ABSENT,
                "b",
            )
        ],
    ),
    (
        "optional-parameter-given-on-one-side",
        {"note": "hi"},
        [ParameterDifference("note", ABSENT, "hi")],
        [],
    ),
]


@pytest.mark.parametrize(
    ("parameters_b", "parameters", "fields"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_differences(
    source: Source,
    parameters_b: dict[str, Any],
    parameters: list[ParameterDifference],
    fields: list[FieldDifference],
) -> None:
    comparison = compare(source, {}, parameters_b)

    assert list(comparison.parameters) == parameters
    assert list(comparison.fields) == fields


def test_differences_are_symmetric(source: Source) -> None:
    forward = compare(source, {}, {"replicas": 3, "hosts": []})
    backward = compare(source, {"replicas": 3, "hosts": []}, {})

    assert [(d.name, d.b, d.a) for d in backward.parameters] == [
        (d.name, d.a, d.b) for d in forward.parameters
    ]
    assert [(d.path, d.b, d.a) for d in backward.fields] == [
        (d.path, d.a, d.b) for d in forward.fields
    ]
    assert [d.path for d in forward.fields] == [
        "spec.replicas",
        "spec.template.spec.containers[0].hosts[0]",
    ]


def test_a_change_of_type_is_a_difference(build_source: SourceBuilder) -> None:
    source = build_source(
        {"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  v: ${v}\n"},
        {"v": {"type": "number", "default": 1}},
    )

    comparison = compare(source, {}, {"v": 1.0})

    assert comparison.parameters == (ParameterDifference("v", 1, 1.0),)
    assert comparison.fields == (FieldDifference("ConfigMap x", "data.v", 1, 1.0),)


def test_the_sample_source_differs_only_where_parameters_reach(sample_folder: Path) -> None:
    source = load_source(sample_folder)

    comparison = compare(
        source, {"image": "acme/web", "tag": "1.0"}, {"image": "acme/web", "tag": "1.1"}
    )

    assert comparison.parameters == (ParameterDifference("tag", "1.0", "1.1"),)
    assert comparison.fields == (
        FieldDifference(
            "Deployment web",
            "spec.template.spec.containers[0].image",
            "acme/web:1.0",
            "acme/web:1.1",
        ),
    )


def test_bad_parameters_on_one_side_name_that_side(source: Source) -> None:
    with pytest.raises(RenderError) as raised:
        compare(source, {}, {"replicas": "3"}, labels=("prod-eu", "prod-us"))

    assert str(raised.value).startswith(
        "prod-us: web: parameter 'replicas': must be an integer, got '3'"
    )


def test_absent_reads_as_absent() -> None:
    assert repr(ABSENT) == "(absent)"
