"""The OCI adapter against a real registry (Debian's docker-registry, CNCF distribution) and skopeo.

Each registry here is started by this module's fixtures in a temporary folder and stopped by pid
afterwards; the session's local platform is not used. Requests are counted with response hooks
on the store's session, so the request budgets below are measured, not assumed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from conveyor.adapters import oci
from conveyor.errors import InputError, IntegrityError, RegistryError
from conveyor.platform import process
from conveyor.platform.components import Registry

TREE = "5e1f" * 16
CREATED = "2024-01-01T00:00:00Z"
USER, PASSWORD = "conveyor", "s3cret-pass"


def _annotations(tree_hash: str = TREE) -> oci.BundleAnnotations:
    return oci.BundleAnnotations(
        name="shop",
        tree_hash=tree_hash,
        source="https://git.example.com/shop.git",
        revision="main@sha1:3f2a",
        created=CREATED,
    )


def _bundle(text: str = "kind: ConfigMap\n" * 100) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


@dataclass
class Requests:
    """Every response seen by one session: (method, status, path after /v2/)."""

    seen: list[tuple[str, int, str]] = field(default_factory=list)

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        url = str(response.request.url)
        self.seen.append(
            (str(response.request.method), response.status_code, url.split("/v2/")[-1])
        )

    def uploads(self) -> list[tuple[str, int, str]]:
        return [r for r in self.seen if "/blobs/uploads/" in r[2]]


def _counted(store: oci.BundleStore) -> Requests:
    assert isinstance(store, oci.RegistryStore)
    counter = Requests()
    store.session.hooks["response"].append(counter.hook)
    return counter


def _blob_file(registry_root: Path, digest: str) -> Path:
    hexdigest = digest.removeprefix("sha256:")
    return registry_root / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A docker-registry of this module's own, without authentication."""
    started = Registry(tmp_path_factory.mktemp("reg"), process.free_port())
    started.up()
    yield started
    started.down()


@pytest.fixture
def repo(registry: Registry) -> str:
    """A repository location no other test uses."""
    return f"{registry.address}/tests/r{uuid.uuid4().hex[:10]}"


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[Registry]:
    """A registry one test may stop and restart."""
    started = Registry(tmp_path / "state", process.free_port())
    started.up()
    yield started
    started.down()


@dataclass
class AuthRegistry:
    address: str
    root: Path


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthRegistry]:
    """A docker-registry that requires htpasswd basic auth (bcrypt cost 4, for speed)."""
    folder = tmp_path_factory.mktemp("authreg")
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", "-C", "4", USER, PASSWORD],
        capture_output=True,
        text=True,
        check=True,
    )
    (folder / "htpasswd").write_text(htpasswd.stdout)
    address = f"127.0.0.1:{process.free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(folder / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": address, "secret": "conveyor-test"},
        "auth": {"htpasswd": {"realm": "conveyor-test", "path": str(folder / "htpasswd")}},
    }
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    record = process.spawn(
        "auth-registry",
        ["docker-registry", "serve", str(folder / "config.yml")],
        pidfile=folder / "registry.pid",
        logfile=folder / "registry.log",
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1)
            except urllib.error.HTTPError as error:
                if error.code == 401:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, process.log_tail(folder / "registry.log")
            time.sleep(0.1)
        yield AuthRegistry(address, folder / "data")
    finally:
        process.stop(record)


# --- push, pull, reuse, tag ------------------------------------------------------------------


def test_push_then_pull_by_digest(repo: str, registry: Registry) -> None:
    store = oci.open_store(repo)
    bundle = _bundle()
    digest = store.push(bundle, _annotations(), ["dev"])

    manifest, content = store.pull(digest)
    assert content == bundle
    assert manifest["config"]["mediaType"] == oci.CONFIG_MEDIA_TYPE
    assert manifest["layers"][0]["mediaType"] == oci.LAYER_MEDIA_TYPE
    assert manifest["annotations"][oci.ANNOTATION_TREE_HASH] == TREE
    assert store.resolve("dev") == digest
    assert store.list_tags() == ["dev", oci.tree_tag(TREE)]
    # What the registry stores and serves is our canonical serialization, byte for byte.
    stored = _blob_file(registry.root / "data", digest).read_bytes()
    assert stored == oci.build_manifest(bundle, _annotations())


