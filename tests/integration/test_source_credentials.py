"""A source repository URL carrying credentials (`https://user:token@host/...`): the token never
reaches the bundle's immutable source annotation nor the messages of a failed fetch or push."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conveyor.adapters import gitrepo
from conveyor.bundles import artifact
from conveyor.errors import ConveyorError
from tests.support.git import git, init_repository

TOKEN = "ghp_n0tForYourEyes"
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "web"


class _Refusing(BaseHTTPRequestHandler):
    """A git server on 127.0.0.1 that answers every request with 403."""

    def do_GET(self) -> None:
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def test_a_credentialed_origin_is_recorded_without_its_credentials(
    tmp_path: Path, registry_repo: str
) -> None:
    root = tmp_path / "apps"
    shutil.copytree(FIXTURE, root / "web")
    init_repository(root, "first")
    git(root, "remote", "add", "origin", f"https://ci-bot:{TOKEN}@git.example/web.git")
    store = artifact.open_store(registry_repo)

    built = artifact.build(
        str(root),
        "HEAD",
        "web",
        store,
        parameter_sets={"dev": {"image": "registry.example/web", "tag": "1.0.0"}},
    )

    annotations = store.annotations(built.digest)
    assert annotations["org.opencontainers.image.source"] == "https://git.example/web.git"
    manifest, _ = store.pull(built.digest)
    assert TOKEN not in str(manifest)


@pytest.mark.parametrize("kind", ["source", "state"])
def test_a_failed_fetch_never_shows_the_token(
    refusing_server: str, tmp_path: Path, kind: str
) -> None:
    url = f"http://ci-bot:{TOKEN}@{refusing_server}/web.git"
    with pytest.raises(ConveyorError) as raised:
        if kind == "source":
            gitrepo.read_source(url, "main", "web")
        else:
            gitrepo.open_state_repository(url, tmp_path / "work")

    shown = f"{raised.value.message}\n{raised.value.hint}"
    assert refusing_server in shown, shown
    assert TOKEN not in shown and "ci-bot" not in shown, shown
