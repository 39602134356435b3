"""Helm charts as sources, with the platform's Helm and registry: a chart of the source rendered
per target; a public chart (metrics-server, vendored in tests/fixtures/charts) pulled from an OCI
registry and from an HTTP chart repository into the bundle at build time; values checked against
the chart's values.yaml and values.schema.json; images pinned; confinement applied to what the
chart renders."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.adapters.image_registry import ImageRegistries
from conveyor.bundles.render import rendered_hash
from conveyor.platform.local import LocalPlatform
from tests.integration.test_bundle_cli import conveyor, ok
from tests.support.git import git, init_repository

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
METRICS_SERVER = FIXTURES / "charts" / "metrics-server"
METRICS_IMAGE = ("metrics-server/metrics-server", "v0.7.2")
# One release per test on a shared cluster: its own names, and no APIService (an aggregated API
# with no server behind it would break discovery for every other client of the cluster).
METRICS_VALUES = {"apiService": {"create": False}, "args": ["--kubelet-insecure-tls"]}
BUNDLE = "apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: {name}\n"


def _helm(platform: LocalPlatform, *args: str, cwd: Path) -> str:
    home = cwd / ".helm-home"
    finished = subprocess.run(
        [platform.environment()["CONVEYOR_HELM"], *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(home), "KUBECONFIG": os.devnull},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout + finished.stderr


def _source_repository(root: Path, bundle_yaml: str, chart: Path | None = None) -> Path:
    (root / "app").mkdir(parents=True)
    (root / "app" / "bundle.yaml").write_text(bundle_yaml)
    if chart is not None:
        shutil.copytree(chart, root / "app" / "chart")
    init_repository(root, "a chart source")
    return root


def _store(platform: LocalPlatform) -> str:
    return f"{platform.registry.address}/tests/h{uuid.uuid4().hex[:10]}"


def _build(root: Path, store: str) -> str:
    built = conveyor("bundle", "build", str(root), "--path", "app", "--store", store, "-o", "json")
    ok(built)
    return str(built.json()["digest"])


def test_a_chart_of_the_source_is_rendered_per_target_with_its_values(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    shutil.copytree(FIXTURES / "helm-web", tmp_path / "repo" / "app")
    root = tmp_path / "repo"
    init_repository(root, "the web chart")
    store = _store(platform)
    digest = _build(root, store)

    shown = ok(conveyor("bundle", "inspect", digest, "--store", store, "-o", "json")).json()
    assert [image["image"] for image in shown["images"]] == [
        "registry.example/curl:8",
        "registry.example/web:1.1.0",  # the chart's appVersion, as its default values say
    ]
    rendered = conveyor(
        "bundle", "render", digest, "--store", store, "--set", "replicas=4",
        "--set", "greeting=hi", "-n", "web-dev", "--json",
    )  # fmt: skip
    objects = ok(rendered).json()
    kinds = {obj["kind"]: obj for obj in objects}
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Service"], "no test hook Pod"
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 4
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    pinned = ImageRegistries().digest(platform.registry.address, "web", "1.1.0")
    assert container["image"] == f"registry.example/web:1.1.0@{pinned}"
    assert container["env"] == [{"name": "SERVED_FROM", "value": "web.web-dev"}]
    assert kinds["ConfigMap"]["data"] == {"greeting": "hi", "logLevel": "info"}
    # The rendered hash covers Helm's version: not the hash of the objects alone.
    assert f"rendered hash {rendered_hash(objects)}" not in rendered.stderr
    assert "rendered hash sha256:" in rendered.stderr

    other = ok(
        conveyor("bundle", "render", digest, "--store", store, "--set", "greeting=hi", "--json")
    ).json()
    checksum = "checksum/config"
    annotations = [
        {o["kind"]: o for o in side}["Deployment"]["spec"]["template"]["metadata"]["annotations"]
        for side in (objects, other)
    ]
    assert annotations[0][checksum] == annotations[1][checksum], "same ConfigMap, same checksum"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("replicas=many", "chart: helm template failed: "),
        ("replicaCount=2", "unknown parameter(s) 'replicaCount'"),
        ("image={repository: a, digest: b}", "additional properties 'digest' not allowed"),
    ],
)
def test_values_the_chart_refuses_fail_the_render_naming_them(
    platform: LocalPlatform, tmp_path: Path, assignment: str, message: str
) -> None:
    shutil.copytree(FIXTURES / "helm-web", tmp_path / "repo" / "app")
    init_repository(tmp_path / "repo", "the web chart")
    store = _store(platform)
    digest = _build(tmp_path / "repo", store)
    run = conveyor("bundle", "render", digest, "--store", store, "--set", assignment)
    assert run.code == 2, run.stderr
    assert message in run.stderr and run.stdout == ""
    assert "/tmp/" not in run.stderr, "no temporary folder in the message"


@pytest.fixture
def oci_chart(platform: LocalPlatform, tmp_path: Path) -> str:
    """The vendored metrics-server chart pushed to the platform's registry: its repository."""
    work = tmp_path / "package"
    work.mkdir()
    _helm(platform, "package", str(METRICS_SERVER), "--destination", str(work), cwd=work)
    repository = f"oci://{platform.registry.address}/charts{uuid.uuid4().hex[:8]}"
    _helm(
        platform, "push", str(work / "metrics-server-3.12.2.tgz"), repository, "--plain-http",
        cwd=work,
    )  # fmt: skip
    return repository


