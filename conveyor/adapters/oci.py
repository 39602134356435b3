"""Bundles as OCI artifacts: push, find by source tree, resolve, pull and verify, tag.

Why this module exists: a bundle's identity is its OCI manifest digest, and every stage pulls the
bundle by that digest. So the digest must be the same for the same inputs on every machine, every
byte read back must be checked against the digest it was addressed by, and promotion (adding a
tag) must never change the manifest. This is the only module that imports `oras`; everything
else sees `BundleStore` and Conveyor's own errors.

Artifact format (what Flux's `flux push artifact` produces, so Flux and skopeo read ours):
manifest `application/vnd.oci.image.manifest.v1+json`, config
`application/vnd.cncf.flux.config.v1+json` holding `{}`, one layer
`application/vnd.cncf.flux.content.v1.tar+gzip`, and the manifest annotations
`org.opencontainers.image.{source,revision,created}`, `dev.conveyor.bundle.name` and
`dev.conveyor.bundle.tree-hash`. We serialize the manifest ourselves, canonically (sorted keys,
no whitespace, UTF-8), and every push also tags it `tree-<first 40 hex of the tree hash>`, so the
reuse check is one manifest GET and uploads nothing.

Two backends behind `BundleStore`, chosen by `open_store(location)`:
- `host[:port]/repository`: an OCI registry (plain HTTP for 127.0.0.1/localhost, HTTPS otherwise,
  optional basic auth);
- `oci:/path/to/folder`: an OCI image layout folder (the embedded default), readable by skopeo.

What we take from oras-py, and what we do not:
- taken: `oras.provider.Registry` for its session (cookies ignored), created with the `basic`
  auth backend so oras's token auth (which takes a Basic realm for a URL) never runs;
  `oras.container.Container` for the v2 URLs; `upload_blob` (HEAD first, then POST + PUT, with the
  Location header made absolute) and `get_blob`, which send bytes as they are.
- replaced: `do_request`. The stock one retries any failure, HTTP 500 included, sleeping
  3+5+11+29+83 s, and answers a 401 by re-sending the request (a whole blob). Ours sends each
  request once, with a short connect timeout, basic credentials set on the session up front, and
  raises `requests.HTTPError` for every status >= 400 except 404 (which callers read as "absent").
- not used: `get_manifest`/`upload_manifest` (they re-serialize JSON, which changes the digest, and
  force the media type), `push`/`pull` (title annotations, no digest checks, and they read docker
  config files), `get_tags` (a repository without tags is a 404 it cannot tell from a failure) and
  `delete_tag` (it deletes the manifest by digest, so every other tag on it goes too). Manifests
  and the tag list go through the same session as raw requests.

Every oras/requests failure is translated once, in `RegistryStore._errors`, into RegistryError
(infrastructure) naming the registry, repository and operation; content that does not match its
digest is an IntegrityError; a malformed location, tag, digest or a missing bundle is an InputError.
Nothing is retried here: the caller (a Prefect task) owns retries, and a user hears about a
registry that is down within seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oras.container
import oras.provider
import requests
import urllib3

from conveyor.errors import InputError, IntegrityError, RegistryError
from conveyor.kit.digests import DIGEST, canonical_json, check_digest, sha256_digest
from conveyor.kit.redaction import without_userinfo
from conveyor.kit.syntax import REGISTRY_HOST, REPOSITORY, parse_rfc3339

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"

ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_NAME = "dev.conveyor.bundle.name"
ANNOTATION_TREE_HASH = "dev.conveyor.bundle.tree-hash"
ANNOTATION_IMAGES = "dev.conveyor.bundle.images"
"""The pinned images, `reference@digest` joined by commas (the layer's lock file holds the same)."""
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

CONFIG_BYTES = b"{}"
TREE_TAG_PREFIX = "tree-"
TREE_TAG_HEX = 40

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_TREE_HASH = re.compile(r"(?:[a-z0-9]+:)?(?P<hex>[0-9a-f]{40,128})")
_PLAIN_HTTP_HOSTS = ("127.0.0.1", "localhost")
# Manifest types we ask for: ours, plus the others a registry may hold under a tag, so that a
# foreign artifact is reported as "not a bundle" rather than as "not found".
_MANIFEST_ACCEPT = ", ".join(
    (
        MANIFEST_MEDIA_TYPE,
        INDEX_MEDIA_TYPE,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
_MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class BundleAnnotations:
    """The manifest annotations of one bundle; `created` is fixed by the caller (RFC 3339)."""

    name: str
    tree_hash: str
    source: str
    revision: str
    created: str
    images: str = ""

    @classmethod
    def from_dict(cls, annotations: dict[str, str]) -> BundleAnnotations:
        """The annotations a bundle's manifest carries (KeyError for a missing required one)."""
        return cls(
            name=annotations[ANNOTATION_NAME],
            tree_hash=annotations[ANNOTATION_TREE_HASH],
            source=annotations[ANNOTATION_SOURCE],
            revision=annotations[ANNOTATION_REVISION],
            created=annotations[ANNOTATION_CREATED],
            images=annotations.get(ANNOTATION_IMAGES, ""),
        )

    def to_dict(self) -> dict[str, str]:
        """The annotations as they appear in the manifest, after validating every field."""
        for field_name in ("name", "source", "revision"):
            if not getattr(self, field_name):
                raise InputError(f"bundle annotations: `{field_name}` is empty")
        if parse_rfc3339(self.created) is None:
            raise InputError(
                f"bundle annotations: `created` is {self.created!r}, not an RFC 3339 timestamp",
                hint="pass a fixed time such as the commit time, e.g. 2024-01-01T00:00:00Z",
            )
        tree_tag(self.tree_hash)
        return {
            ANNOTATION_CREATED: self.created,
            ANNOTATION_NAME: self.name,
            ANNOTATION_REVISION: self.revision,
            ANNOTATION_SOURCE: without_userinfo(self.source),
            ANNOTATION_TREE_HASH: self.tree_hash,
        } | ({ANNOTATION_IMAGES: self.images} if self.images else {})


def tree_tag(tree_hash: str) -> str:
    """The tag every push of a bundle built from `tree_hash` carries: `tree-<first 40 hex>`."""
    match = _TREE_HASH.fullmatch(tree_hash)
    if not match:
        raise InputError(
            f"bundle tree hash {tree_hash!r} is not a lowercase hex digest "
            "(at least 40 hex digits, optionally prefixed `<algorithm>:`)",
        )
    return TREE_TAG_PREFIX + match["hex"][:TREE_TAG_HEX]


def build_manifest(bundle: bytes, annotations: BundleAnnotations) -> bytes:
    """The canonical manifest bytes of a bundle (its digest is the bundle's identity)."""
    if bundle[:2] != b"\x1f\x8b":
        raise InputError(
            f"bundle {annotations.name!r}: the content is not gzip data",
            hint="pass the packed tar.gz bytes, not the tar or the source folder",
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": _descriptor(CONFIG_MEDIA_TYPE, CONFIG_BYTES),
        "layers": [_descriptor(LAYER_MEDIA_TYPE, bundle)],
        "annotations": annotations.to_dict(),
    }
    return canonical_json(manifest)


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def _check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InputError(
            f"{tag!r} is not a valid OCI tag",
            hint="use up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -",
        )
    return tag


def is_plain_http_host(host: str) -> bool:
    """Whether the registry at `host[:port]` is spoken to in plain HTTP (loopback only)."""
    return host.rsplit(":", 1)[0] in _PLAIN_HTTP_HOSTS


@dataclass(frozen=True)
class RegistryLocation:
    """`host[:port]/repository` of an OCI registry."""

    host: str
    repository: str

    @property
    def plain_http(self) -> bool:
        return is_plain_http_host(self.host)

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class LayoutLocation:
    """`oci:<folder>`, an OCI image layout folder."""

    folder: Path

    def __str__(self) -> str:
        return f"oci:{self.folder}"


def parse_location(location: str) -> RegistryLocation | LayoutLocation:
    """Parse `host[:port]/repository` or `oci:<folder>`; raise InputError saying what is wrong."""
    example = "write `registry.example.com/team/bundles`, `127.0.0.1:5000/bundles` or `oci:/path`"
    if location.startswith("oci:"):
        folder = location[len("oci:") :]
        if not folder:
            raise InputError(f"bundle location {location!r} names no folder", hint=example)
        return LayoutLocation(Path(folder))
    if "://" in location:
        raise InputError(
            f"bundle location {location!r} has a URL scheme; give host and repository only",
            hint=f"{example} (plain HTTP is used for 127.0.0.1 and localhost, HTTPS otherwise)",
        )
    host, _, repository = location.partition("/")
    if not REGISTRY_HOST.fullmatch(host) or not repository:
        raise InputError(
            f"bundle location {location!r} is not `host[:port]/repository`", hint=example
        )
    if not REPOSITORY.fullmatch(repository):
        raise InputError(
            f"bundle location {location!r}: repository {repository!r} is not a valid OCI "
            "repository name (lowercase letters and digits, separated by / . _ or -; no tag)",
            hint=example,
        )
    return RegistryLocation(host, repository)


@dataclass(frozen=True)
class Reference:
    """What a user named a bundle by: a store location (or none: the chosen store), a tag, a
    digest, or both (`host/repo:tag@sha256:...`, where the digest decides)."""

    location: str | None
    tag: str | None
    digest: str | None


def parse_reference(text: str) -> Reference:
    """Parse a bundle reference the way skopeo, oras, crane and flux read one.

    `sha256:...` alone is a digest and a word without `/` a tag, both in the chosen store;
    otherwise `host[:port]/repository` or `oci:<folder>`, then optionally `:tag` (after the last
    `/`) and `@sha256:...`. Raises InputError naming the part that is wrong.
    """
    example = "write `TAG`, `sha256:...`, `host[:port]/repo:TAG`, `host[:port]/repo@sha256:...`"
    if not text:
        raise InputError("an empty bundle reference", hint=example)
    if text.startswith("sha256:"):
        return Reference(None, None, check_digest(text, "bundle reference"))
    if "/" not in text and not text.startswith("oci:"):
        if not _TAG.fullmatch(text):
            raise InputError(
                f"bundle reference {text!r} is neither a tag, a digest nor a full reference",
                hint=f"{example}; a tag is up to 128 of A-Z a-z 0-9 _ . -",
            )
        return Reference(None, text, None)
    rest, at, digest = text.rpartition("@")
    if not at:
        rest, digest = text, ""
    elif not digest.startswith("sha256:"):
        raise InputError(
            f"bundle reference {text!r}: {digest!r} after @ is not a sha256 digest", hint=example
        )
    prefix = "oci:" if rest.startswith("oci:") else ""
    body = rest[len(prefix) :]
    last_slash = body.rfind("/")
    colon = body.rfind(":")
    tag = ""
    if colon > last_slash and (prefix or last_slash >= 0):
        body, tag = body[:colon], body[colon + 1 :]
    location = prefix + body
    parse_location(location)
    return Reference(
        location,
        _check_tag(tag) if tag else None,
        check_digest(digest, f"bundle reference {text!r}") if digest else None,
    )


class BundleStore(ABC):
    """Where bundles live. Public operations are shared; backends supply five primitives."""

    def push(self, bundle: bytes, annotations: BundleAnnotations, tags: Sequence[str] = ()) -> str:
        """Store a bundle and tag it; return its manifest digest.

        Blobs go first, each only if missing; the manifest is written last, once per tag (the
        given tags, then the tree tag), so a push that fails half way leaves nothing `resolve`,
        `find_by_tree_hash` or `pull` would accept.
        """
        manifest = build_manifest(bundle, annotations)
        all_tags = list(dict.fromkeys([*map(_check_tag, tags), tree_tag(annotations.tree_hash)]))
        self._put_blob_if_missing(sha256_digest(CONFIG_BYTES), CONFIG_BYTES)
        self._put_blob_if_missing(sha256_digest(bundle), bundle)
        for tag in all_tags:
            self._put_manifest(manifest, MANIFEST_MEDIA_TYPE, tag)
        return sha256_digest(manifest)

    def find_by_tree_hash(self, tree_hash: str) -> str | None:
        """The digest of the bundle built from `tree_hash`, or None; one manifest read."""
        tag = tree_tag(tree_hash)
        found = self._get_manifest(tag)
        if found is None:
            return None
        data, _ = found
        digest = sha256_digest(data)
        recorded = self._parse_bundle(data, digest).get("annotations", {}).get(ANNOTATION_TREE_HASH)
        if recorded != tree_hash:
            raise IntegrityError(
                f"{self}: tag {tag} points at {digest}, whose tree hash is {recorded!r}, "
                f"not {tree_hash!r}",
                hint="something other than Conveyor moved the tag; push the bundle again to "
                "re-point it, and find out who wrote it",
            )
        return digest

    def resolve(self, tag: str) -> str:
        """The manifest digest `tag` points at; InputError when there is no such tag."""
        found = self._get_manifest(_check_tag(tag))
        if found is None:
            raise InputError(f"{self}: no bundle is tagged {tag!r}", hint=self._list_hint())
        return sha256_digest(found[0])

    def pull(self, digest: str) -> tuple[dict[str, Any], bytes]:
        """The manifest and bundle bytes of `digest`, both verified against their digests."""
        data, _ = self._verified_manifest(digest)
        manifest = self._parse_bundle(data, digest)
        layer = manifest["layers"][0]
        blob = self._get_blob(layer["digest"], layer["size"])
        if blob is None:
            raise IntegrityError(
                f"{self}: bundle {digest} refers to layer {layer['digest']}, which is missing",
                hint="push the bundle again from its source",
            )
        if len(blob) != layer["size"] or sha256_digest(blob) != layer["digest"]:
            raise IntegrityError(
                f"{self}: the layer of bundle {digest} does not match its digest "
                f"{layer['digest']} and size {layer['size']} (read {len(blob)} bytes hashing to "
                f"{sha256_digest(blob)})",
                hint="the stored blob was altered or corrupted; push the bundle again from its "
                "source and check the storage",
            )
        return manifest, blob

    def annotations(self, digest: str) -> dict[str, str]:
        """The annotations of bundle `digest` (name, source, revision...), its manifest verified;
        the layer is not read."""
        data, _ = self._verified_manifest(digest)
        return dict(self._parse_bundle(data, digest).get("annotations", {}))

    def tag(self, digest: str, new_tag: str) -> None:
        """Point `new_tag` at `digest` with the manifest's exact bytes; other tags are untouched."""
        _check_tag(new_tag)
        data, media_type = self._verified_manifest(digest)
        self._parse_bundle(data, digest)
        self._put_manifest(data, media_type, new_tag)

    @abstractmethod
    def list_tags(self) -> list[str]:
        """Every tag in the store, sorted."""

    @abstractmethod
    def _put_blob_if_missing(self, digest: str, data: bytes) -> None: ...

    @abstractmethod
    def _get_blob(self, digest: str, size: int) -> bytes | None:
        """The blob's bytes (at most size + 1 of them, to detect a longer blob), None if absent."""

    @abstractmethod
    def _get_manifest(self, reference: str) -> tuple[bytes, str] | None:
        """The raw manifest bytes and media type under a tag or digest, or None if absent."""

    @abstractmethod
    def _put_manifest(self, data: bytes, media_type: str, tag: str) -> None: ...

    def _verified_manifest(self, digest: str) -> tuple[bytes, str]:
        found = self._get_manifest(check_digest(digest))
        if found is None:
            raise InputError(f"{self}: no bundle has digest {digest}", hint=self._list_hint())
        data, _ = found
        if sha256_digest(data) != digest:
            raise IntegrityError(
                f"{self}: the manifest read for {digest} hashes to {sha256_digest(data)}",
                hint="the stored manifest was altered or corrupted; push the bundle again from "
                "its source and check the storage",
            )
        return found

    def _parse_bundle(self, data: bytes, digest: str) -> dict[str, Any]:
        """The manifest as a dict, after checking it has the shape of a Conveyor bundle."""
        try:
            manifest = json.loads(data)
        except ValueError:
            manifest = None
        layers = manifest.get("layers") if isinstance(manifest, dict) else None
        if (
            not isinstance(manifest, dict)
            or manifest.get("mediaType") != MANIFEST_MEDIA_TYPE
            or not isinstance(manifest.get("config"), dict)
            or manifest["config"].get("mediaType") != CONFIG_MEDIA_TYPE
            or not isinstance(layers, list)
            or len(layers) != 1
            or not isinstance(layers[0], dict)
            or layers[0].get("mediaType") != LAYER_MEDIA_TYPE
            or not DIGEST.fullmatch(str(layers[0].get("digest")))
            or not isinstance(layers[0].get("size"), int)
            or not isinstance(manifest.get("annotations", {}), dict)
        ):
            raise InputError(
                f"{self}: {digest} is not a Conveyor bundle (an OCI manifest with config "
                f"{CONFIG_MEDIA_TYPE} and one {LAYER_MEDIA_TYPE} layer)",
                hint="check the digest or tag; Conveyor only pulls bundles it pushed",
            )
        return manifest

    def _list_hint(self) -> str:
        return f"check the tag or digest, and that the bundle was pushed to {self}"


class _Oras(oras.provider.Registry):  # type: ignore[misc]  # oras ships no type information
    """oras's Registry with `do_request` replaced: one attempt, bounded time, no 401 dance."""

    def __init__(self, location: RegistryLocation, timeout: tuple[float, float]) -> None:
        super().__init__(location.host, insecure=location.plain_http, auth_backend="basic")
        self.timeout = timeout

    def do_request(
        self,
        url: str,
        method: str = "GET",
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        json: Any = None,
        stream: bool = False,
    ) -> requests.Response:
        response: requests.Response = self.session.request(
            method,
            url,
            data=data,
            json=json,
            headers=headers,
            stream=stream,
            verify=self._tls_verify,
            timeout=self.timeout,
        )
        if response.status_code >= 400 and response.status_code != 404:
            raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
        return response


class RegistryStore(BundleStore):
    """Bundles in one repository of an OCI registry (distribution API v2)."""

    def __init__(
        self,
        location: RegistryLocation,
        *,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        transfer_deadline: float = 300.0,
    ) -> None:
        if (username is None) != (password is None):
            raise InputError(
                f"registry {location.host}: a username needs a password and vice versa",
                hint="set both registry credentials, or neither for an anonymous registry",
            )
        self.location = location
        self._oras = _Oras(location, (connect_timeout, read_timeout))
        self._container = oras.container.Container(location.repository, registry=location.host)
        if username is not None and password is not None:
            # On the session, so the very first request carries them: no 401, no re-sent blob.
            self._oras.session.auth = requests.auth.HTTPBasicAuth(username, password)
        self._scheme = "http" if location.plain_http else "https"
        self._transfer_deadline = transfer_deadline
        """Seconds a whole download may take: the read timeout bounds each wait for bytes, so
        a registry trickling one byte at a time would otherwise hold a promotion for good."""

    @property
    def session(self) -> requests.Session:
        """The HTTP session every request goes through (tests count requests with its hooks)."""
        session: requests.Session = self._oras.session
        return session

    def __str__(self) -> str:
        return f"registry {self.location.host}, repository {self.location.repository}"

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        """Translate every oras/requests failure of `operation` into a RegistryError."""
        where = f"{self}: {operation}"
        url = f"{self._scheme}://{self.location.host}/v2/"
        try:
            yield
        except requests.HTTPError as error:
            response = error.response
            status = response.status_code if response is not None else 0
            if status == 401:
                raise RegistryError(
                    f"{where}: authentication failed (HTTP 401)",
                    hint="check the registry username and password in the configuration",
                ) from error
            if status == 403:
                raise RegistryError(
                    f"{where}: access denied (HTTP 403)",
                    hint=f"give the registry user push and pull rights on {self.location}",
                ) from error
            raise RegistryError(
                f"{where}: the registry answered HTTP {status}: {_error_messages(response)}",
                hint=f"see the registry's log; check it with `curl -i {url}`",
            ) from error
        except requests.Timeout as error:
            raise RegistryError(
                f"{where}: no answer in time ({error})",
                hint=f"check that the registry at {url} is up and reachable",
            ) from error
        except (requests.RequestException, ValueError, OSError) as error:
            raise RegistryError(
                f"{where}: {error}",
                hint=f"check that the registry at {url} is up and reachable "
                f"(`conveyor platform status` for the local one)",
            ) from error

    def _url(self, path: str) -> str:
        return f"{self._scheme}://{path}"

    def _put_blob_if_missing(self, digest: str, data: bytes) -> None:
        with self._errors(f"uploading blob {digest}"), tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "blob"
            path.write_bytes(data)
            layer = {"digest": digest, "size": len(data)}
            self._oras.upload_blob(str(path), self._container, layer)

    def _get_blob(self, digest: str, size: int) -> bytes | None:
        with (
            self._errors(f"downloading blob {digest}"),
            self._oras.get_blob(self._container, digest, stream=True) as response,
        ):
            if response.status_code == 404:
                return None
            return _read_at_most(response, size + 1, self._transfer_deadline)

    def _get_manifest(self, reference: str) -> tuple[bytes, str] | None:
        url = self._url(self._container.manifest_url(reference))
        with (
            self._errors(f"reading manifest {reference}"),
            self._oras.do_request(
                url, "GET", headers={"Accept": _MANIFEST_ACCEPT}, stream=True
            ) as response,
        ):
            if response.status_code == 404:
                return None
            data = _read_at_most(response, _MAX_MANIFEST_BYTES, self._transfer_deadline)
            return data, response.headers.get("Content-Type", MANIFEST_MEDIA_TYPE)

    def _put_manifest(self, data: bytes, media_type: str, tag: str) -> None:
        url = self._url(self._container.manifest_url(tag))
        with self._errors(f"writing manifest under tag {tag}"):
            response = self._oras.do_request(
                url, "PUT", data=data, headers={"Content-Type": media_type}
            )
            if response.status_code != 201:
                raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
        stored = response.headers.get("Docker-Content-Digest")
        if stored and stored != sha256_digest(data):
            raise IntegrityError(
                f"{self}: the registry stored the manifest for tag {tag} as {stored}, "
                f"not {sha256_digest(data)}",
                hint="the registry rewrites manifests; use a registry that stores them verbatim",
            )

    def list_tags(self) -> list[str]:
        url: str | None = self._url(self._container.tags_url(N=1000))
        tags: list[str] = []
        with self._errors("listing tags"):
            while url:
                response = self._oras.do_request(url, "GET")
                if response.status_code == 404:
                    break
                tags.extend(response.json().get("tags") or [])
                link = response.links.get("next", {}).get("url")
                url = self._same_registry(urllib.parse.urljoin(url, link)) if link else None
        return sorted(tags)

    def _same_registry(self, url: str) -> str:
        """`url` when it is on this registry (scheme, host and port); the session sends the
        registry's credentials with every request, so a link elsewhere is never followed."""
        parts = urllib.parse.urlsplit(url)
        if (parts.scheme, parts.netloc.lower()) != (self._scheme, self.location.host.lower()):
            raise RegistryError(
                f"{self}: listing tags: the registry's next page is on another registry "
                f"({url}); not followed, so that the credentials stay with "
                f"{self._scheme}://{self.location.host}",
                hint="check the registry's configuration (its public URL) or what sits in "
                "front of it",
            )
        return url


def _read_at_most(response: requests.Response, limit: int, deadline_seconds: float) -> bytes:
    """At most `limit` bytes of the body, read within `deadline_seconds` in all (a
    requests.Timeout, which `_errors` words, when the registry takes longer). Reads return what
    has arrived (`read1`), so a body trickling in is seen to be late while it trickles."""
    chunks: list[bytes] = []
    total = 0
    deadline = time.monotonic() + deadline_seconds
    try:
        while total < limit:
            chunk = response.raw.read1(min(65536, limit - total), decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if time.monotonic() > deadline:
                raise requests.Timeout(
                    f"the transfer took longer than {deadline_seconds:g}s in all "
                    f"({total} bytes received)"
                )
    except urllib3.exceptions.ReadTimeoutError as error:
        raise requests.ReadTimeout(str(error)) from error
    except urllib3.exceptions.HTTPError as error:
        raise requests.ConnectionError(str(error)) from error
    return b"".join(chunks)


def _error_messages(response: requests.Response | None) -> str:
    if response is None:
        return "(no response)"
    try:
        errors = response.json().get("errors", [])
        messages = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        messages = []
    return "; ".join(messages) or response.reason or "(no message)"


class LayoutStore(BundleStore):
    """Bundles in an OCI image layout folder: `oci-layout`, `index.json`, `blobs/sha256/<hex>`.

    Tags are index entries annotated `org.opencontainers.image.ref.name`, one per tag, as skopeo
    writes them. Files are written to a temporary name and renamed, and index.json changes are
    made under an exclusive lock on the folder, so readers never see half a file.
    """

    def __init__(self, location: LayoutLocation) -> None:
        self.location = location
        self.folder = location.folder

    def __str__(self) -> str:
        return f"OCI layout folder {self.folder}"

    @contextlib.contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise RegistryError(
                f"{self}: {operation}: {error}",
                hint="check that the folder exists, is writable and the disk is not full",
            ) from error

    def _blob_path(self, digest: str) -> Path:
        return self.folder / "blobs" / "sha256" / digest.removeprefix("sha256:")

    def _ensure_layout(self) -> None:
        marker = self.folder / "oci-layout"
        if marker.is_file():
            return
        if self.folder.is_dir() and any(self.folder.iterdir()):
            raise RegistryError(
                f"{self}: the folder is not empty and has no oci-layout file",
                hint="point the bundle location at an empty or new folder",
            )
        (self.folder / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        _write_atomically(self.folder / "index.json", canonical_json(_empty_index()))
        _write_atomically(marker, canonical_json({"imageLayoutVersion": "1.0.0"}))

    def _read_index(self) -> dict[str, Any]:
        try:
            data = (self.folder / "index.json").read_bytes()
        except FileNotFoundError:
            return _empty_index()
        try:
            index = json.loads(data)
        except ValueError:
            index = None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise RegistryError(
                f"{self}: index.json is not an OCI image index",
                hint="restore the folder from a backup or move it aside and push again",
            )
        return index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        descriptor = os.open(self.folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _put_blob_if_missing(self, digest: str, data: bytes) -> None:
        with self._errors(f"writing blob {digest}"):
            self._ensure_layout()
            path = self._blob_path(digest)
            if not path.exists():
                _write_atomically(path, data)

    def _get_blob(self, digest: str, size: int) -> bytes | None:
        with self._errors(f"reading blob {digest}"):
            try:
                with self._blob_path(digest).open("rb") as handle:
                    return handle.read(size + 1)
            except FileNotFoundError:
                return None

    def _get_manifest(self, reference: str) -> tuple[bytes, str] | None:
        """By tag: the index entry's manifest. By digest: the blob, listed in the index or not."""
        with self._errors(f"reading manifest {reference}"):
            key = "digest" if DIGEST.fullmatch(reference) else "tag"
            entry = next(
                (e for e in self._read_index()["manifests"] if _entry_key(e, key) == reference),
                None,
            )
            if entry is None and key == "tag":
                return None
            digest = reference if entry is None else str(entry.get("digest"))
            if not DIGEST.fullmatch(digest):
                raise RegistryError(
                    f"{self}: index.json lists tag {reference} with digest {digest!r}",
                    hint="restore the folder from a backup or move it aside and push again",
                )
            data = self._get_blob(digest, _MAX_MANIFEST_BYTES)
            if data is None:
                return None
            media_type = MANIFEST_MEDIA_TYPE if entry is None else entry.get("mediaType")
            return data, str(media_type or MANIFEST_MEDIA_TYPE)

    def _put_manifest(self, data: bytes, media_type: str, tag: str) -> None:
        digest = sha256_digest(data)
        with self._errors(f"writing manifest under tag {tag}"):
            self._put_blob_if_missing(digest, data)
            with self._locked():
                index = self._read_index()
                index["manifests"] = [
                    entry for entry in index["manifests"] if _entry_key(entry, "tag") != tag
                ]
                index["manifests"].append(
                    {
                        "mediaType": media_type,
                        "digest": digest,
                        "size": len(data),
                        "annotations": {ANNOTATION_REF_NAME: tag},
                    }
                )
                _write_atomically(self.folder / "index.json", canonical_json(index))

    def list_tags(self) -> list[str]:
        with self._errors("listing tags"):
            names = {_entry_key(entry, "tag") for entry in self._read_index()["manifests"]}
        return sorted(name for name in names if name is not None)


def _entry_key(entry: Any, key: str) -> str | None:
    """An index.json entry's digest (key "digest") or tag (key "tag"), None when it has none."""
    if not isinstance(entry, dict):
        return None
    value = (
        entry.get("digest")
        if key == "digest"
        else (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)
    )
    return value if isinstance(value, str) else None


def _empty_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
        try:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise


def open_store(
    location: str,
    *,
    username: str | None = None,
    password: str | None = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
    transfer_deadline: float = 300.0,
) -> BundleStore:
    """The store for `host[:port]/repository` (a registry) or `oci:<folder>` (a layout folder)."""
    parsed = parse_location(location)
    if isinstance(parsed, LayoutLocation):
        if username is not None or password is not None:
            raise InputError(
                f"bundle location {location!r} is a layout folder; it takes no credentials",
                hint="remove the registry username/password or configure a registry location",
            )
        return LayoutStore(parsed)
    return RegistryStore(
        parsed,
        username=username,
        password=password,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        transfer_deadline=transfer_deadline,
    )
