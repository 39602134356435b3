"""Strict substitution of parameters into parsed manifests."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.bundles.render import (
    Placeholder,
    parse_template,
    render,
    render_tests,
    rendered_hash,
    resolve_parameters,
)
from conveyor.bundles.source import Source, load_source, source_from_files
from conveyor.errors import RenderError, SourceError
from conveyor.kit.field_paths import field_path
from conveyor.kit.strict_yaml import load_documents

PARAMETERS: dict[str, Any] = {
    "replicas": {"type": "integer", "minimum": 1, "maximum": 9, "default": 1},
    "image": {"type": "string", "minLength": 3, "maxLength": 20, "pattern": "^[a-z/]+$"},
    "tag": {"type": "string", "default": "v1"},
    "debug": {"type": "boolean", "default": False},
    "cpu": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 8, "default": 0.5},
    "hosts": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    "tier": {"type": "string", "enum": ["free", "paid"], "default": "free"},
    "note": {"type": "string"},
}
SourceBuilder = Callable[..., Source]
BUNDLE = b"apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: web\n"
OBJECT = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: apps\n"


def render_field(build_source: SourceBuilder, field: str, **parameters: Any) -> Any:
    """Render a ConfigMap whose `data` is the YAML snippet `field`; return its data."""
    source = build_source({"cm.yaml": f"{OBJECT}data:\n  {field}\n"}, PARAMETERS)
    return render(source, parameters)[0]["data"]


# --- substitution rules ---------------------------------------------------------------------

SUBSTITUTIONS = [
    ("whole-integer-keeps-type", "v: ${replicas}", {"replicas": 3}, {"v": 3}),
    ("whole-boolean-keeps-type", "v: ${debug}", {"debug": True}, {"v": True}),
    ("whole-number-keeps-type", "v: ${cpu}", {"cpu": 1.25}, {"v": 1.25}),
    ("whole-array-keeps-type", "v: ${hosts}", {"hosts": ["a", "b"]}, {"v": ["a", "b"]}),
    ("whole-string", "v: ${tag}", {"tag": "3"}, {"v": "3"}),
    ("embedded-string", "v: repo/web:${tag}", {"tag": "v2"}, {"v": "repo/web:v2"}),
    ("two-placeholders", "v: ${tag}-${tier}", {"tag": "v2"}, {"v": "v2-free"}),
    ("embedded-integer-is-text", "v: r${replicas}", {"replicas": 3}, {"v": "r3"}),
    ("embedded-boolean-is-yaml-text", "v: x-${debug}", {"debug": True}, {"v": "x-true"}),
    ("embedded-number-is-text", "v: c${cpu}", {"cpu": 0.25}, {"v": "c0.25"}),
    ("double-quoted-whole-is-text", 'v: "${replicas}"', {"replicas": 3}, {"v": "3"}),
    ("single-quoted-whole-is-text", "v: '${debug}'", {}, {"v": "false"}),
    ("block-scalar-is-text", "v: |\n    n=${replicas}\n", {"replicas": 2}, {"v": "n=2\n"}),
    ("default-applied", "v: ${tier}", {}, {"v": "free"}),
    ("escape-gives-literal", "v: $${HOME}", {}, {"v": "${HOME}"}),
    ("escape-inside-text", "v: a $${x} b ${tag}", {}, {"v": "a ${x} b v1"}),
    ("lone-dollars-unchanged", "v: $a $$b $ {c} $}", {}, {"v": "$a $$b $ {c} $}"}),
    ("key-is-text", "k-${replicas}: ${replicas}", {"replicas": 2}, {"k-2": 2}),
    ("list-items", "v:\n    - a\n    - '${tag}'\n    - ${replicas}", {}, {"v": ["a", "v1", 1]}),
    (
        "non-strings-untouched",
        "v: {n: 1, b: true, z: null}",
        {},
        {"v": {"n": 1, "b": True, "z": None}},
    ),
    ("date-stays-a-string", "v: 2024-01-01", {}, {"v": "2024-01-01"}),
]


@pytest.mark.parametrize(
    ("field", "parameters", "expected"),
    [case[1:] for case in SUBSTITUTIONS],
    ids=[case[0] for case in SUBSTITUTIONS],
)
def test_substitution(
    build_source: SourceBuilder, field: str, parameters: dict[str, Any], expected: Any
) -> None:
    data = render_field(build_source, field, image="web", **parameters)

    assert data == expected
    assert json.dumps(data, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_rendered_strings_are_plain_str(build_source: SourceBuilder) -> None:
    data = render_field(build_source, "{'q': 'quoted', 'k${tag}': 'x-${tag}'}", image="web")

    assert data == {"q": "quoted", "kv1": "x-v1"}
    assert all(type(text) is str for pair in data.items() for text in pair)


def test_sample_source_renders_every_kind_of_value(sample_folder: Path) -> None:
    source = load_source(sample_folder)

    objects = render(source, {"image": "ghcr.io/acme/web", "replicas": 3, "debug": True})

    assert [(obj["kind"], obj["metadata"]["name"]) for obj in objects] == [
        ("Deployment", "web"),
        ("Service", "web"),
        ("Ingress", "web"),
    ]
    deployment = objects[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"]["tier"] == "free"
    assert container["image"] == "ghcr.io/acme/web:latest"
    assert container["args"] == ["--cpu", "0.5"]
    assert container["env"] == [
        {"name": "PORT", "value": "8080"},
        {"name": "DEBUG", "value": "true"},
        {"name": "SHELL_HOME", "value": "${HOME}"},
    ]
    assert objects[1]["spec"]["ports"] == [{"port": 8080}]
    assert objects[2]["spec"]["tls"] == [{"hosts": ["web.example.com"]}]


def test_tests_are_rendered_apart_from_the_app(sample_folder: Path) -> None:
    source = load_source(sample_folder)

    jobs = render_tests(source, {"image": "ghcr.io/acme/web", "port": 9090})

    assert [job["kind"] for job in jobs] == ["Job"]
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--fail",
        "http://web:9090/healthz",
    ]
    assert "Job" not in [obj["kind"] for obj in render(source, {"image": "x"})]


def test_objects_come_in_file_then_document_order_skipping_empty_documents(
    build_source: SourceBuilder,
) -> None:
    def config_map(name: str) -> str:
        return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"

    source = build_source(
        {
            "b.yaml": config_map("b1") + "---\n---\n" + config_map("b2"),
            "a.yaml": "---\n" + config_map("a1"),
            "c.yml": "",
        }
    )

    assert [obj["metadata"]["name"] for obj in render(source, {})] == ["a1", "b1", "b2"]


def test_render_is_pure_and_deterministic(build_source: SourceBuilder) -> None:
    source = build_source(
        {"cm.yaml": f"{OBJECT}data:\n  a: ${{hosts}}\n  b: ${{hosts}}\n"}, PARAMETERS
    )
    parameters = {"image": "web", "hosts": ["x"]}
    before = copy.deepcopy(parameters)

    first = render(source, parameters)
    first[0]["data"]["a"].append("mutated")

    assert parameters == before
    assert first[0]["data"]["b"] == ["x"], "each use of a parameter gets its own copy"
    assert render(source, parameters) == render(source, parameters)
    assert render(source, parameters)[0]["data"]["a"] == ["x"]


# --- errors ---------------------------------------------------------------------------------

DEPLOYMENT_WITH = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: first}}\n---\n"
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\n"
    "spec:\n  template:\n    spec:\n      containers:\n        - name: web\n"
    "          image: {image}\n"
)
WHERE = "web/manifests/app.yaml: document 2 (Deployment apps/web): "
FIELD = "spec.template.spec.containers[0].image: "

PLACEHOLDER_ERRORS = [
    (
        "undeclared",
        "repo:${version}",
        SourceError,
        WHERE + FIELD + "${version} is not a declared parameter",
    ),
    (
        "flux-default-form",
        "${tag:=latest}",
        SourceError,
        WHERE + FIELD + "'${tag:=latest}' is not a supported placeholder",
    ),
    (
        "unterminated",
        "repo:${tag",
        SourceError,
        WHERE + FIELD + "the placeholder '${tag' has no closing '}'",
    ),
    ("empty-name", "repo:${}", SourceError, "'${}' is not a supported placeholder"),
    ("name-with-dash", "${my-tag}", SourceError, "'${my-tag}' is not a supported placeholder"),
    (
        "list-in-text",
        "repo:${hosts}",
        SourceError,
        WHERE + FIELD + "the list parameter 'hosts' can only be a whole, unquoted value",
    ),
    ("list-quoted", '"${hosts}"', SourceError, "the list parameter 'hosts'"),
    (
        "no-value-no-default",
        "repo:${note}",
        RenderError,
        WHERE + FIELD + "parameter 'note' has no value and no default",
    ),
]


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [case[1:] for case in PLACEHOLDER_ERRORS],
    ids=[case[0] for case in PLACEHOLDER_ERRORS],
)
def test_bad_placeholders_name_file_document_object_and_field(
    build_source: SourceBuilder, image: str, error: type[Exception], message: str
) -> None:
    source = build_source({"app.yaml": DEPLOYMENT_WITH.format(image=image)}, PARAMETERS)

    with pytest.raises(error) as raised:
        render(source, {"image": "web", "hosts": ["h"]})

    assert message in str(raised.value)


PARAMETER_ERRORS = [
    (
        "unknown-name",
        {"replica": 2},
        "web: unknown parameter(s) 'replica'; the bundle declares: replicas",
    ),
    ("string-for-integer", {"replicas": "3"}, "parameter 'replicas': must be an integer, got '3'"),
    ("float-for-integer", {"replicas": 3.0}, "parameter 'replicas': must be an integer, got 3.0"),
    ("bool-for-integer", {"replicas": True}, "parameter 'replicas': must be an integer, got true"),
    ("below-minimum", {"replicas": 0}, "parameter 'replicas': must be at least 1, got 0"),
    ("above-maximum", {"replicas": 10}, "parameter 'replicas': must be at most 9, got 10"),
    ("exclusive-minimum", {"cpu": 0}, "parameter 'cpu': must be greater than 0, got 0"),
    ("exclusive-maximum", {"cpu": 8.0}, "parameter 'cpu': must be less than 8, got 8.0"),
    ("number-not-finite", {"cpu": math.inf}, "parameter 'cpu': must be a number, got Infinity"),
    ("int-for-boolean", {"debug": 1}, "parameter 'debug': must be a boolean, got 1"),
    ("too-short", {"image": "ab"}, "parameter 'image': must be at least 3 characters long"),
    ("too-long", {"image": "a" * 21}, "parameter 'image': must be at most 20 characters long"),
    ("pattern", {"image": "Web!"}, "parameter 'image': must match the pattern '^[a-z/]+$'"),
    ("enum", {"tier": "gold"}, "parameter 'tier': must be one of [\"free\", \"paid\"], got 'gold'"),
    ("string-for-array", {"hosts": "a,b"}, "parameter 'hosts': must be an array, got 'a,b'"),
    ("too-few-items", {"hosts": []}, "parameter 'hosts': must have at least 1 items, got 0"),
    ("too-many-items", {"hosts": ["a"] * 4}, "parameter 'hosts': must have at most 3 items, got 4"),
    ("bad-item", {"hosts": ["a", 2]}, "parameter 'hosts': item 1: must be a string, got 2"),
]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [case[1:] for case in PARAMETER_ERRORS],
    ids=[case[0] for case in PARAMETER_ERRORS],
)
def test_parameter_errors_are_render_errors(
    build_source: SourceBuilder, parameters: dict[str, Any], message: str
) -> None:
    source = build_source({"app.yaml": OBJECT}, PARAMETERS, required=("image",))

    with pytest.raises(RenderError) as raised:
        render(source, {"image": "web", **parameters})

    assert message in str(raised.value)


def test_a_required_parameter_must_be_given(build_source: SourceBuilder) -> None:
    source = build_source({"app.yaml": OBJECT}, PARAMETERS, required=("image",))

    with pytest.raises(RenderError, match="web: parameter 'image' is required and has no value"):
        render(source, {})


DOCUMENT_ERRORS = [
    ("invalid-yaml", "a: [1\n", "web/manifests/app.yaml:2: invalid YAML"),
    (
        "duplicate-key",
        OBJECT + "data: {}\ndata: {}\n",
        "web/manifests/app.yaml:7: invalid YAML: found the key 'data' twice",
    ),
    (
        "not-a-mapping",
        OBJECT + "---\n- a\n",
        "web/manifests/app.yaml: document 2: must be a Kubernetes object",
    ),
    (
        "keys-collide",
        OBJECT + "data:\n  k1: a\n  k${replicas}: b\n",
        "document 1 (ConfigMap apps/web): data[\"k${replicas}\"]: the key renders as 'k1'",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [case[1:] for case in DOCUMENT_ERRORS],
    ids=[case[0] for case in DOCUMENT_ERRORS],
)
def test_bad_documents_are_source_errors(
    build_source: SourceBuilder, manifest: str, message: str
) -> None:
    source = build_source({"app.yaml": manifest}, PARAMETERS)

    with pytest.raises(SourceError) as raised:
        render(source, {"image": "web"})

    assert message in str(raised.value)


def test_a_manifest_that_is_not_utf8_is_a_source_error() -> None:
    source = source_from_files({"bundle.yaml": BUNDLE, "manifests/app.yaml": b"a: \xff"}, "web")

    with pytest.raises(SourceError, match=r"web/manifests/app\.yaml: not UTF-8 text"):
        render(source, {})


def test_resolve_parameters_fills_defaults(sample_folder: Path) -> None:
    spec = load_source(sample_folder).spec

    values = resolve_parameters(spec.parameters, {"image": "x", "replicas": 2}, "web")

    assert values == {
        "image": "x",
        "tag": "latest",
        "replicas": 2,
        "port": 8080,
        "debug": False,
        "cpu": 0.5,
        "hosts": ["web.example.com"],
        "tier": "free",
    }


# --- helpers --------------------------------------------------------------------------------

FIELD_PATHS = [
    ("root", (), "(the document)"),
    ("dotted", ("spec", "replicas"), "spec.replicas"),
    ("list-index", ("spec", "containers", 0, "image"), "spec.containers[0].image"),
    (
        "key-with-dots",
        ("metadata", "labels", "app.kubernetes.io/name"),
        'metadata.labels["app.kubernetes.io/name"]',
    ),
    ("key-first", ("a b",), '["a b"]'),
]


@pytest.mark.parametrize(
    ("path", "text"), [case[1:] for case in FIELD_PATHS], ids=[case[0] for case in FIELD_PATHS]
)
def test_field_path(path: tuple[str | int, ...], text: str) -> None:
    assert field_path(path) == text


def test_parse_template_splits_literals_and_placeholders() -> None:
    assert parse_template("a${x}b$${y}${z}") == [
        "a",
        Placeholder("x"),
        "b",
        "${",
        "y}",
        Placeholder("z"),
    ]


# --- the rendered hash ----------------------------------------------------------------------


def test_rendered_hash_ignores_key_order_but_not_values_types_or_object_order() -> None:
    one = {"kind": "A", "spec": {"a": 1, "b": [1, 2]}}
    same = {"spec": {"b": [1, 2], "a": 1}, "kind": "A"}
    other = {"kind": "B"}

    assert rendered_hash([one]) == rendered_hash([same])
    assert rendered_hash([one]).startswith("sha256:")
    assert rendered_hash([one]) != rendered_hash([{"kind": "A", "spec": {"a": 2, "b": [1, 2]}}])
    assert rendered_hash([one]) != rendered_hash([{"kind": "A", "spec": {"a": "1", "b": [1, 2]}}])
    assert rendered_hash([one]) != rendered_hash([{"kind": "A", "spec": {"a": 1, "b": [2, 1]}}])
    assert rendered_hash([one, other]) != rendered_hash([other, one])


# --- properties -----------------------------------------------------------------------------

VALUES_BY_TYPE = {
    "string": st.text(),
    "integer": st.integers(min_value=-(2**63), max_value=2**63),
    "number": st.floats(allow_nan=False, allow_infinity=False),
    "boolean": st.booleans(),
    "array": st.lists(st.text(max_size=10), max_size=5),
}


@pytest.mark.parametrize("value_type", list(VALUES_BY_TYPE))
def test_whole_placeholder_round_trips_every_value_of_its_type(
    build_source: SourceBuilder, value_type: str
) -> None:
    schema: dict[str, Any] = {"type": value_type}
    if value_type == "array":
        schema["items"] = {"type": "string"}
    source = build_source({"cm.yaml": f"{OBJECT}data:\n  v: ${{p}}\n"}, {"p": schema})

    @settings(max_examples=60, deadline=None)
    @given(VALUES_BY_TYPE[value_type])
    def round_trip(value: Any) -> None:
        rendered = render(source, {"p": value})[0]["data"]["v"]
        assert rendered == value
        assert type(rendered) is type(value)

    round_trip()


TEXT_WITHOUT_PLACEHOLDER = st.text().filter(lambda text: "${" not in text)


@settings(max_examples=200, deadline=None)
@given(TEXT_WITHOUT_PLACEHOLDER)
def test_text_without_a_placeholder_is_unchanged(text: str) -> None:
    assert "".join(str(part) for part in parse_template(text)) == text
    assert all(isinstance(part, str) for part in parse_template(text))


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT_WITHOUT_PLACEHOLDER, max_size=4))
def test_documents_without_placeholders_render_as_they_parse(texts: list[str]) -> None:
    document = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    document["data"] = {f"k{index}": text for index, text in enumerate(texts)}
    manifest = yaml.safe_dump(document, allow_unicode=True)
    source = source_from_files(
        {"bundle.yaml": BUNDLE, "manifests/cm.yaml": manifest.encode()}, "web"
    )

    # Compared with the plain parse, not with `document`: PyYAML's own dump/load round trip is
    # not exact for every character (U+0085 comes back as a space).
    assert render(source, {}) == load_documents(manifest, "cm.yaml")


@settings(max_examples=100, deadline=None)
@given(st.text().filter(lambda text: "$" not in text and "}" not in text))
def test_escaped_placeholders_render_as_literal_text(name: str) -> None:
    assert "".join(str(part) for part in parse_template(f"$${{{name}}}")) == f"${{{name}}}"


TEST_JOB = (
    "apiVersion: batch/v1\nkind: Job\nmetadata: {name: smoke}\n"
    "spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: x}]}}}\n"
)


@pytest.mark.parametrize(
    ("manifest", "refused"),
    [
        (TEST_JOB, None),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
            "metadata: {name: pwn}\nroleRef: {apiGroup: rbac.authorization.k8s.io, "
            "kind: ClusterRole, name: cluster-admin}\n",
            "ClusterRoleBinding pwn",
        ),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: smoke}\n", "Pod smoke"),
        (TEST_JOB.replace("batch/v1", "batch/v2"), "Job smoke"),
    ],
    ids=["job", "cluster-role-binding", "pod", "job-of-another-api"],
)
def test_a_test_manifest_must_be_a_job_naming_the_file(
    build_source: SourceBuilder, manifest: str, refused: str | None
) -> None:
    source = build_source(
        {"app.yaml": OBJECT, "tests/smoke.yaml": manifest}, tests=("manifests/tests/smoke.yaml",)
    )

    if refused is None:
        assert [job["kind"] for job in render_tests(source, {})] == ["Job"]
        return
    with pytest.raises(SourceError) as caught:
        render_tests(source, {})
    assert "manifests/tests/smoke.yaml" in str(caught.value)
    assert f"{refused}: a test manifest must be a batch/v1 Job" in str(caught.value)
    assert caught.value.exit_code == 2
