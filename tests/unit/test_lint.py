"""Lint rules, each finding with its file, line and rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conveyor.bundles.lint import Finding, lint, lint_or_raise
from conveyor.bundles.source import Source, load_source, source_from_files
from conveyor.errors import SourceError

SourceBuilder = Callable[..., Source]
ENVIRONMENTS = ("dev", "test", "staging", "prod", "prod-eu", "prod-us")
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
        + "data:\n  a: Staging\n  b: pre_PROD\n  c: stagingarea\n  d: x.dev.y\n  e: devops\n"
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


# --- environment-name: what people write, not the structure around it ---------------------------

DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ledger\n"
POD_SPEC = DEPLOYMENT + "spec:\n  template:\n    spec:\n"
CONTAINER = POD_SPEC + "      containers:\n        - name: ledger\n"

STRUCTURAL = [
    (
        "api-group-in-apiVersion",
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: a}\n",
    ),
    (
        "annotation-key-prefix",
        DEPLOYMENT + "  annotations:\n    autoscaling.knative.dev/min-scale: '1'\n",
    ),
    ("label-key-prefix", DEPLOYMENT + "  labels:\n    example.dev/tier: web\n"),
    (
        "nested-api-version-and-kind",
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\n"
        "spec:\n  scaleTargetRef: {apiVersion: ops.example.dev/v1, kind: Test, name: a}\n",
    ),
    (
        "rbac-api-groups",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: a}\n"
        "rules:\n  - apiGroups: [serving.knative.dev, ops.example.dev]\n"
        "    resources: [services]\n    verbs: [get]\n",
    ),
    (
        "role-ref-api-group",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: a}\n"
        "roleRef: {apiGroup: ops.example.dev, kind: Role, name: a}\n",
    ),
    (
        "crd-group-and-names",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: devenvs.ops.example.dev}\n"
        "spec:\n  group: ops.example.dev\n"
        "  names: {kind: DevEnv, plural: devenvs, singular: devenv, shortNames: [dev]}\n",
    ),
    (
        "group-of-a-reference",
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: a}\n"
        "spec:\n  issuerRef: {group: issuers.example.dev, kind: Issuer, name: ca}\n",
    ),
    (
        "group-of-a-reference-list",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a}\n"
        "spec:\n  parentRefs:\n    - {group: gw.example.dev, kind: Gateway, name: a}\n",
    ),
    (
        "image-registry-host",
        CONTAINER + "          image: registry.dev.example.com/team/ledger:1.4\n",
    ),
    ("image-registry-host-with-port", CONTAINER + "          image: dev:5000/ledger:1.4\n"),
    (
        "label-keys-as-values",
        POD_SPEC
        + "      tolerations:\n        - {key: pool.example.dev/dedicated, operator: Exists}\n"
        "      affinity:\n        podAntiAffinity:\n"
        "          preferredDuringSchedulingIgnoredDuringExecution:\n"
        "            - weight: 1\n              podAffinityTerm:\n"
        "                topologyKey: zone.example.dev/rack\n"
        "                labelSelector:\n                  matchExpressions:\n"
        "                    - {key: example.dev/tier, operator: Exists}\n",
    ),
    (
        "finalizer",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
        "  finalizers: [ledger.example.dev/cleanup]\n",
    ),
    ("top-level-domain", CONFIG_MAP + "data:\n  url: https://ledger.example.dev:8443/v1\n"),
    ("reserved-test-domain", CONFIG_MAP + "data:\n  hosts: 'ledger.example.test, api.test'\n"),
    (
        "linux-device-paths",
        CONTAINER + "          terminationMessagePath: /dev/termination-log\n"
        "          command: [sh, -c, 'run > /dev/null 2>&1']\n"
        "          volumeMounts: [{name: shm, mountPath: /dev/shm}]\n",
    ),
]


@pytest.mark.parametrize("manifest", [c[1] for c in STRUCTURAL], ids=[c[0] for c in STRUCTURAL])
def test_structural_names_are_not_environment_names(
    build_source: SourceBuilder, manifest: str
) -> None:
    assert findings_for(build_source, {"app.yaml": manifest}) == []


STILL_FOUND = [
    (
        "ingress-host",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: a}\n"
        "spec:\n  rules:\n    - host: api.staging.example.com\n",
        "spec.rules[0].host",
        "'staging'",
    ),
    (
        "env-var-value",
        CONTAINER + "          env:\n            - {name: DEPLOY_ENV, value: prod}\n",
        "spec.template.spec.containers[0].env[0].value",
        "'prod'",
    ),
    ("namespace", DEPLOYMENT + "  namespace: prod\n", "metadata.namespace", "'prod'"),
    (
        "name-of-a-key",
        DEPLOYMENT + "  labels:\n    example.dev/staging: 'true'\n",
        'metadata.labels["example.dev/staging"]',
        "'staging'",
    ),
    (
        "label-value",
        DEPLOYMENT + "  labels:\n    example.dev/tier: prod\n",
        'metadata.labels["example.dev/tier"]',
        "'prod'",
    ),
    (
        "prefix-without-a-dot",
        DEPLOYMENT + "  labels:\n    staging/enabled: 'true'\n",
        'metadata.labels["staging/enabled"]',
        "'staging'",
    ),
    (
        "node-selector-key-name",
        POD_SPEC + "      nodeSelector:\n        pool.example.com/prod: 'true'\n",
        'spec.template.spec.nodeSelector["pool.example.com/prod"]',
        "'prod'",
    ),
    (
        "image-tag",
        CONTAINER + "          image: registry.example.com/ledger:staging\n",
        "spec.template.spec.containers[0].image",
        "'staging'",
    ),
    (
        "image-repository",
        CONTAINER + "          image: team/ledger-dev:1\n",
        "spec.template.spec.containers[0].image",
        "'dev'",
    ),
    (
        "webhook-service-namespace",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n"
        "metadata: {name: a}\nwebhooks:\n  - name: a.example.com\n"
        "    clientConfig:\n      service: {namespace: prod, name: hook}\n",
        "webhooks[0].clientConfig.service.namespace",
        "'prod'",
    ),
    (
        "name-of-a-toleration-key",
        POD_SPEC + "      tolerations:\n        - {key: pool.example.dev/test, operator: Exists}\n",
        "spec.template.spec.tolerations[0].key",
        "'test'",
    ),
    (
        "kind-as-a-label",
        DEPLOYMENT + "  labels:\n    kind: staging\n",
        "metadata.labels.kind",
        "'staging'",
    ),
    ("kind-in-config-map-data", CONFIG_MAP + "data:\n  kind: staging\n", "data.kind", "'staging'"),
    (
        "api-version-in-config-map-data",
        CONFIG_MAP + "data:\n  apiVersion: staging\n",
        "data.apiVersion",
        "'staging'",
    ),
    (
        "group-outside-a-reference",
        "apiVersion: ops.example.com/v1\nkind: Team\nmetadata: {name: a}\n"
        "spec:\n  group: staging-users\n",
        "spec.group",
        "'staging'",
    ),
    (
        "domain-below-the-top-level",
        CONFIG_MAP + "data:\n  host: dev.example.com\n",
        "data.host",
        "'dev'",
    ),
    (
        "file-name-not-a-domain",
        CONFIG_MAP + "data:\n  file: values.prod.yaml\n",
        "data.file",
        "'prod'",
    ),
    (
        "dev-in-a-url-path",
        CONFIG_MAP + "data:\n  url: https://example.com/dev/api\n",
        "data.url",
        "'dev'",
    ),
    (
        "service-host-of-another-namespace",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n"
        "spec:\n  hosts: [reviews.prod.svc.cluster.local]\n",
        "spec.hosts[0]",
        "'prod'",
    ),
    (
        "most-specific-name",
        CONFIG_MAP + "data:\n  region: prod-eu\n",
        "data.region",
        "the environment name 'prod-eu';",
    ),
    (
        "two-names",
        CONFIG_MAP + "data:\n  flow: dev-to-staging\n",
        "data.flow",
        "the environment names 'dev', 'staging';",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "path", "named"),
    [case[1:] for case in STILL_FOUND],
    ids=[case[0] for case in STILL_FOUND],
)
def test_environment_names_people_write_are_still_found(
    build_source: SourceBuilder, manifest: str, path: str, named: str
) -> None:
    findings = lint(build_source({"app.yaml": manifest}), ENVIRONMENTS)

    assert [(f.rule, f.path) for f in findings] == [("environment-name", path)], findings
    assert named in findings[0].message


# --- accepting a finding with a reason (bundle.yaml lint.accept) ---------------------------------

ISSUER = (
    "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata:\n  name: letsencrypt\n"
    "spec:\n  acme:\n    server: https://acme-staging-v02.api.letsencrypt.org/directory\n"
)
ISSUER_ACCEPT = {
    "rule": "environment-name",
    "file": "manifests/issuer.yaml",
    "path": "spec.acme.server",
    "reason": "Let's Encrypt's staging CA, the same for every target",
}


def source_accepting(manifests: dict[str, str], *accepts: dict[str, str]) -> Source:
    bundle = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Bundle",
        "name": "web",
        "lint": {"accept": list(accepts)},
    }
    files = {f"manifests/{name}": text.encode() for name, text in manifests.items()}
    files["bundle.yaml"] = yaml.safe_dump(bundle, sort_keys=False).encode()
    return source_from_files(files, "web")


def test_an_accepted_finding_is_not_reported_and_others_still_are() -> None:
    source = source_accepting(
        {"issuer.yaml": ISSUER + "  privateKeySecretRef: {name: letsencrypt-staging}\n"},
        ISSUER_ACCEPT,
    )

    assert [(f.file, f.line, f.path) for f in lint(source, ENVIRONMENTS)] == [
        ("manifests/issuer.yaml", 8, "spec.privateKeySecretRef.name")
    ]
    assert lint(source_accepting({"issuer.yaml": ISSUER}, ISSUER_ACCEPT), ENVIRONMENTS) == []


def test_an_acceptance_names_one_rule_one_file_and_one_path() -> None:
    other_path = {**ISSUER_ACCEPT, "path": "spec.acme.email"}
    other_file = {**ISSUER_ACCEPT, "file": "manifests/other.yaml"}
    other_rule = {**ISSUER_ACCEPT, "rule": "plaintext-secret"}
    manifests = {"issuer.yaml": ISSUER, "other.yaml": CONFIG_MAP}

    for accept in (other_path, other_file, other_rule):
        findings = lint(source_accepting(manifests, accept), ENVIRONMENTS)
        assert ("manifests/issuer.yaml", "environment-name") in [
            (f.file, f.rule) for f in findings
        ], accept


def test_an_acceptance_that_matches_nothing_is_an_error_at_its_line_in_bundle_yaml() -> None:
    stale = {**ISSUER_ACCEPT, "path": "spec.acme.email"}
    source = source_accepting({"issuer.yaml": ISSUER}, ISSUER_ACCEPT, stale)

    findings = lint(source, ENVIRONMENTS)

    assert [(f.file, f.rule, f.path) for f in findings] == [
        ("bundle.yaml", "unused-accept", "lint.accept[1]")
    ]
    assert findings[0].line == 10
    assert "matches no environment-name finding in manifests/issuer.yaml at spec.acme.email" in (
        findings[0].message
    )


def test_a_plaintext_secret_can_be_accepted_one_secret_at_a_time() -> None:
    accept = {
        "rule": "plaintext-secret",
        "file": "manifests/secret.yaml",
        "path": "stringData",
        "reason": "a throwaway token of the local demo",
    }
    source = source_accepting(
        {
            "secret.yaml": SECRET + "stringData:\n  token: t\n",
            "other.yaml": SECRET.replace("db", "api") + "data: {token: dA==}\n",
        },
        accept,
    )

    assert [(f.file, f.rule) for f in lint(source, ENVIRONMENTS)] == [
        ("manifests/other.yaml", "plaintext-secret")
    ]


def test_a_helm_test_hook_named_after_its_role_is_accepted_with_a_reason() -> None:
    """`helm template` without --skip-tests renders `<release>-test-connection`: the word names
    the Pod's role, which only a person can tell; lint.accept says so once, with the reason."""
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ledger-test-connection\n"
        "  annotations:\n    helm.sh/hook: test\n"
    )
    accepts = [
        {**ISSUER_ACCEPT, "file": "manifests/tests.yaml", "path": path, "reason": "Helm test hook"}
        for path in ("metadata.name", 'metadata.annotations["helm.sh/hook"]')
    ]

    assert [f.path for f in lint(source_accepting({"tests.yaml": pod}), ENVIRONMENTS)] == [
        "metadata.name",
        'metadata.annotations["helm.sh/hook"]',
    ]
    assert lint(source_accepting({"tests.yaml": pod}, *accepts), ENVIRONMENTS) == []


@pytest.mark.parametrize(
    ("test_manifest", "findings"),
    [
        (
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: smoke\n"
            "spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: []\n",
            [],
        ),
        (
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\n"
            "metadata:\n  name: smoke\n",
            [("manifests/smoke.yaml", 1, "test-kind")],
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: smoke\n",
            [("manifests/smoke.yaml", 1, "test-kind")],
        ),
    ],
    ids=["job", "cluster-role-binding", "pod"],
)
def test_test_manifests_must_be_jobs(
    build_source: SourceBuilder, test_manifest: str, findings: list[tuple[str, int, str]]
) -> None:
    manifests = {"app.yaml": CONFIG_MAP, "smoke.yaml": test_manifest}
    assert findings_for(build_source, manifests, tests=("manifests/smoke.yaml",)) == findings
