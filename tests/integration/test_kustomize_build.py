"""`conveyor bundle build` of a source whose manifests are a Kustomize overlay, with the
platform's kubectl: the bundle holds the overlay's output, and a broken overlay stops the build
naming bundle.yaml's field and kubectl's message."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from conveyor.platform.local import LocalPlatform
from tests.integration.test_bundle_cli import conveyor, ok
from tests.support.git import git, init_repository

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kustomize-web"


def _repository(root: Path) -> Path:
    shutil.copytree(FIXTURE, root / "app")
    init_repository(root, "kustomize app")
    return root


def _build(root: Path, store: str) -> tuple[int, str, str]:
    run = conveyor("bundle", "build", str(root), "--path", "app", "--store", store, "-o", "json")
    return run.code, run.stdout, run.stderr


def test_the_overlay_is_built_into_the_bundle_and_rendered_per_target(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    root = _repository(tmp_path / "repo")
    store = f"{platform.registry.address}/tests/k{uuid.uuid4().hex[:10]}"
    code, out, err = _build(root, store)
    assert code == 0, err
    digest = json.loads(out)["digest"]
    shown = ok(conveyor("bundle", "inspect", digest, "--store", store, "-o", "json")).json()
    paths = {f["path"] for f in shown["files"]}
    assert {"manifests/kustomize-build.yaml", "kustomize/base/deployment.yaml"} <= paths
    assert [image["image"] for image in shown["images"]] == [
        "registry.example/curl:8",
        "registry.example/web:1.1.0",
    ]
    rendered = ok(
        conveyor("bundle", "render", digest, "--store", store, "--set", "replicas=4", "--json")
    ).json()
    kinds = {o["kind"]: o for o in rendered}
    assert set(kinds) == {"ConfigMap", "Service", "Deployment"}
    assert kinds["Deployment"]["spec"]["replicas"] == 4
    assert kinds["ConfigMap"]["metadata"]["name"].startswith("web-config-")
    assert kinds["Service"]["spec"]["selector"]["app.kubernetes.io/part-of"] == "shop"

    again = _build(root, store)
    assert again[0] == 0 and json.loads(again[1])["reused"], "same tree, reused"


def test_a_broken_overlay_stops_the_build_naming_the_field_and_kubectl(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    root = _repository(tmp_path / "repo")
    overlay = root / "app" / "kustomize" / "overlays" / "shop" / "kustomization.yaml"
    overlay.write_text(overlay.read_text().replace("../../base", "../../missing"))
    git(root, "commit", "-qam", "a base that is not there")
    store = f"{platform.registry.address}/tests/k{uuid.uuid4().hex[:10]}"
    code, out, err = _build(root, store)
    assert code == 2, err
    assert "bundle.yaml: kustomize: kubectl kustomize kustomize/overlays/shop failed" in err
    assert "missing" in err and out == ""


def test_a_source_may_not_hold_what_the_build_writes(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    root = _repository(tmp_path / "repo")
    (root / "app" / "manifests" / "kustomize-build.yaml").write_text("kind: ConfigMap\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a hand-written output")
    code, _, err = _build(root, f"{platform.registry.address}/tests/k{uuid.uuid4().hex[:10]}")
    assert code == 2
    assert "manifests/kustomize-build.yaml: the build writes this file" in err
