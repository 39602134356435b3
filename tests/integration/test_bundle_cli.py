"""The bundle workflow through the real `conveyor` command line.

Every test runs the CLI as a subprocess, the way people and scripts run it, against real git
repositories made in tmp_path, the local platform's registry and OCI layout folders; skopeo is the
independent reader that checks what Conveyor wrote. Exit codes follow the README: 0 success,
2 bad input (nothing changed), 3 integrity, 4 infrastructure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.adapters.image_registry import ImageRegistries
from conveyor.platform.local import LocalPlatform
from conveyor.platform.process import free_port
from tests.support.git import git

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "web"
SOURCE_PATH = "web"
CREATED = "1970-01-01T00:00:00Z"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
CLI = [sys.executable, "-c", "from conveyor.cli import main; main()"]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout)


def conveyor(*args: str, cwd: Path | None = None, store_env: str | None = None) -> Run:
    """Run `conveyor ARGS` in a subprocess; CONVEYOR_STORE is set only when `store_env` is."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CONVEYOR_STORE", "CONVEYOR_REGISTRY_USERNAME", "CONVEYOR_REGISTRY_PASSWORD")
    }
    if store_env is not None:
        env["CONVEYOR_STORE"] = store_env
    started = time.monotonic()
    result = subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return Run(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def ok(run: Run) -> Run:
    assert run.code == 0, f"exit {run.code}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    return run


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def make_repo(root: Path, *, marker: str | None = None) -> Path:
    """A git repository holding examples/web under web/ and a README outside it."""
    root.mkdir(parents=True)
    shutil.copytree(EXAMPLE, root / SOURCE_PATH)
    (root / "README.md").write_text("apps of the team\n")
    if marker is not None:  # content no other test has, so the layer blob is ours alone
        configmap = root / SOURCE_PATH / "manifests" / "configmap.yaml"
        configmap.write_text(configmap.read_text() + f"  marker: {marker}\n")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "first")
    return root


def build(repo: Path, store: str, *extra: str, cwd: Path | None = None) -> Run:
    args = ["bundle", "build", str(repo), "--path", SOURCE_PATH, "--store", store, "-o", "json"]
    return conveyor(*args, *extra, cwd=cwd)


def platform_registry() -> str:
    return os.environ["CONVEYOR_IMAGE_MIRRORS"].split("=", 1)[1]


def skopeo(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["skopeo", *args], capture_output=True, check=True, timeout=30)


def registry_manifest(store: str, reference: str) -> bytes:
    """The raw manifest bytes skopeo reads for `store:tag` or `store@digest`."""
    separator = "@" if reference.startswith("sha256:") else ":"
    image = f"docker://{store}{separator}{reference}"
    return skopeo("inspect", "--raw", "--tls-verify=false", image).stdout


def layout_manifest(folder: Path, tag: str) -> bytes:
    return skopeo("inspect", "--raw", f"oci:{folder}:{tag}").stdout


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def registry_tags(store: str) -> list[str]:
    listing = skopeo("list-tags", "--tls-verify=false", f"docker://{store}").stdout
    return sorted(json.loads(listing)["Tags"])


def repository_storage(platform: LocalPlatform, store: str) -> Path:
    repository = store.split("/", 1)[1]
    return platform.registry.root / "data/docker/registry/v2/repositories" / repository


def stored_links(platform: LocalPlatform, store: str) -> set[str]:
    """Every manifest revision, tag and layer link the registry holds for the repository."""
    root = repository_storage(platform, store)
    return {str(path.relative_to(root)) for path in root.rglob("link")}


