"""Resolving image tags to digests against real HTTP servers: the platform's registry (CNCF
distribution), and small registries written here for what it does not do (token challenges,
HEAD answers without a digest header, mirrors that are down)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import ClassVar

import pytest

from conveyor.adapters.image_registry import ImageRegistries, parse_mirrors, push_small_image
from conveyor.errors import InputError, RegistryError
from conveyor.platform.local import LocalPlatform
from conveyor.platform.process import free_port

MANIFEST = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class _FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Serves `team/app:1` only. `token` set: answers 401 with a Bearer challenge unless the
    request carries that token, which its /token endpoint hands out. `digest_header` unset:
    leaves Docker-Content-Digest out, as some registries do."""

    token: ClassVar[str | None] = None
    digest_header: ClassVar[bool] = True

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, with_body: bool) -> None:
        if self.path.startswith("/token"):
            body = b'{"token": "%s"}' % (self.token or "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            port = self.server.server_address[1]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate",
                f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                'scope="repository:team/app:pull"',
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path != "/v2/team/app/manifests/1":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if self.digest_header:
            self.send_header("Docker-Content-Digest", MANIFEST_DIGEST)
        self.send_header("Content-Length", str(len(MANIFEST)))
        self.end_headers()
        if with_body:
            self.wfile.write(MANIFEST)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)


@contextmanager
def fake_registry(*, token: str | None = None, digest_header: bool = True) -> Iterator[str]:
    handler = type("Handler", (_FakeRegistry,), {"token": token, "digest_header": digest_header})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_tag_resolves_with_one_head_request() -> None:
    registries = ImageRegistries()
    with fake_registry() as host:
        assert registries.digest(host, "team/app", "1") == MANIFEST_DIGEST
    assert registries.requests_made == 1


def test_a_head_answer_without_a_digest_is_hashed_from_the_manifest() -> None:
    with fake_registry(digest_header=False) as host:
        assert ImageRegistries().digest(host, "team/app", "1") == MANIFEST_DIGEST


def test_a_token_challenge_is_answered_with_the_token_service() -> None:
    registries = ImageRegistries()
    with fake_registry(token="t0k3n") as host:
        assert registries.digest(host, "team/app", "1") == MANIFEST_DIGEST
    assert registries.requests_made == 3, "HEAD (401), token, HEAD with the token"


def test_a_mirror_is_asked_first_and_the_registry_when_the_mirror_lacks_the_tag() -> None:
    with fake_registry() as mirror, fake_registry() as upstream:
        registries = ImageRegistries(mirrors={"*": mirror})
        assert registries.digest(upstream, "team/app", "1") == MANIFEST_DIGEST
        assert registries.requests_made == 1, "the mirror had it"
        with pytest.raises(InputError, match=r"team/app:2: the tag does not exist") as missing:
            registries.digest(upstream, "team/app", "2")
        assert mirror in str(missing.value) and upstream in str(missing.value)


def test_a_mirror_that_is_down_falls_back_and_all_down_names_each_place() -> None:
    down = f"127.0.0.1:{free_port()}"
    with fake_registry() as upstream:
        registries = ImageRegistries(mirrors=parse_mirrors(f"{upstream}={down}", "test"))
        assert registries.digest(upstream, "team/app", "1") == MANIFEST_DIGEST
    also_down = f"127.0.0.1:{free_port()}"
    registries = ImageRegistries(mirrors={"*": down})
    with pytest.raises(RegistryError) as failed:
        registries.digest(also_down, "team/app", "1")
    message = str(failed.value)
    assert f"{down}: cannot connect" in message and f"{also_down}: cannot connect" in message
    assert "images.unpinned" in message


@pytest.mark.parametrize("text", ["registry.example", "=x", "a=b/c", "a="])
def test_mirror_settings_that_are_not_registry_equals_mirror_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="is not registry=mirror"):
        parse_mirrors(text, "$CONVEYOR_IMAGE_MIRRORS")


def test_a_pushed_image_resolves_and_a_moved_tag_resolves_to_the_new_digest(
    platform: LocalPlatform,
) -> None:
    host = platform.registry.address
    first = push_small_image(host, "tests/moving", "stable", "one")
    assert ImageRegistries().digest(host, "tests/moving", "stable") == first
    second = push_small_image(host, "tests/moving", "stable", "two")
    assert second != first
    assert ImageRegistries().digest(host, "tests/moving", "stable") == second


def _push_same_image(host_and_repository: tuple[str, str]) -> str:
    host, repository = host_and_repository
    try:
        return push_small_image(host, repository, "v1", "the same content")
    except RegistryError as error:
        return f"failed: {error}"


def test_the_same_image_pushed_by_several_processes_at_once_is_pushed_once_for_all(
    platform: LocalPlatform,
) -> None:
    """Test workers (and two `up`s) push the same stand-in images at once: the registry then
    refuses a blob upload whose blob another writer is committing (HTTP 400); the push must
    still succeed for everyone."""
    host = platform.registry.address
    for _ in range(8):
        repository = f"tests/raced-{uuid.uuid4().hex[:8]}"
        with ProcessPoolExecutor(6) as pool:
            pushed = set(pool.map(_push_same_image, [(host, repository)] * 6))
        assert len(pushed) == 1 and next(iter(pushed)).startswith("sha256:"), pushed
        assert ImageRegistries().digest(host, repository, "v1") in pushed


def test_tags_are_listed_from_the_mirror_that_has_the_repository(platform: LocalPlatform) -> None:
    host = platform.registry.address
    repository = f"tests/listed-{uuid.uuid4().hex[:8]}"
    for tag in ("1.0.0", "1.10.0", "latest"):
        push_small_image(host, repository, tag, tag)
    registries = ImageRegistries(mirrors={"*": host})
    assert sorted(registries.tags("registry.example", repository)) == ["1.0.0", "1.10.0", "latest"]
    with pytest.raises(RegistryError, match=r"could not list its tags .*no such repository"):
        registries.tags(host, "tests/never-pushed")
