"""Reading app sources from real git repositories (a local path and a file:// URL)."""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters import gitrepo
from conveyor.errors import InfrastructureError, SourceError, StateError
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


# --- refs that crash GitPython's parser, remotes that hang, state clones and their lock ---------


@pytest.mark.parametrize(
    "ref",
    [
        "@{-1}",
        "@{-1}~1",
        "HEAD@{99}",
        "HEAD@{-1}",
        "HEAD@{}",
        "main@{upstream}",
        "HEAD:manifests",
        "HEAD^{tree}",
        "~",
        "HEAD~" + "9" * 5000,
        "--upload-pack=touch",
    ],
)
def test_a_ref_that_names_no_commit_is_refused_naming_it(repo: Path, ref: str) -> None:
    with pytest.raises(SourceError, match="does not exist") as raised:
        gitrepo.read_source(str(repo), ref, "web")

    assert raised.value.exit_code == 2
    assert repr(ref) in raised.value.message


class _Silent:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed: stop
                return
            self.held.append(connection)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)
        for connection in self.held:
            connection.close()


@pytest.fixture
def silent_remote() -> Iterator[_Silent]:
    server = _Silent()
    yield server
    server.close()


@pytest.mark.parametrize("scheme", ["http", "git"])
def test_a_source_remote_that_never_answers_fails_within_the_timeout(
    silent_remote: _Silent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    url = f"{scheme}://127.0.0.1:{silent_remote.port}/apps.git"

    started = time.monotonic()
    with pytest.raises(InfrastructureError, match="did not complete in 2 s") as raised:
        gitrepo.read_source(url, "main", "web", timeout=2)
    elapsed = time.monotonic() - started

    assert url in raised.value.message
    assert elapsed < 4, f"the 2 s timeout held: {elapsed:.1f}s"


def test_a_source_remote_asking_for_a_password_fails_without_prompting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GIT_ASKPASS", "/bin/false-askpass-must-not-run")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AuthRequired)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/apps.git"
    try:
        started = time.monotonic()
        with pytest.raises(InfrastructureError) as raised:
            gitrepo.read_source(url, "main", "web", timeout=20)
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    assert "could not read Username" in raised.value.message, raised.value.message
    assert "false-askpass-must-not-run" not in raised.value.message
    assert elapsed < 5, elapsed


class _AuthRequired(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_state_remote_that_never_answers_fails_within_the_timeout(
    silent_remote: _Silent, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{silent_remote.port}/state.git"

    started = time.monotonic()
    with pytest.raises(StateError, match="did not complete in 2 s") as raised:
        gitrepo.open_state_repository(url, tmp_path / "work", network_timeout=2)
    elapsed = time.monotonic() - started

    assert url in raised.value.message
    assert elapsed < 4, f"the 2 s timeout held: {elapsed:.1f}s"


def test_state_clones_live_in_a_private_folder_of_the_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir(mode=0o755)

    repository = gitrepo.open_state_repository(str(tmp_path / "state.git"))
    repository.commit_files({"a.txt": b"a\n"}, "add a", gitrepo.Author("t", "t@example.com"))

    folder = tmp_path / "cache" / "state"
    assert folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert any(folder.iterdir()), "the working clone and its lock are there"


def test_a_state_folder_open_to_others_is_made_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "state").mkdir(parents=True, mode=0o777)
    (tmp_path / "cache" / "state").chmod(0o777)

    gitrepo.open_state_repository(str(tmp_path / "state.git"))

    assert stat.S_IMODE((tmp_path / "cache" / "state").stat().st_mode) == 0o700


def test_the_host_lock_times_out_naming_the_lock_file(tmp_path: Path) -> None:
    repository = gitrepo.open_state_repository(
        str(tmp_path / "state.git"), tmp_path / "work", lock_timeout=1
    )
    repository.commit_files({"a.txt": b"a\n"}, "add a", gitrepo.Author("t", "t@e.com"))
    [lock_file] = (tmp_path / "work").glob("*.lock")
    with lock_file.open("a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another writer on this host, stuck
        started = time.monotonic()
        with pytest.raises(StateError, match="waited 1 s for the lock") as raised:
            repository.commit_files({"b.txt": b"b\n"}, "add b", gitrepo.Author("t", "t@e.com"))
        elapsed = time.monotonic() - started

    assert str(lock_file) in raised.value.message
    assert elapsed < 2.5, elapsed
    repository.commit_files({"b.txt": b"b\n"}, "add b", gitrepo.Author("t", "t@e.com"))
    assert repository.read("b.txt") == b"b\n", "the lock, once free, is taken again"