def tree_files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def rendered_hash(objects: Any) -> str:
    canonical = json.dumps(objects, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return digest_of(canonical.encode())


@dataclass(frozen=True)
class Published:
    """examples/web built once into a registry repository, shared by read-only tests."""

    repo: Path
    store: str
    digest: str
    tree_hash: str
    commit: str


@pytest.fixture(scope="module")
def published(platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory) -> Published:
    repo = make_repo(tmp_path_factory.mktemp("published") / "repo")
    store = f"{platform.registry.address}/tests/r{uuid.uuid4().hex[:10]}"
    built = ok(build(repo, store, "--tag", "v1")).json()
    return Published(repo, store, built["digest"], built["tree_hash"], built["commit"])


@pytest.fixture
def repo(tmp_path: Path, platform: LocalPlatform) -> Path:
    """The example app in a git repository; its builds pin images through the platform."""
    return make_repo(tmp_path / "repo")


# --- build: push once, reuse by source tree ------------------------------------------------------


def test_build_pushes_once_then_reuses_until_the_source_folder_changes(
    repo: Path, registry_repo: str
) -> None:
    first = ok(build(repo, registry_repo))
    pushed = first.json()
    assert pushed["reused"] is False and pushed["size"] > 0
    assert DIGEST.fullmatch(pushed["digest"]) and DIGEST.fullmatch(pushed["tree_hash"])
    assert pushed["commit"] == git(repo, "rev-parse", "HEAD")
    assert pushed["name"] == "web"
    assert "pushing" in first.stderr

    again = ok(build(repo, registry_repo))
    assert again.json()["reused"] is True
    assert again.json()["digest"] == pushed["digest"]
    assert again.json()["size"] == 0
    assert "pushing" not in again.stderr

    (repo / "README.md").write_text("apps of the team, now documented\n")
    outside = commit_all(repo, "docs outside the source folder")
    unrelated = ok(build(repo, registry_repo)).json()
    assert unrelated["commit"] == outside != pushed["commit"]
    assert unrelated["reused"] is True
    assert unrelated["digest"] == pushed["digest"]

    service = repo / SOURCE_PATH / "manifests" / "service.yaml"
    service.write_text(service.read_text().replace("port: 80\n", "port: 81\n"))
    commit_all(repo, "one byte in a manifest")
    changed = ok(build(repo, registry_repo)).json()
    assert changed["reused"] is False
    assert changed["digest"] != pushed["digest"]
    assert changed["tree_hash"] != pushed["tree_hash"]

    tags = registry_tags(registry_repo)
    assert tags == sorted(
        f"tree-{built['tree_hash'].removeprefix('sha256:')[:40]}" for built in (pushed, changed)
    )
    assert digest_of(registry_manifest(registry_repo, changed["digest"])) == changed["digest"]


def test_builds_from_two_clones_at_different_paths_are_reproducible(
    repo: Path, tmp_path: Path, registry_repo: str
) -> None:
    """Same commit, other checkouts (paths, umask, mtimes, stores): the same bytes come out."""
    home_a, home_b = tmp_path / "alice", tmp_path / "bob" / "src"
    home_a.mkdir()
    home_b.mkdir(parents=True)
    git(home_a, "clone", "-q", str(repo), "repo", umask=0o022)
    git(home_b, "clone", "-q", str(repo), "repo", umask=0o077)
    for path in (home_b / "repo" / SOURCE_PATH).rglob("*"):
        os.utime(path, (981173106, 981173106))  # 2001, unlike alice's fresh checkout
    assert (home_b / "repo" / "README.md").stat().st_mode & 0o077 == 0
    layout_b = tmp_path / "layout-b"

    # The source annotation is the clones' origin, however the path to them is typed.
    built_a = ok(build(Path("repo"), registry_repo, cwd=home_a)).json()
    built_b = ok(build(Path("repo"), f"oci:{layout_b}", cwd=home_b)).json()

    assert built_a["reused"] is False and built_b["reused"] is False
    assert built_a["commit"] == built_b["commit"] == git(repo, "rev-parse", "HEAD")
    assert built_a["tree_hash"] == built_b["tree_hash"]
    assert built_a["digest"] == built_b["digest"]
    tree_tag = "tree-" + built_a["tree_hash"].removeprefix("sha256:")[:40]
    from_registry = registry_manifest(registry_repo, tree_tag)
    assert from_registry == layout_manifest(layout_b, tree_tag)
    assert digest_of(from_registry) == built_a["digest"]

    layout_c = tmp_path / "layout-c"
    absolute = ok(build(home_b / "repo", f"oci:{layout_c}")).json()
    assert absolute["digest"] == built_a["digest"], "typed as an absolute path: the same bundle"
    manifest_a = json.loads(from_registry)
    assert manifest_a["annotations"]["org.opencontainers.image.source"] == str(repo)
    assert json.loads(layout_manifest(layout_c, tree_tag)) == manifest_a


# --- inspect and render --------------------------------------------------------------------------


def test_inspect_shows_annotations_parameters_and_files(published: Published) -> None:
    shown = ok(conveyor("bundle", "inspect", "v1", "--store", published.store, "-o", "json")).json()
    registries, mirror = ImageRegistries(), platform_registry()

    assert shown["digest"] == published.digest
    assert shown["annotations"] == {
        "org.opencontainers.image.source": str(published.repo),
        "org.opencontainers.image.revision": git(published.repo, "rev-parse", "HEAD"),
        "org.opencontainers.image.created": CREATED,
        "dev.conveyor.bundle.name": "web",
        "dev.conveyor.bundle.tree-hash": published.tree_hash,
        "dev.conveyor.bundle.images": ",".join(
            f"registry.example/{repository}:{tag}@{registries.digest(mirror, repository, tag)}"
            for repository, tag in (("curl", "8"), ("web", "1.0.0"))
        ),
    }
    spec = yaml.safe_load((EXAMPLE / "bundle.yaml").read_text())["parameters"]["properties"]
    assert {p["name"]: (p["type"], p["default"]) for p in shown["parameters"]} == {
        name: (schema["type"], schema["default"]) for name, schema in spec.items()
    }
    lock = {f["path"]: f["size"] for f in shown["files"]}.pop("images.lock.json")
    assert lock > 0
    assert {f["path"]: f["size"] for f in shown["files"] if f["path"] != "images.lock.json"} == {
        path: len(content) for path, content in tree_files(EXAMPLE).items()
    }
    assert [entry["image"] for entry in shown["images"]] == [
        "registry.example/curl:8",
        "registry.example/web:1.0.0",
    ]
    assert shown["tests"] == ["manifests/smoke-test.yaml"]
    # The registry holds these exact annotations, as any OCI client reads them.
    raw = json.loads(registry_manifest(published.store, published.digest))
    assert raw["annotations"] == shown["annotations"]

    table = ok(conveyor("bundle", "inspect", published.digest, "--store", published.store))
    assert f"web {published.digest}" in table.stdout
    assert f"org.opencontainers.image.created: {CREATED}" in table.stdout
    assert f"dev.conveyor.bundle.tree-hash: {published.tree_hash}" in table.stdout
    assert "replicas" in table.stdout and "integer" in table.stdout


def test_render_keeps_value_types_and_prints_the_rendered_hash(
    published: Published, tmp_path: Path
) -> None:
    values = tmp_path / "staging.yaml"
    values.write_text("replicas: 2\ngreeting: bonjour\n")
    args = ("bundle", "render", published.digest, "--store", published.store, "-f", str(values))

    as_json = ok(conveyor(*args, "--set", "replicas=3", "--json"))
    objects = as_json.json()
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment", "Service"]
    deployment = objects[1]
    assert deployment["spec"]["replicas"] == 3 and type(deployment["spec"]["replicas"]) is int
    # Pinned to the digest the build resolved (the platform's registry mirrors registry.example).
    pinned = ImageRegistries().digest(platform_registry(), "web", "1.0.0")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"registry.example/web:1.0.0@{pinned}"
    )
    assert objects[0]["data"] == {"greeting": "bonjour", "log-level": "info"}
    expected_hash = rendered_hash(objects)
    assert f"rendered 3 objects from {published.digest}; rendered hash {expected_hash}" in (
        as_json.stderr
    )

    as_yaml = ok(conveyor(*args, "--set", "replicas=3"))
    assert list(yaml.safe_load_all(as_yaml.stdout)) == objects
    assert f"rendered hash {expected_hash}" in as_yaml.stderr

    # The build saw only the defaults: an image the parameters choose now is not in its lock.
    other = conveyor(*args, "--set", "version=1.1.0")
    assert other.code == 2 and other.stdout == ""
    assert "spec.template.spec.containers[0].image: the image 'registry.example/web:1.1.0' " in (
        other.stderr
    )

    gate = ok(conveyor(*args, "--tests", "--json")).json()
    assert [(o["kind"], o["metadata"]["name"]) for o in gate] == [("Job", "web-smoke")]