def test_same_inputs_give_the_same_digest_everywhere(repo: str, tmp_path: Path) -> None:
    store = oci.open_store(repo)
    digest = store.push(_bundle(), _annotations(), ["dev"])
    assert oci.open_store(repo + "-other").push(_bundle(), _annotations()) == digest
    assert oci.open_store(f"oci:{tmp_path}").push(_bundle(), _annotations()) == digest

    counter = _counted(store)
    assert store.push(_bundle(), _annotations(), ["dev"]) == digest
    assert counter.uploads() == [], "a second push finds both blobs with HEAD and uploads none"
    assert [(m, s) for m, s, _ in counter.seen] == [
        ("HEAD", 200),
        ("HEAD", 200),
        ("PUT", 201),
        ("PUT", 201),
    ]


def test_reuse_check_is_one_read_and_uploads_nothing(repo: str) -> None:
    store = oci.open_store(repo)
    assert store.find_by_tree_hash(TREE) is None, "an empty repository has no bundle"
    digest = store.push(_bundle(), _annotations())
    counter = _counted(store)

    timings = []
    for _ in range(20):
        counter.seen.clear()
        started = time.perf_counter()
        found = store.find_by_tree_hash(TREE)
        timings.append((time.perf_counter() - started) * 1000)
        assert found == digest
        assert counter.seen == [("GET", 200, f"{repo.split('/', 1)[1]}/manifests/tree-{TREE[:40]}")]

    counter.seen.clear()
    assert store.find_by_tree_hash("f" * 64) is None
    assert [(m, s) for m, s, _ in counter.seen] == [("GET", 404)]
    median = sorted(timings)[len(timings) // 2]
    print(f"\nreuse check: 1 request, median {median:.1f} ms, max {max(timings):.1f} ms")
    assert median < 200


def test_tag_move_costs_two_requests_and_keeps_other_tags(repo: str, registry: Registry) -> None:
    store = oci.open_store(repo)
    first = store.push(_bundle("one"), _annotations(), ["dev", "staging"])
    second = store.push(_bundle("two"), _annotations("f" * 64), ["dev"])
    counter = _counted(store)

    store.tag(first, "prod")
    assert [(m, s) for m, s, _ in counter.seen] == [("GET", 200), ("PUT", 201)]
    counter.seen.clear()
    store.tag(second, "staging")
    assert [(m, s) for m, s, _ in counter.seen] == [("GET", 200), ("PUT", 201)]
    print(f"\ntag move: {len(counter.seen)} requests: {counter.seen}")

    assert store.resolve("prod") == first
    assert store.resolve("staging") == second
    assert store.resolve("dev") == second
    assert store.resolve(oci.tree_tag(TREE)) == first, "the old bundle keeps its other tags"
    assert store.pull(first)[1] == _bundle("one")


def test_missing_tag_and_digest_are_input_errors(repo: str) -> None:
    store = oci.open_store(repo)
    with pytest.raises(InputError, match="no bundle is tagged 'prod'"):
        store.resolve("prod")
    with pytest.raises(InputError, match="no bundle has digest"):
        store.pull("sha256:" + "0" * 64)
    assert store.list_tags() == [], "a repository that does not exist yet has no tags"


def test_skopeo_reads_our_layout_folder_and_registry(tmp_path: Path, repo: str) -> None:
    folder = tmp_path / "layout"
    layout = oci.open_store(f"oci:{folder}")
    digest = layout.push(_bundle(), _annotations(), ["dev"])

    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{folder}:dev"], capture_output=True, check=True
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest

    # skopeo copies the layout into the registry without changing a byte; we pull it back.
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--preserve-digests",
            f"oci:{folder}:dev",
            f"docker://{repo}:dev",
        ],
        capture_output=True,
        check=True,
    )
    registry_store = oci.open_store(repo)
    assert registry_store.resolve("dev") == digest
    assert registry_store.pull(digest)[1] == _bundle()
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{repo}:dev"],
        capture_output=True,
        check=True,
    ).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest


