"""Which digest an image tag names right now: the one question a build asks image registries.

Why an adapter of its own: the bundle store (oci.py) reads and writes Conveyor's artifacts in one
configured repository, with oras. Container images live in whatever registries the manifests
name: a mirror in front of them or not, anonymous or behind a token service (Docker Hub and
GitHub's registry answer an anonymous pull with 401 and a `Bearer` challenge, and hand out a
token for it). Resolving a tag takes one HEAD request per registry tried, and reads no layer.

Mirrors work as containerd's do: `registry.example=127.0.0.1:5000` asks the mirror for
`registry.example/web:1.0` as `127.0.0.1:5000/web:1.0` first and the registry itself only when the
mirror does not have it or cannot be reached; `*` names a mirror for every registry. A mirror
serves the same bytes, so the digest it names is the image's digest everywhere.

Nothing is retried here (one request per registry and step): a registry that is down is reported
within seconds, naming every place that was tried. Errors: RegistryError (unreachable, refused,
5xx), InputError (the tag does not exist anywhere tried).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import requests

from conveyor.errors import InputError, RegistryError

_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_CHALLENGE_PARAMETER = re.compile(r'(\w+)="([^"]*)"')
_PLAIN_HTTP_HOSTS = ("127.0.0.1", "localhost", "[::1]")
_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_MAX_TAGS = 100_000
T = TypeVar("T")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"


def parse_mirrors(text: str, where: str) -> dict[str, str]:
    """`registry=mirror[,registry=mirror...]` (as $CONVEYOR_IMAGE_MIRRORS holds it) as a mapping;
    InputError naming `where` for an entry that is not `host=host[:port]`."""
    mirrors: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        registry, equals, mirror = entry.partition("=")
        if not equals or not registry.strip() or not mirror.strip() or "/" in mirror:
            raise InputError(
                f"{where}: {entry!r} is not registry=mirror",
                hint="write e.g. registry.example=127.0.0.1:5000 or *=mirror.example:5000",
            )
        mirrors[registry.strip()] = mirror.strip()
    return mirrors


@dataclass
class ImageRegistries:
    """Asks registries which digest a tag names (see the module docstring for mirrors).

    `credentials` are basic-auth pairs by registry host, sent to that host only (and to the
    token service it names in a challenge)."""

    mirrors: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    requests_made: int = 0
    """Every HTTP request sent (the benchmark counts them)."""

    def __post_init__(self) -> None:
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc credentials picked up on the way

    def digest(self, registry: str, repository: str, tag: str) -> str:
        """The digest `registry/repository:tag` names now, from its mirror or from itself."""
        image = f"{registry}/{repository}:{tag}"
        found, tried = self._first_answer(
            registry, lambda host: self._manifest_digest(host, repository, tag), "no such tag"
        )
        if found is not None:
            return found
        if all(attempt.endswith("no such tag") for attempt in tried):
            raise InputError(
                f"image {image}: the tag does not exist ({'; '.join(tried)})",
                hint="push the image first, or fix the tag in the manifest or parameters",
            )
        raise RegistryError(
            f"image {image}: could not resolve its digest ({'; '.join(tried)})",
            hint="check that the registry is reachable and the credentials are right; for a "
            "registry the builder can never reach, list the repository under images.unpinned "
            "in bundle.yaml with a reason",
        )

    def tags(self, registry: str, repository: str) -> list[str]:
        """Every tag of `registry/repository`, from its mirror when the mirror has the
        repository, else from the registry itself."""
        found, tried = self._first_answer(
            registry, lambda host: self._tag_list(host, repository), "no such repository"
        )
        if found is not None:
            return found
        raise RegistryError(
            f"image {registry}/{repository}: could not list its tags ({'; '.join(tried)})",
            hint="check the repository name, that the registry is reachable and the credentials",
        )

    def _first_answer(
        self, registry: str, ask: Callable[[str], T | None], missing: str
    ) -> tuple[T | None, list[str]]:
        """What `ask(host)` answers for the registry's mirror, else for the registry itself;
        and, when neither answers, what each said (`missing` for a None answer)."""
        tried: list[str] = []
        for host in self._hosts(registry):
            try:
                found = ask(host)
            except requests.RequestException as error:
                tried.append(f"{host}: {_reason(error)}")
                continue
            if found is not None:
                return found, tried
            tried.append(f"{host}: {missing}")
        return None, tried

    def _tag_list(self, host: str, repository: str) -> list[str] | None:
        url: str | None = f"{_scheme(host)}://{host}/v2/{repository}/tags/list?n=1000"
        tags: list[str] = []
        headers = {"Accept": "application/json"}
        auth = self.credentials.get(host)
        while url and len(tags) < _MAX_TAGS:
            response = self._request("GET", url, headers, auth)
            if response.status_code == 401 and "Authorization" not in headers:
                challenge = response.headers.get("WWW-Authenticate", "")
                if challenge.lower().startswith("bearer"):
                    headers["Authorization"] = f"Bearer {self._token(challenge, auth)}"
                    auth = None
                    continue
            if response.status_code == 404:
                return None
            response.raise_for_status()
            listed = response.json().get("tags") or []
            tags += [tag for tag in listed if isinstance(tag, str)]
            # The next page, on the same registry only (credentials never go elsewhere).
            following = response.links.get("next", {}).get("url")
            url = urllib.parse.urljoin(url, following) if following else None
            if url and urllib.parse.urlsplit(url).netloc != host:
                raise requests.RequestException(f"the next page of tags is on another host: {url}")
        return tags

    def _hosts(self, registry: str) -> list[str]:
        upstream = DOCKER_HUB_API if registry == DOCKER_HUB else registry
        mirror = self.mirrors.get(registry) or self.mirrors.get("*")
        return [mirror, upstream] if mirror and mirror != upstream else [upstream]

    def _manifest_digest(self, host: str, repository: str, tag: str) -> str | None:
        url = f"{_scheme(host)}://{host}/v2/{repository}/manifests/{tag}"
        headers = {"Accept": _ACCEPT}
        auth = self.credentials.get(host)
        response = self._request("HEAD", url, headers, auth)
        if (
            response.status_code == 401
            and "bearer" in response.headers.get("WWW-Authenticate", "").lower()[:7]
        ):
            token = self._token(response.headers["WWW-Authenticate"], auth)
            headers["Authorization"] = f"Bearer {token}"
            response = self._request("HEAD", url, headers, None)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        digest = response.headers.get("Docker-Content-Digest", "")
        if _DIGEST.fullmatch(digest):
            return digest
        # Some registries leave the header out of HEAD answers: hash the manifest itself.
        with self._session.get(
            url,
            headers=headers,
            auth=None if "Authorization" in headers else auth,
            timeout=(self.connect_timeout, self.read_timeout),
            stream=True,
        ) as full:
            self.requests_made += 1
            full.raise_for_status()
            body = full.raw.read(_MAX_MANIFEST_BYTES + 1, decode_content=True)
        if len(body) > _MAX_MANIFEST_BYTES:
            raise requests.RequestException(f"the manifest is over {_MAX_MANIFEST_BYTES} bytes")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _request(
        self, method: str, url: str, headers: Mapping[str, str], auth: tuple[str, str] | None
    ) -> requests.Response:
        self.requests_made += 1
        return self._session.request(
            method,
            url,
            headers=dict(headers),
            auth=auth,
            timeout=(self.connect_timeout, self.read_timeout),
            allow_redirects=False,
        )

    def _token(self, challenge: str, auth: tuple[str, str] | None) -> str:
        parameters = dict(_CHALLENGE_PARAMETER.findall(challenge))
        realm = parameters.pop("realm", "")
        if not realm.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise requests.RequestException(f"the token service {realm!r} is not an HTTPS URL")
        self.requests_made += 1
        response = self._session.get(
            realm,
            params=parameters,
            auth=auth,
            timeout=(self.connect_timeout, self.read_timeout),
            allow_redirects=False,
        )
        response.raise_for_status()
        try:
            answer = response.json()
        except ValueError:
            raise requests.RequestException("the token service answered no JSON") from None
        token = (
            answer.get("token") or answer.get("access_token") if isinstance(answer, dict) else None
        )
        if not isinstance(token, str) or not token:
            raise requests.RequestException("the token service answered no token")
        return token


def _scheme(host: str) -> str:
    return "http" if host.rsplit(":", 1)[0] in _PLAIN_HTTP_HOSTS else "https"


def _reason(error: requests.RequestException) -> str:
    response = error.response
    if response is not None:
        if response.status_code == 401:
            return "HTTP 401: authentication failed"
        if response.status_code == 403:
            return "HTTP 403: access denied"
        return f"HTTP {response.status_code}"
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    if isinstance(error, requests.ConnectionError):
        return "cannot connect"
    return str(error)


def push_small_image(host: str, repository: str, tag: str, content: str) -> str:
    """Push a minimal image to `host/repository:tag` (one layer holding `content` as
    /content.txt) and return its digest: the stand-in images the local platform serves for the
    example app, and that tests move tags between. Plain HTTP: only for a loopback registry."""
    if host.rsplit(":", 1)[0] not in _PLAIN_HTTP_HOSTS:
        raise InputError(f"{host}: small images are only pushed to a loopback registry")
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = content.encode()
        member = tarfile.TarInfo("content.txt")
        member.size, member.mtime, member.mode = len(data), 0, 0o644
        tar.addfile(member, io.BytesIO(data))
    layer_tar = archive.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar)]},
        },
        sort_keys=True,
    ).encode()
    base = f"http://{host}/v2/{repository}"
    with requests.Session() as session:
        session.trust_env = False
        try:
            for blob in (config, layer):
                _upload_blob(session, base, blob)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
                    "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
                },
                sort_keys=True,
            ).encode()
            for attempt in range(SAME_PUSH_ATTEMPTS):
                answer = session.put(
                    f"{base}/manifests/{tag}",
                    data=manifest,
                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                    timeout=10,
                )
                if answer.status_code != 400 or attempt == SAME_PUSH_ATTEMPTS - 1:
                    answer.raise_for_status()
                    break
                time.sleep(0.1 * (attempt + 1))  # a blob another writer is still committing
        except requests.RequestException as error:
            raise RegistryError(
                f"registry {host}: pushing {repository}:{tag}: {_reason(error)}",
                hint="check that the registry is up (`conveyor platform status`)",
            ) from error
    return _sha256(manifest)


SAME_PUSH_ATTEMPTS = 5
"""CNCF distribution now and then answers 400 when several writers push the same image at once
(test workers and `up`s push the same stand-ins; seen in about one round in five of six
processes): a blob upload refused while the blob is there is taken as done, and a refused
manifest is sent again, a little later each time, this many times in all."""


def _upload_blob(session: requests.Session, base: str, blob: bytes) -> None:
    """Upload `blob` unless the repository has it; a refused upload of a blob that is there
    after all (another writer committed it meanwhile) is no error (see SAME_PUSH_ATTEMPTS)."""
    digest = _sha256(blob)
    if session.head(f"{base}/blobs/{digest}", timeout=10).status_code == 200:
        return
    started = session.post(f"{base}/blobs/uploads/", timeout=10)
    started.raise_for_status()
    location = urllib.parse.urljoin(f"{base}/", started.headers["Location"])
    finished = session.put(
        location,
        params={"digest": digest},
        data=blob,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    if finished.ok or session.head(f"{base}/blobs/{digest}", timeout=10).status_code == 200:
        return
    finished.raise_for_status()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _sha256(data), "size": len(data)}