@pytest.mark.parametrize(
    ("values_text", "assignment", "message"),
    [
        ("replicas: 2\nbogus: 1\n", None, "unknown parameter(s) 'bogus'"),
        ("replicas: 2\ngreeting: hello: world\nlogLevel: info\n", None, "{file}:2: invalid YAML"),
        (None, "replicas=50", "parameter 'replicas': must be at most 20, got 50"),
        ("replicas: three\n", None, "parameter 'replicas'"),
    ],
    ids=["unknown-name", "malformed-yaml", "above-maximum", "wrong-type"],
)
def test_render_refuses_bad_parameters_with_exit_2_and_prints_nothing(
    published: Published,
    tmp_path: Path,
    values_text: str | None,
    assignment: str | None,
    message: str,
) -> None:
    args = ["bundle", "render", published.digest, "--store", published.store]
    values = tmp_path / "target.yaml"
    if values_text is not None:
        values.write_text(values_text)
        args += ["--values", str(values)]
    if assignment is not None:
        args += ["--set", assignment]

    run = conveyor(*args)

    assert run.code == 2, run.stderr
    assert run.stdout == ""
    assert message.format(file=values) in run.stderr
    assert "Traceback" not in run.stderr


# --- lint stops a build before anything is pushed ------------------------------------------------


