"""Lint rules, each finding with its file, line and rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.bundles.lint import Finding, lint, lint_or_raise
from conveyor.bundles.source import Source, load_source, source_from_files
from conveyor.errors import SourceError

SourceBuilder = Callable[..., Source]
ENVIRONMENTS = ("dev", "test", "staging", "prod")
PARAMETERS = {"tag": {"type": "string", "default": "v1"}}
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n"


def findings_for(
    build_source: SourceBuilder, manifests: dict[str, str], **bundle_options: object
) -> list[tuple[str, int, str]]:
    source = build_source(manifests, PARAMETERS, **bundle_options)
    return [(finding.file, finding.line, finding.rule) for finding in lint(source, ENVIRONMENTS)]


def test_the_sample_source_is_clean(sample_folder: Path) -> None:
    assert lint(load_source(sample_folder), ENVIRONMENTS) == []


CLEAN = [
    ("config-map", CONFIG_MAP + "data:\n  a: b\n"),
    ("empty-documents", "---\n---\n" + CONFIG_MAP + "---\n"),
    ("empty-file", ""),
    ("comment-only", "# nothing yet\n"),
    ("declared-placeholder", CONFIG_MAP + "data:\n  image: repo:${tag}\n"),
    ("escaped-placeholder", CONFIG_MAP + "data:\n  home: $${HOME}\n"),
    ("environment-word-inside-a-word", CONFIG_MAP + "data:\n  a: testing, products, devices\n"),
    ("environment-name-only-in-a-placeholder", CONFIG_MAP + "data:\n  a: ${tag}\n"),
    ("placeholder-splits-words", CONFIG_MAP + "data:\n  a: pro${tag}d\n"),
    (
        "same-name-other-namespace",
        CONFIG_MAP + "  namespace: a\n---\n" + CONFIG_MAP + "  namespace: b\n",
    ),
    (
        "same-name-other-group",
        "apiVersion: apps/v1\nkind: Thing\nmetadata: {name: x}\n---\n"
        "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: x}\n",
    ),
    ("same-name-other-kind", CONFIG_MAP + "---\n" + CONFIG_MAP.replace("ConfigMap", "Secret")),
    (
        "secret-without-data",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {}\n",
    ),
    (
        "secret-like-custom-resource",
        "apiVersion: bitnami.com/v1alpha1\nkind: Secret\nmetadata: {name: s}\ndata: {a: b}\n",
    ),
]


@pytest.mark.parametrize("manifest", [c[1] for c in CLEAN], ids=[c[0] for c in CLEAN])
def test_clean_manifests_have_no_findings(build_source: SourceBuilder, manifest: str) -> None:
    assert findings_for(build_source, {"app.yaml": manifest}) == []


SECRET = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
RULES = [
    (
        "invalid-yaml",
        "a: [1, 2\nb: 3\n",
        2,
        "yaml",
        "invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence)",
    ),
    ("tab-indent", "a:\n\tb: 1\n", 2, "yaml", "invalid YAML"),
    ("duplicate-key", CONFIG_MAP + "data: {}\ndata: {}\n", 6, "yaml", "found the key 'data' twice"),
    ("alias", CONFIG_MAP + "data:\n  a: &x 1\n  b: *x\n", 7, "yaml", "aliases are not allowed"),
    ("error-after-good-document", CONFIG_MAP + "---\n: :\n  - [\n", 6, "yaml", "invalid YAML"),
    ("not-a-mapping", "- a\n- b\n", 1, "identity", "document 1 is not a Kubernetes object"),
    (
        "no-api-version",
        "kind: ConfigMap\nmetadata: {name: web}\n",
        1,
        "identity",
        "document 1 (ConfigMap web) has no apiVersion;",
    ),
    ("no-kind", "apiVersion: v1\nmetadata: {name: web}\n", 1, "identity", "has no kind;"),
    (
        "no-name",
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: web-}\n",
        2,
        "identity",
        "document 1 (ConfigMap (no name)) has no metadata.name;",
    ),
    (
        "nothing",
        "data: {}\n",
        1,
        "identity",
        "has no apiVersion, kind, metadata.name; every object needs",
    ),
    (
        "empty-name",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ''}\n",
        1,
        "identity",
        "has no metadata.name",
    ),
    (
        "duplicate-object",
        CONFIG_MAP + "---\n" + CONFIG_MAP,
        6,
        "duplicate-object",
        "ConfigMap web is defined twice (first at manifests/app.yaml:1)",
    ),
    (
        "duplicate-across-versions",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\n---\n"
        "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: web, namespace: a}\n",
        5,
        "duplicate-object",
        "Deployment a/web is defined twice",
    ),
    (
        "secret-data",
        SECRET + "data:\n  password: aHVudGVyMg==\n",
        5,
        "plaintext-secret",
        "Secret db has plaintext data; a bundle is copied",
    ),
    (
        "secret-string-data",
        SECRET + "type: Opaque\nstringData:\n  password: hunter2\n",
        6,
        "plaintext-secret",
        "Secret db has plaintext stringData",
    ),
    (
        "environment-in-value",
        CONFIG_MAP + "data:\n  url: https://api.staging.example.com\n",
        6,
        "environment-name",
        "data.url: 'https://api.staging.example.com' hard-codes the environment name 'staging'",
    ),
    (
        "environment-in-name",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-prod\n",
        4,
        "environment-name",
        "metadata.name: 'web-prod' hard-codes the environment name 'prod'",
    ),
    (
        "environment-in-key",
        CONFIG_MAP + "data:\n  STAGING_URL: x\n",
        6,
        "environment-name",
        "data.STAGING_URL: 'STAGING_URL' hard-codes the environment name 'staging'",
    ),
    (
        "environment-in-list",
        CONFIG_MAP + "data:\n  hosts:\n    - a\n    - dev.example.com\n",
        8,
        "environment-name",
        "data.hosts[1]: 'dev.example.com' hard-codes the environment name 'dev'",
    ),
    (
        "environment-next-to-placeholder",
        CONFIG_MAP + "data:\n  a: ${tag}-test\n",
        6,
        "environment-name",
        "'${tag}-test' hard-codes the environment name 'test'",
    ),
    (
        "undeclared-placeholder",
        CONFIG_MAP + "data:\n  image: repo:${version}\n",
        6,
        "placeholder",
        "data.image: ${version} is not a declared parameter",
    ),
    (
        "undeclared-placeholder-in-key",
        CONFIG_MAP + "data:\n  ${region}: x\n",
        6,
        "placeholder",
        "${region} is not a declared parameter",
    ),
    (
        "malformed-placeholder",
        CONFIG_MAP + "data:\n  image: ${tag:-v1}\n",
        6,
        "placeholder",
        "data.image: '${tag:-v1}' is not a supported placeholder",
    ),
    (
        "unterminated-placeholder",
        CONFIG_MAP + "data:\n  image: '${tag'\n",
        6,
        "placeholder",
        "has no closing '}'",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "line", "rule", "message"),
    [case[1:] for case in RULES],
    ids=[case[0] for case in RULES],
)
def test_each_rule_reports_file_line_and_message(
    build_source: SourceBuilder, manifest: str, line: int, rule: str, message: str
) -> None:
    source = build_source({"app.yaml": manifest}, PARAMETERS)

    findings = lint(source, ENVIRONMENTS)

    assert len(findings) == 1, findings
    assert (findings[0].file, findings[0].line, findings[0].rule) == (
        "manifests/app.yaml",
        line,
        rule,
    )
    assert message in findings[0].message


def test_plaintext_secrets_are_fine_when_the_bundle_allows_them(
    build_source: SourceBuilder,
) -> None:
    manifests = {"secret.yaml": SECRET + "stringData:\n  password: hunter2\n"}

    assert findings_for(build_source, manifests, allow_plaintext_secrets=True) == []
    assert findings_for(build_source, manifests) == [
        ("manifests/secret.yaml", 5, "plaintext-secret")
    ]


def test_environment_names_match_whole_words_in_any_case(build_source: SourceBuilder) -> None:
    manifests = {
        "app.yaml": CONFIG_MAP
        + "data:\n  a: Staging\n  b: pre_PROD\n  c: stagingarea\n  d: x.dev\n  e: devops\n"
    }

    assert findings_for(build_source, manifests) == [
        ("manifests/app.yaml", 6, "environment-name"),
        ("manifests/app.yaml", 7, "environment-name"),
        ("manifests/app.yaml", 9, "environment-name"),
    ]


def test_no_environment_names_means_no_environment_findings(build_source: SourceBuilder) -> None:
    source = build_source({"app.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: prod}\n"})

    assert lint(source, []) == []
    assert lint(source, [""]) == []


def test_duplicates_are_found_across_files_and_findings_are_ordered(
    build_source: SourceBuilder,
) -> None:
    findings = findings_for(
        build_source,
        {
            "b.yaml": "kind: X\n---\n" + CONFIG_MAP,
            "a.yaml": CONFIG_MAP + "data: {env: staging}\n",
        },
    )

    assert findings == [
        ("manifests/a.yaml", 5, "environment-name"),
        ("manifests/b.yaml", 1, "identity"),
        ("manifests/b.yaml", 3, "duplicate-object"),
    ]


def test_test_manifests_are_linted_too(build_source: SourceBuilder) -> None:
    manifests = {"app.yaml": CONFIG_MAP, "smoke.yaml": "apiVersion: batch/v1\nkind: Job\n"}

    findings = findings_for(build_source, manifests, tests=("manifests/smoke.yaml",))

    assert findings == [("manifests/smoke.yaml", 1, "identity")]


def test_a_file_that_is_not_utf8_is_a_yaml_finding() -> None:
    bundle = b"apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: web\n"
    source = source_from_files({"bundle.yaml": bundle, "manifests/a.yaml": b"a: \xff\n"}, "web")

    assert lint(source, ENVIRONMENTS) == [
        Finding("manifests/a.yaml", 1, "yaml", "not UTF-8 text (invalid start byte)")
    ]


def test_finding_reads_as_file_line_message_and_rule() -> None:
    finding = Finding("manifests/a.yaml", 3, "identity", "has no kind")

    assert str(finding) == "manifests/a.yaml:3: has no kind [identity]"


def test_lint_or_raise_lists_every_finding(build_source: SourceBuilder) -> None:
    source = build_source({"app.yaml": "kind: X\n---\n" + CONFIG_MAP + "data: {a: prod}\n"})

    with pytest.raises(SourceError) as raised:
        lint_or_raise(source, ENVIRONMENTS)

    message = str(raised.value)
    assert message.startswith("web: 2 lint finding(s):\n")
    assert "  web/manifests/app.yaml:1: document 1 (X (no name)) has no apiVersion" in message
    assert "  web/manifests/app.yaml:7: data.a: 'prod' hard-codes" in message
    assert raised.value.hint is not None


def test_lint_or_raise_passes_a_clean_source(sample_folder: Path) -> None:
    assert lint_or_raise(load_source(sample_folder), ENVIRONMENTS) is None


def test_documents_before_a_yaml_error_are_still_linted(build_source: SourceBuilder) -> None:
    manifests = {"app.yaml": CONFIG_MAP + "data: {a: prod}\n---\nb: [\n"}

    assert findings_for(build_source, manifests) == [
        ("manifests/app.yaml", 5, "environment-name"),
        ("manifests/app.yaml", 8, "yaml"),
    ]