# --- integrity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [lambda data: bytes([data[0] ^ 1]) + data[1:], lambda data: data + b"extra"],
    ids=["same-size", "longer"],
)
def test_tampered_layer_in_registry_storage_is_detected(
    repo: str, registry: Registry, tamper: Callable[[bytes], bytes]
) -> None:
    store = oci.open_store(repo)
    bundle = _bundle()
    digest = store.push(bundle, _annotations())
    layer = _blob_file(registry.root / "data", oci.sha256_digest(bundle))
    original = layer.read_bytes()
    layer.write_bytes(tamper(original))
    try:
        with pytest.raises(IntegrityError) as raised:
            store.pull(digest)
        message = str(raised.value)
        assert repo.split("/", 1)[1] in message and digest in message
        assert registry.address in message
    finally:
        layer.write_bytes(original)


def test_tampered_manifest_in_registry_storage_is_detected(repo: str, registry: Registry) -> None:
    store = oci.open_store(repo)
    digest = store.push(_bundle(), _annotations(), ["dev"])
    manifest = _blob_file(registry.root / "data", digest)
    manifest.write_bytes(manifest.read_bytes().replace(b"shop", b"sh0p"))

    with pytest.raises(IntegrityError, match=f"the manifest read for {digest}"):
        store.pull(digest)
    counter = _counted(store)
    with pytest.raises(IntegrityError):
        store.tag(digest, "prod")
    assert [m for m, _, _ in counter.seen] == ["GET"], "nothing is written from bad bytes"


# --- failures: down, killed mid-push, slow, HTTP 500 ------------------------------------------


def test_registry_that_is_down_fails_in_seconds() -> None:
    store = oci.open_store(f"127.0.0.1:{process.free_port()}/tests/down")
    operations: list[tuple[str, Callable[[], object]]] = [
        ("uploading blob", lambda: store.push(_bundle(), _annotations(), ["dev"])),
        ("reading manifest", lambda: store.find_by_tree_hash(TREE)),
        ("reading manifest", lambda: store.resolve("dev")),
        ("reading manifest", lambda: store.pull("sha256:" + "0" * 64)),
        ("listing tags", store.list_tags),
    ]
    for operation, call in operations:
        started = time.monotonic()
        with pytest.raises(RegistryError) as raised:
            call()
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"{operation} took {elapsed:.1f}s to fail"
        message = str(raised.value)
        assert operation in message and "tests/down" in message and "127.0.0.1" in message
        assert raised.value.hint and "up and reachable" in raised.value.hint
        print(f"\ndown registry, {operation}: RegistryError after {elapsed * 1000:.0f} ms")