def test_lint_failures_exit_2_naming_file_and_line_and_push_nothing(
    platform: LocalPlatform, repo: Path, registry_repo: str
) -> None:
    ok(build(repo, registry_repo))
    tags_before = registry_tags(registry_repo)
    links_before = stored_links(platform, registry_repo)
    good = git(repo, "rev-parse", "HEAD")

    configmap = repo / SOURCE_PATH / "manifests" / "configmap.yaml"
    configmap.write_text(configmap.read_text() + "  cluster: eu-staging-1\n")  # line 8
    commit_all(repo, "hard-code an environment")
    staging = build(repo, registry_repo)
    assert staging.code == 2, staging.stderr
    assert staging.stdout == ""
    assert "manifests/configmap.yaml:8: data.cluster: 'eu-staging-1'" in staging.stderr
    assert "environment name 'staging'" in staging.stderr

    git(repo, "reset", "-q", "--hard", good)
    (repo / SOURCE_PATH / "manifests" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b: c\n"
    )
    commit_all(repo, "broken YAML")
    broken = build(repo, registry_repo)
    assert broken.code == 2, broken.stderr
    assert broken.stdout == ""
    assert "manifests/extra.yaml:6: invalid YAML" in broken.stderr

    assert registry_tags(registry_repo) == tags_before
    assert stored_links(platform, registry_repo) == links_before


# --- tag, push, pull -----------------------------------------------------------------------------


def test_tag_moves_a_stage_tag_and_leaves_other_tags_alone(repo: Path, registry_repo: str) -> None:
    first = ok(build(repo, registry_repo, "--tag", "v1")).json()["digest"]
    service = repo / SOURCE_PATH / "manifests" / "service.yaml"
    service.write_text(service.read_text().replace("port: 80\n", "port: 8080\n"))
    commit_all(repo, "second")
    second = ok(build(repo, registry_repo, "--tag", "v2")).json()["digest"]

    moved = ok(conveyor("bundle", "tag", first, "staging", "--store", registry_repo))
    assert moved.stdout.strip() == f"staging -> {first}"
    assert digest_of(registry_manifest(registry_repo, "staging")) == first

    # By tag this time: staging follows v2's digest.
    ok(conveyor("bundle", "tag", "v2", "staging", "--store", registry_repo))
    assert digest_of(registry_manifest(registry_repo, "staging")) == second
    assert digest_of(registry_manifest(registry_repo, "v1")) == first
    assert digest_of(registry_manifest(registry_repo, "v2")) == second
    tags = registry_tags(registry_repo)
    assert [t for t in tags if not t.startswith("tree-")] == ["staging", "v1", "v2"]
    assert len(tags) == 5
    assert {digest_of(registry_manifest(registry_repo, t)) for t in tags} == {first, second}