def test_a_public_chart_from_an_oci_registry_is_vendored_and_confined(
    platform: LocalPlatform, tmp_path: Path, oci_chart: str
) -> None:
    bundle = BUNDLE.format(name="metrics-server") + (
        f"helm: {{repository: {json.dumps(oci_chart)}, chart: metrics-server, version: 3.12.2}}\n"
    )
    root = _source_repository(tmp_path / "repo", bundle)
    store = _store(platform)
    digest = _build(root, store)
    shown = ok(conveyor("bundle", "inspect", digest, "--store", store, "-o", "json")).json()
    paths = {f["path"] for f in shown["files"]}
    assert "helm-vendored/metrics-server/Chart.yaml" in paths
    assert "helm-vendored/metrics-server/templates/deployment.yaml" in paths
    assert [i["image"] for i in shown["images"]] == [
        "registry.k8s.io/metrics-server/metrics-server:v0.7.2"
    ]

    values = tmp_path / "values.json"
    suffix = uuid.uuid4().hex[:6]
    values.write_text(json.dumps({**METRICS_VALUES, "fullnameOverride": f"ms-{suffix}"}))
    namespace = f"metrics-{suffix}"
    apply = (
        "apply", digest, "--store", store, "--app", "metrics-server", "--target", suffix,
        "--namespace", namespace, "-f", str(values), "--timeout", "60",
        "--kubeconfig", str(platform.kubernetes.kubeconfig),
    )  # fmt: skip
    refused = conveyor(*apply)
    assert refused.code == 2, refused.stderr
    assert "helm-vendored/metrics-server/templates/" in refused.stderr
    allowed = (
        "--allow-namespace", "kube-system", "--allow-cluster-scoped", "ClusterRole",
        "--allow-cluster-scoped", "ClusterRoleBinding",
    )  # fmt: skip
    ok(conveyor(*apply, *allowed))
    pinned = ImageRegistries().digest(platform.registry.address, *METRICS_IMAGE)
    deployment = _kubectl_json(platform, "-n", namespace, "get", "deployment", f"ms-{suffix}")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"registry.k8s.io/metrics-server/metrics-server:v0.7.2@{pinned}"
    binding = _kubectl_json(
        platform, "-n", "kube-system", "get", "rolebinding", f"ms-{suffix}-auth-reader"
    )
    assert binding["subjects"][0]["namespace"] == namespace, "rendered for the target namespace"
    ok(conveyor(*apply, *allowed, "--no-prune"))  # idempotent


def _kubectl_json(platform: LocalPlatform, *args: str) -> dict[str, object]:
    finished = subprocess.run(
        [platform.environment()["CONVEYOR_KUBECTL"], "--kubeconfig",
         str(platform.kubernetes.kubeconfig), *args, "-o", "json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    return dict(json.loads(finished.stdout))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def http_chart_repository(platform: LocalPlatform, tmp_path: Path) -> Iterator[str]:
    """An HTTP chart repository on 127.0.0.1 serving the metrics-server chart: its URL."""
    served = Path(tempfile.mkdtemp(dir=tmp_path))
    _helm(platform, "package", str(METRICS_SERVER), "--destination", str(served), cwd=served)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served))
    )
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    _helm(platform, "repo", "index", str(served), "--url", url, cwd=served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    server.server_close()


def test_a_chart_from_an_http_repository_is_vendored_so_the_bundle_needs_it_no_more(
    platform: LocalPlatform, tmp_path: Path, http_chart_repository: str
) -> None:
    bundle = BUNDLE.format(name="metrics") + (
        f"helm: {{repository: {json.dumps(http_chart_repository)}, chart: metrics-server, "
        "version: 3.12.2, releaseName: metrics}\n"
    )
    root = _source_repository(tmp_path / "repo", bundle)
    store = _store(platform)
    digest = _build(root, store)
    missing = bundle.replace("3.12.2", "3.99.0")
    (root / "app" / "bundle.yaml").write_text(missing)
    git(root, "commit", "-qam", "a chart version the repository does not have")
    run = conveyor("bundle", "build", str(root), "--path", "app", "--store", store)
    assert run.code == 2, run.stderr
    assert "bundle.yaml: helm pull of metrics-server 3.99.0 from http://127.0.0.1:" in run.stderr

    shutil.rmtree(tmp_path / "repo")  # and the repository is still served, but not asked
    values = tmp_path / "values.json"
    values.write_text(json.dumps(METRICS_VALUES))
    objects = ok(
        conveyor("bundle", "render", digest, "--store", store, "-f", str(values), "--json")
    ).json()
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("Deployment", "metrics-metrics-server") in names
    assert not any(kind == "APIService" for kind, _ in names)


def test_a_source_may_not_hold_the_folder_the_build_vendors_into(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    bundle = BUNDLE.format(name="rocket") + (
        "helm: {repository: 'oci://127.0.0.1:1/charts', chart: rocket, version: 1.0.0}\n"
    )
    root = tmp_path / "repo"
    (root / "app" / "helm-vendored" / "rocket").mkdir(parents=True)
    (root / "app" / "helm-vendored" / "rocket" / "Chart.yaml").write_text("name: rocket\n")
    _source_repository(tmp_path / "other", bundle)
    shutil.copy(tmp_path / "other" / "app" / "bundle.yaml", root / "app" / "bundle.yaml")
    init_repository(root, "a hand-vendored chart")
    run = conveyor("bundle", "build", str(root), "--path", "app", "--store", _store(platform))
    assert run.code == 2
    assert "helm-vendored/rocket/Chart.yaml: the build writes this file" in run.stderr
