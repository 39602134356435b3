"""Lint on real-world manifests: no false finding, every true one, and acceptances that count.

The corpus (tests/fixtures/corpus, see its README) holds the kinds people ship next to their app
(Knative, cert-manager, Prometheus Operator, Istio, a rendered Helm chart, ...); the pipeline's
environment names are those of the demo's shape, including targets named after their stage.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from conveyor.bundles.lint import lint
from conveyor.bundles.render import render
from conveyor.bundles.source import BUNDLE_FILE, load_source, source_from_files

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
ENVIRONMENTS = ("dev", "test", "staging", "prod", "prod-eu", "prod-us")
REAL_WORLD_KINDS = {
    ("serving.knative.dev/v1", "Service"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "ClusterIssuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("networking.istio.io/v1beta1", "VirtualService"),
    ("networking.k8s.io/v1", "Ingress"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "ServiceAccount"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
}


def test_the_real_world_corpus_holds_every_kind_it_stands_for_and_renders() -> None:
    objects = render(load_source(CORPUS / "real-world"), {})

    kinds = {(str(o["apiVersion"]), str(o["kind"])) for o in objects}
    assert kinds >= REAL_WORLD_KINDS, REAL_WORLD_KINDS - kinds
    helm_labels = {
        key
        for o in objects
        for key in o["metadata"].get("labels", {})  # type: ignore[union-attr]
    }
    assert {"helm.sh/chart", "app.kubernetes.io/managed-by"} <= helm_labels


def test_real_world_manifests_produce_no_finding() -> None:
    assert lint(load_source(CORPUS / "real-world"), ENVIRONMENTS) == []


def test_true_findings_are_still_found_at_their_file_line_and_path() -> None:
    findings = lint(load_source(CORPUS / "true-findings"), ENVIRONMENTS)

    assert [(f.file, f.line, f.rule, f.path) for f in findings] == [
        ("manifests/deployment.yaml", 5, "environment-name", "metadata.namespace"),
        (
            "manifests/deployment.yaml",
            20,
            "environment-name",
            "spec.template.spec.containers[0].env[0].value",
        ),
        ("manifests/ingress.yaml", 10, "environment-name", "spec.rules[0].host"),
    ]
    assert "'api.staging.example.com' hard-codes the environment name 'staging'" in (
        findings[2].message
    )


def test_accepted_findings_pass_and_are_found_again_without_their_acceptance() -> None:
    accepted = load_source(CORPUS / "accepted")
    files = {file.path: file.content for file in accepted.files}
    bundle = yaml.safe_load(files[BUNDLE_FILE])
    del bundle["lint"]
    files[BUNDLE_FILE] = yaml.safe_dump(bundle).encode()
    unaccepted = source_from_files(files, "accepted")

    assert lint(accepted, ENVIRONMENTS) == []
    assert [(f.file, f.path) for f in lint(unaccepted, ENVIRONMENTS)] == [
        (a.file, a.path) for a in accepted.spec.accepted_findings
    ]