def test_full_references_name_their_own_store(
    published: Published, registry_repo: str, tmp_path: Path
) -> None:
    by_digest = f"{published.store}@{published.digest}"
    # The reference's own store wins over $CONVEYOR_STORE, as with skopeo, oras and flux.
    elsewhere = f"oci:{tmp_path / 'elsewhere'}"
    inspected = ok(conveyor("bundle", "inspect", by_digest, "-o", "json", store_env=elsewhere))
    assert inspected.json()["digest"] == published.digest
    out = tmp_path / "out"
    ok(conveyor("bundle", "pull", f"{published.store}:v1", "--out", str(out)))
    assert set(tree_files(out)) == {*tree_files(EXAMPLE), "images.lock.json"}
    rendered = ok(conveyor("bundle", "render", by_digest, "--set", "replicas=3", "--json"))
    deployments = [o for o in rendered.json() if o["kind"] == "Deployment"]
    assert [d["spec"]["replicas"] for d in deployments] == [3]

    ok(conveyor("bundle", "tag", f"{published.store}:v1@{published.digest}", "checked"))
    assert digest_of(registry_manifest(published.store, "checked")) == published.digest

    copied = ok(conveyor("bundle", "push", by_digest, "--to", registry_repo))
    assert copied.stdout.strip() == f"{published.digest} copied to {registry_repo}"

    other = "sha256:" + "0" * 64
    wrong = conveyor("bundle", "inspect", f"{published.store}:v1@{other}")
    assert wrong.code == 2 and "tag 'v1' points at " + published.digest in wrong.stderr
    clash = conveyor("bundle", "inspect", by_digest, "--store", registry_repo)
    assert clash.code == 2
    assert published.store in clash.stderr and registry_repo in clash.stderr
    missing = conveyor("bundle", "inspect", f"{published.store}@{other}")
    assert missing.code == 2 and other in missing.stderr


def test_push_copies_a_bundle_from_a_layout_folder_with_the_same_digest(
    repo: Path, tmp_path: Path, registry_repo: str
) -> None:
    layout = tmp_path / "bundles"
    store = f"oci:{layout}"
    # No --store: the layout folder comes from $CONVEYOR_STORE.
    args = ["bundle", "build", str(repo), "--path", SOURCE_PATH, "--tag", "v1", "-o", "json"]
    built = ok(conveyor(*args, store_env=store)).json()
    digest = built["digest"]
    assert built["store"] == f"OCI layout folder {layout}"
    assert digest_of(layout_manifest(layout, "v1")) == digest

    copied = ok(
        conveyor(
            "bundle", "push", "v1", "--to", registry_repo, "--tag", "candidate", store_env=store
        )
    )
    assert copied.stdout.strip() == f"{digest} copied to {registry_repo}"
    in_registry = registry_manifest(registry_repo, "candidate")
    assert in_registry == layout_manifest(layout, "v1")
    assert digest_of(in_registry) == digest
    # The tree tag came along, so a build against the registry now reuses the copy.
    again = ok(build(repo, registry_repo)).json()
    assert again["reused"] is True and again["digest"] == digest