@pytest.mark.parametrize("blobs_before_kill", [1, 2])
def test_registry_killed_mid_push_leaves_nothing_pullable(
    own_registry: Registry, blobs_before_kill: int
) -> None:
    location = f"{own_registry.address}/tests/killed"
    store = oci.open_store(location)
    counter = _counted(store)
    finished_uploads = 0
    killed_at: list[float] = []

    def kill_after_upload(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        nonlocal finished_uploads
        if response.request.method == "PUT" and "/blobs/uploads/" in str(response.request.url):
            finished_uploads += 1
            if finished_uploads == blobs_before_kill:
                own_registry.down()
                killed_at.append(time.monotonic())

    assert isinstance(store, oci.RegistryStore)
    store.session.hooks["response"].append(kill_after_upload)
    bundle = _bundle()
    with pytest.raises(RegistryError) as raised:
        store.push(bundle, _annotations(), ["dev"])
    after_kill = time.monotonic() - killed_at[0]
    assert after_kill < 5
    print(
        f"\nkilled after {blobs_before_kill} blob(s): RegistryError {after_kill * 1000:.0f} ms on"
    )
    assert not any("/manifests/" in path for _, _, path in counter.seen)
    expected = "uploading blob" if blobs_before_kill == 1 else "writing manifest under tag dev"
    assert expected in str(raised.value)

    own_registry.up()
    fresh = oci.open_store(location)
    with pytest.raises(InputError, match="no bundle is tagged 'dev'"):
        fresh.resolve("dev")
    assert fresh.find_by_tree_hash(TREE) is None
    with pytest.raises(InputError, match="no bundle has digest"):
        fresh.pull(oci.sha256_digest(oci.build_manifest(bundle, _annotations())))
    assert fresh.list_tags() == []


class _FakeRegistry(http.server.BaseHTTPRequestHandler):
    """Answers every request with HTTP 500, or never answers, or trickles a body one byte at a
    time, as the server says."""

    def do_request(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        if self.server.silent:  # type: ignore[attr-defined]
            time.sleep(3)
            return
        if self.server.trickle:  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(40):  # a byte well within every read timeout, for 8 s in all
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
            return
        body = json.dumps({"errors": [{"code": "UNKNOWN", "message": "disk on fire"}]}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_request

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def fake_registry() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeRegistry)
    server.hits = 0  # type: ignore[attr-defined]
    server.silent = False  # type: ignore[attr-defined]
    server.trickle = False  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_http_500_is_not_retried(fake_registry: http.server.ThreadingHTTPServer) -> None:
    port = fake_registry.server_address[1]
    store = oci.open_store(f"127.0.0.1:{port}/tests/fire")
    started = time.monotonic()
    with pytest.raises(RegistryError, match="HTTP 500: UNKNOWN: disk on fire"):
        store.resolve("dev")
    assert time.monotonic() - started < 2
    assert fake_registry.hits == 1  # type: ignore[attr-defined]


def test_a_registry_that_never_answers_times_out(
    fake_registry: http.server.ThreadingHTTPServer,
) -> None:
    fake_registry.silent = True  # type: ignore[attr-defined]
    port = fake_registry.server_address[1]
    store = oci.open_store(f"127.0.0.1:{port}/tests/silent", read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="no answer in time"):
        store.find_by_tree_hash(TREE)
    assert time.monotonic() - started < 2
    assert fake_registry.hits == 1  # type: ignore[attr-defined]


def test_a_registry_that_trickles_is_cut_at_the_transfer_deadline(
    fake_registry: http.server.ThreadingHTTPServer,
) -> None:
    fake_registry.trickle = True  # type: ignore[attr-defined]
    port = fake_registry.server_address[1]
    store = oci.open_store(
        f"127.0.0.1:{port}/tests/trickle", read_timeout=0.5, transfer_deadline=1.0
    )
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"reading manifest .* longer than 1s in all"):
        store.pull("sha256:" + "ab" * 32)
    assert time.monotonic() - started < 2.5


def test_connect_timeout_is_short() -> None:
    """A listener with a full accept queue drops new connections; the connect timeout bounds it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers: list[socket.socket] = []
        try:
            while len(fillers) < 8:
                filler = socket.socket()
                fillers.append(filler)
                filler.settimeout(0.2)
                try:
                    filler.connect(address)
                except TimeoutError:
                    break
            else:
                pytest.fail("the kernel kept accepting connections; cannot simulate a dead host")
            store = oci.open_store(f"127.0.0.1:{address[1]}/tests/slow", connect_timeout=0.5)
            started = time.monotonic()
            with pytest.raises(RegistryError, match="no answer in time"):
                store.list_tags()
            assert time.monotonic() - started < 2
        finally:
            for filler in fillers:
                filler.close()


# --- basic auth against htpasswd -------------------------------------------------------------


def test_wrong_password_is_an_authentication_error(auth_registry: AuthRegistry) -> None:
    location = f"{auth_registry.address}/tests/auth"
    for store in (
        oci.open_store(location, username=USER, password="wrong"),
        oci.open_store(location),
    ):
        counter = _counted(store)
        with pytest.raises(RegistryError, match="authentication failed") as raised:
            store.push(_bundle(), _annotations(), ["dev"])
        assert auth_registry.address in str(raised.value)
        assert raised.value.hint and "username and password" in raised.value.hint
        assert len(counter.seen) == 1, "the first 401 stops the push; nothing is re-sent"


def test_right_password_works_without_a_single_401(auth_registry: AuthRegistry) -> None:
    store = oci.open_store(f"{auth_registry.address}/tests/auth", username=USER, password=PASSWORD)
    counter = _counted(store)
    bundle = _bundle()
    digest = store.push(bundle, _annotations(), ["dev"])
    assert store.find_by_tree_hash(TREE) == digest
    store.tag(digest, "prod")
    assert store.pull(digest)[1] == bundle
    assert store.list_tags() == ["dev", "prod", oci.tree_tag(TREE)]

    statuses = [status for _, status, _ in counter.seen]
    assert 401 not in statuses
    puts = [path for method, _, path in counter.seen if method == "PUT" and "uploads" in path]
    assert len(puts) == 2, "each blob was sent exactly once"
    print(f"\nauthenticated: {len(counter.seen)} requests, none answered 401")


# --- tag list pagination: links stay on the registry -----------------------------------------


class _PagedTags(http.server.BaseHTTPRequestHandler):
    """A tag list in pages: page 1 answers tag `one` and a `Link: next` to `server.next_link`;
    every request is recorded with its Authorization header."""

    def do_GET(self) -> None:
        server: Any = self.server
        server.seen.append((self.path, self.headers.get("Authorization")))
        last = "last=one" in self.path
        body = json.dumps({"name": "tests/paged", "tags": ["two"] if last else ["one"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if not last:
            self.send_header("Link", f'<{server.next_link}>; rel="next"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def paged_servers() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    """Two tag-list servers on 127.0.0.1, each on a port of its own."""
    servers = []
    for _ in range(2):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PagedTags)
        server.daemon_threads = True
        server.seen = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_next_link_on_the_same_registry_is_followed(
    paged_servers: list[http.server.ThreadingHTTPServer],
) -> None:
    registry = paged_servers[0]
    registry.next_link = "/v2/tests/paged/tags/list?n=1000&last=one"  # type: ignore[attr-defined]
    store = oci.open_store(f"127.0.0.1:{registry.server_address[1]}/tests/paged")

    assert store.list_tags() == ["one", "two"]


@pytest.mark.parametrize(
    "elsewhere",
    [
        "http://{other}/v2/tests/paged/tags/list?last=one",
        "https://{this}/v2/tests/paged/tags/list?last=one",
    ],
)
def test_a_next_link_to_another_host_port_or_scheme_is_refused_and_gets_no_credentials(
    paged_servers: list[http.server.ThreadingHTTPServer], elsewhere: str
) -> None:
    registry, other = paged_servers
    this_address = f"127.0.0.1:{registry.server_address[1]}"
    link = elsewhere.format(other=f"127.0.0.1:{other.server_address[1]}", this=this_address)
    registry.next_link = link  # type: ignore[attr-defined]
    store = oci.open_store(f"{this_address}/tests/paged", username=USER, password=PASSWORD)

    with pytest.raises(RegistryError, match="another") as raised:
        store.list_tags()

    assert link in str(raised.value)
    assert other.seen == [], "nothing, and no credentials, went to the other server"  # type: ignore[attr-defined]
    assert len(registry.seen) == 1  # type: ignore[attr-defined]
