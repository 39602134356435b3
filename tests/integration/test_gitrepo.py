"""Reading app sources from real git repositories (a local path and a file:// URL)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.adapters import gitrepo
from conveyor.errors import SourceError
from tests.support.git import git, init_repository


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "apps"
    (root / "web" / "manifests").mkdir(parents=True)
    (root / "web" / "bundle.yaml").write_text("name: web\n")
    (root / "web" / "manifests" / "cm.yaml").write_text("kind: ConfigMap\n")
    (root / "web" / "run.sh").write_text("#!/bin/sh\n")
    (root / "web" / "run.sh").chmod(0o755)
    (root / "other.txt").write_text("not in the source\n")
    init_repository(root, "first")
    git(root, "tag", "v1")
    (root / "web" / "manifests" / "cm.yaml").write_text("kind: ConfigMap # changed\n")
    git(root, "commit", "-qam", "second")
    return root


def test_reads_a_subfolder_at_a_ref_from_the_commit_not_the_work_tree(repo: Path) -> None:
    (repo / "web" / "manifests" / "cm.yaml").write_text("uncommitted edit\n")

    first = gitrepo.read_source(str(repo), "v1", "web")
    latest = gitrepo.read_source(str(repo), "main", "web")

    assert first.commit == git(repo, "rev-parse", "v1")
    assert [f.path for f in first.files] == ["bundle.yaml", "manifests/cm.yaml", "run.sh"]
    contents = {f.path: f.content for f in first.files}
    assert contents["manifests/cm.yaml"] == b"kind: ConfigMap\n"
    assert {f.path: f.content for f in latest.files}["manifests/cm.yaml"] == (
        b"kind: ConfigMap # changed\n"
    )
    assert {f.path: f.executable for f in first.files} == {
        "bundle.yaml": False,
        "manifests/cm.yaml": False,
        "run.sh": True,
    }


def test_reads_a_remote_repository_through_a_cached_mirror(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    snapshot = gitrepo.read_source(f"file://{repo}", "main", "web")
    assert snapshot.commit == git(repo, "rev-parse", "main")
    assert len(list((tmp_path / "cache" / "git").iterdir())) == 1

    (repo / "web" / "bundle.yaml").write_text("name: web2\n")
    git(repo, "commit", "-qam", "third")
    again = gitrepo.read_source(f"file://{repo}", "main", "web")
    assert again.commit == git(repo, "rev-parse", "main"), "the mirror is fetched on each read"


@pytest.mark.parametrize(
    ("ref", "subpath", "message"),
    [
        ("no-such-ref", "web", "ref 'no-such-ref' does not exist"),
        ("main", "missing", "no folder 'missing'"),
        ("main", "other.txt", "is not a folder"),
        ("main", "../etc", "must be relative and stay inside"),
        ("main", "/web", "must be relative and stay inside"),
    ],
    ids=["unknown-ref", "missing-folder", "file-not-folder", "escaping", "absolute"],
)
def test_bad_references_name_what_is_wrong(
    repo: Path, ref: str, subpath: str, message: str
) -> None:
    with pytest.raises(SourceError, match=message):
        gitrepo.read_source(str(repo), ref, subpath)


def test_symlinks_in_a_source_are_refused(repo: Path) -> None:
    os.symlink("/etc/passwd", repo / "web" / "manifests" / "link.yaml")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "symlink")
    with pytest.raises(SourceError, match=r"manifests/link.yaml is a symlink"):
        gitrepo.read_source(str(repo), "main", "web")


def test_a_folder_that_is_not_a_repository_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is not a git repository"):
        gitrepo.read_source(str(tmp_path), "main")
    with pytest.raises(SourceError, match="no such path"):
        gitrepo.read_source(str(tmp_path / "nope"), "main")