def test_pull_writes_the_source_into_an_empty_folder_and_refuses_a_non_empty_one(
    published: Published, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    pulled = ok(conveyor("bundle", "pull", "v1", "--store", published.store, "--out", str(empty)))
    assert pulled.stdout.strip() == f"{published.digest}: 6 files written to {empty}"
    written = tree_files(empty)
    assert b'"kind": "ImageLock"' in written.pop("images.lock.json"), "the build's image lock"
    assert written == tree_files(EXAMPLE)

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine\n")
    refused = conveyor(
        "bundle", "pull", published.digest, "--store", published.store, "--out", str(busy)
    )
    assert refused.code == 2, refused.stderr
    assert f"{busy}: not an empty folder" in refused.stderr
    assert tree_files(busy) == {"keep.txt": b"mine\n"}


# --- integrity and infrastructure failures -------------------------------------------------------


@pytest.fixture
def tampered(
    platform: LocalPlatform, tmp_path: Path, registry_repo: str
) -> Iterator[tuple[str, str]]:
    """A bundle whose layer blob (unique to this test) has one byte flipped in the registry."""
    repo = make_repo(tmp_path / "repo", marker=f"m-{uuid.uuid4().hex}")
    digest = ok(build(repo, registry_repo)).json()["digest"]
    layer = json.loads(registry_manifest(registry_repo, digest))["layers"][0]["digest"]
    hex_digest = layer.removeprefix("sha256:")
    blob = (
        platform.registry.root
        / "data/docker/registry/v2/blobs/sha256"
        / hex_digest[:2]
        / hex_digest
        / "data"
    )
    original = blob.read_bytes()
    assert digest_of(original) == layer
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    try:
        yield registry_repo, digest
    finally:
        blob.write_bytes(original)


def test_a_tampered_layer_is_refused_with_exit_3(tampered: tuple[str, str], tmp_path: Path) -> None:
    store, digest = tampered

    inspected = conveyor("bundle", "inspect", digest, "--store", store, "-o", "json")
    assert inspected.code == 3, inspected.stderr
    assert inspected.stdout == ""
    assert "does not match its digest" in inspected.stderr

    rendered = conveyor("bundle", "render", digest, "--store", store)
    assert rendered.code == 3, rendered.stderr
    assert rendered.stdout == ""

    out = tmp_path / "out"
    pulled = conveyor("bundle", "pull", digest, "--store", store, "--out", str(out))
    assert pulled.code == 3, pulled.stderr
    assert not out.exists()


def test_a_registry_that_drops_the_connection_is_tried_once(repo: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def drop_every_connection() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            connection.close()

    threading.Thread(target=drop_every_connection, daemon=True).start()
    store = f"127.0.0.1:{listener.getsockname()[1]}/x"
    try:
        inspected = conveyor("bundle", "inspect", "sha256:" + "0" * 64, "--store", store)
    finally:
        listener.close()
    assert inspected.code == 4, inspected.stderr
    assert "reading manifest" in inspected.stderr
    assert len(accepted) == 1, "one request, no retry: the caller owns retries"


def test_an_unreachable_registry_exits_4_within_seconds(repo: Path) -> None:
    store = f"127.0.0.1:{free_port()}/x"

    inspected = conveyor("bundle", "inspect", "sha256:" + "0" * 64, "--store", store)
    assert inspected.code == 4, inspected.stderr
    # oras-py's stock client sleeps 3+5+11+... s between retries; Conveyor fails at the first
    # refusal (the bound leaves room for a busy machine's start-up; the test below counts tries).
    assert inspected.seconds < 15
    assert inspected.stdout == ""
    assert store.split("/")[0] in inspected.stderr and "reachable" in inspected.stderr

    built = build(repo, store)
    assert built.code == 4, built.stderr
    assert built.seconds < 15
    assert built.stdout == ""


# --- messages are shown as written ---------------------------------------------------------------


def test_error_messages_are_printed_verbatim(repo: Path, registry_repo: str) -> None:
    """Square brackets in a message are text, not console markup (lint rules, user input)."""
    configmap = repo / SOURCE_PATH / "manifests" / "configmap.yaml"
    configmap.write_text(configmap.read_text() + "  cluster: prod\n")
    commit_all(repo, "hard-code an environment")
    linted = build(repo, registry_repo)
    assert linted.code == 2
    assert "[environment-name]" in linted.stderr

    odd = conveyor("bundle", "inspect", "v1", "--store", "registry.example/a[/b]")
    assert odd.code == 2, odd.stderr
    assert "a[/b]" in odd.stderr and "Traceback" not in odd.stderr


def test_pull_into_a_file_is_bad_input(published: Published, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a folder\n")
    run = conveyor("bundle", "pull", "v1", "--store", published.store, "--out", str(target))
    assert run.code == 2, run.stderr
    assert str(target) in run.stderr and "Traceback" not in run.stderr
    assert target.read_text() == "not a folder\n"
