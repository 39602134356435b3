"""The Kubernetes adapter: the only module that imports the official `kubernetes` client.

It uses the client for what only it should do (reading a kubeconfig: certificates, tokens, exec
plugins) and then speaks JSON to the API server over the client's own connection pool, without
the generated models: server-side apply, get, list, delete and watch on any kind, discovered
lazily and cached per group-version. Objects stay plain dicts, so the readiness rules and diffs
above this module are pure functions of data.

Every HTTP failure is mapped here, once, to Conveyor's error tree, naming the resource and the
API server. Credentials are never part of a message or a log line.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from conveyor.errors import ClusterError, ConfigError, ConveyorError, InputError
from conveyor.kit.syntax import object_path

FIELD_MANAGER = "conveyor"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TOO_MANY_REQUESTS_ATTEMPTS = 5
"""A 429 answer (the request was not processed) is asked again, after its Retry-After (at most
1 s), up to this many times in all."""


class ApplyConflict(ConveyorError):
    """Server-side apply refused: another field manager owns fields we set."""


class ResourceExpired(ClusterError):
    """A watch's resourceVersion is too old (410 Gone): re-list and watch again."""


class NotFound(ClusterError):
    """The object (or its kind) does not exist."""


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the API: its group-version, plural name and scope."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/" if "/" not in self.api_version else "/apis/"
        parts = [base.rstrip("/"), self.api_version]
        if self.namespaced and namespace:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name:
            parts.append(name)
        return "/".join(parts)


def _retry_after(header: str | None) -> float:
    """Seconds to wait before asking again: the header's (seconds), at most 1, else 1."""
    try:
        return min(max(float(header or 1), 0.0), 1.0)
    except ValueError:  # an HTTP date: not worth parsing for at most a second
        return 1.0


def describe(obj: Mapping[str, Any]) -> str:
    """`Kind/namespace/name` (or `Kind/name`) of an object for messages, `?` for what it lacks."""
    metadata = obj.get("metadata", {})
    return object_path(
        str(obj.get("kind", "?")), metadata.get("namespace"), str(metadata.get("name", "?"))
    )


class WatchStream:
    """One watch request's events; `close()` from any thread ends the iteration quietly."""

    def __init__(self, response: urllib3.BaseHTTPResponse, what: str) -> None:
        self._response = response
        self._what = what
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(Exception):  # already finished, or the socket is gone
            self._response.shutdown()

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        buffer = b""
        try:
            for chunk in self._response.stream(64 * 1024, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        status = event["object"]
                        if status.get("code") == 410:
                            raise ResourceExpired(f"{self._what}: {status.get('message')}")
                        raise ClusterError(f"{self._what}: {status.get('message')}")
                    yield event["type"], event["object"]
        except (urllib3.exceptions.HTTPError, OSError) as error:
            if not self._closed.is_set():
                raise ClusterError(f"{self._what} broke off: {error.__class__.__name__}") from error
        finally:
            self._response.release_conn()


class Kube:
    """A connection to one cluster, from a kubeconfig file and an optional context."""

    def __init__(
        self, kubeconfig: Path | None = None, context: str | None = None, *, connections: int = 32
    ) -> None:
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except (ConfigException, OSError) as error:
            where = str(kubeconfig) if kubeconfig else "the default kubeconfig"
            raise ConfigError(
                f"cannot load {where}"
                + (f" (context {context!r})" if context else "")
                + f": {error}",
                hint="point --kubeconfig at a readable kubeconfig with that context",
            ) from error
        configuration.connection_pool_maxsize = connections
        self._configuration = configuration
        self._api = k8s_client.ApiClient(configuration)
        self._pool: urllib3.PoolManager = self._api.rest_client.pool_manager
        self.server = configuration.host.rstrip("/")
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._discovered: set[str] = set()
        self._discovery_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.requests = 0
        """Requests sent so far (benchmarks and tests read it)."""
        self.writes = 0
        """Of those, the ones that may change the cluster (POST, PUT, PATCH, DELETE)."""

    # -- HTTP -----------------------------------------------------------------------------------

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "conveyor"}
        if content_type:
            headers["Content-Type"] = content_type
        hook = self._configuration.refresh_api_key_hook
        if hook is not None:
            hook(self._configuration)
        settings: Mapping[str, Any] = self._configuration.auth_settings()
        for setting in settings.values():
            if setting["in"] == "header" and setting["value"]:
                headers[setting["key"]] = setting["value"]
        return headers

    def _url(self, path: str, query: Mapping[str, str | int | bool] | None) -> str:
        url = self.server + path
        if query:
            clean = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items()}
            url += "?" + urllib.parse.urlencode(clean)
        return url

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float = 30.0,
        stream: bool = False,
        what: str = "",
    ) -> urllib3.BaseHTTPResponse:
        for attempt in range(_TOO_MANY_REQUESTS_ATTEMPTS):
            with self._lock:
                self.requests += 1
                if method in _WRITE_METHODS:
                    self.writes += 1
            try:
                response = self._pool.request(
                    method,
                    self._url(path, query),
                    body=body,
                    headers=self._headers(content_type),
                    preload_content=not stream,
                    timeout=urllib3.Timeout(connect=5.0, read=timeout),
                    retries=False,
                )
            except urllib3.exceptions.HTTPError as error:
                raise ClusterError(
                    f"cannot reach the Kubernetes API server at {self.server} "
                    f"({method} {what or path}): {error.__class__.__name__}",
                    hint="is the cluster running? (`conveyor platform status` for the local one)",
                ) from error
            if response.status != 429 or attempt == _TOO_MANY_REQUESTS_ATTEMPTS - 1:
                break
            # Not processed, come back later: a new CRD's storage starting, or flow control.
            response.drain_conn()
            time.sleep(_retry_after(response.headers.get("Retry-After")))
        if response.status >= 400:
            data = response.data if not stream else response.read()
            raise self._error(response.status, data, method, what or path)
        return response

    def _error(self, status: int, data: bytes, method: str, what: str) -> ConveyorError:
        try:
            body = json.loads(data)
        except ValueError:
            body = {"message": data.decode(errors="replace")[:300]}
        message = body.get("message", "")
        if status == 404:
            return NotFound(f"{what}: not found ({message})")
        if status == 409 and method == "PATCH":
            causes = body.get("details", {}).get("causes", [])
            fields = (
                "; ".join(f"{c.get('field', '?')} ({c.get('message', '')})" for c in causes)
                or message
            )
            return ApplyConflict(
                f"{what}: server-side apply conflict: {fields}",
                hint="another field manager owns these fields; set `force_conflicts: true` on "
                "the target to take them over",
            )
        if status == 410:
            return ResourceExpired(f"{what}: {message}")
        if status == 500 and "typed patch" in message:
            # Server-side apply reports a manifest that does not fit the kind's schema (an
            # unknown field, a wrong type) as an internal error; it is the input's fault.
            return InputError(
                f"{what}: rejected by the API server: {message}",
                hint="fix the manifest: the field is not in this kind's schema",
            )
        if status in (400, 422):
            causes = body.get("details", {}).get("causes", [])
            detail = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in causes)
            return InputError(f"{what}: rejected by the API server: {detail or message}")
        if status in (401, 403):
            return ClusterError(
                f"{what}: the API server at {self.server} refused our credentials ({status}): "
                f"{message}",
                hint="check the kubeconfig's user and its RBAC permissions",
            )
        return ClusterError(f"{what}: the API server at {self.server} answered {status}: {message}")

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        what: str = "",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """Send one request and return the decoded JSON answer."""
        payload = None if body is None else json.dumps(body).encode()
        response = self._send(
            method,
            path,
            query=query,
            body=payload,
            content_type=content_type,
            what=what,
            timeout=timeout,
        )
        result: dict[str, Any] = json.loads(response.data) if response.data else {}
        return result

    # -- discovery ------------------------------------------------------------------------------

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        """The plural and scope of a kind, from the server's discovery (one call per group)."""
        key = (api_version, kind)
        if key not in self._types:
            self._discover(api_version)
        if key not in self._types:
            self._discovered.discard(api_version)  # a CRD may have appeared since: look again
            self._discover(api_version)
        if key not in self._types:
            raise NotFound(
                f"kind {kind} in {api_version} is not served by the API server at {self.server}",
                hint="install its CustomResourceDefinition first, or fix apiVersion/kind",
            )
        return self._types[key]

    def _discover(self, api_version: str) -> None:
        # One discovery per group-version even when many apply threads need it at once.
        with self._lock:
            group_lock = self._discovery_locks.setdefault(api_version, threading.Lock())
        with group_lock:
            if api_version in self._discovered:
                return
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.request("GET", path, what=f"discovery of {api_version}")
            except NotFound:
                listing = {"resources": []}
            with self._lock:
                for resource in listing.get("resources", []):
                    if "/" in resource["name"]:
                        continue  # subresources such as deployments/status
                    self._types[(api_version, resource["kind"])] = ResourceType(
                        api_version, resource["kind"], resource["name"], resource["namespaced"]
                    )
                self._discovered.add(api_version)

    # -- objects --------------------------------------------------------------------------------

    def _locate(self, obj: Mapping[str, Any]) -> tuple[ResourceType, str | None, str]:
        resource = self.resource_type(obj["apiVersion"], obj["kind"])
        metadata = obj.get("metadata", {})
        namespace = metadata.get("namespace") if resource.namespaced else None
        return resource, namespace, metadata["name"]

    def apply(
        self,
        obj: Mapping[str, Any],
        *,
        force: bool = False,
        dry_run: bool = False,
        field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """Server-side apply of one object; returns the object as the server now has it."""
        resource, namespace, name = self._locate(obj)
        # Strict: a field the schema does not know (a typo) is an error, not a silent no-op.
        query: dict[str, str | int | bool] = {
            "fieldManager": field_manager,
            "force": force,
            "fieldValidation": "Strict",
        }
        if dry_run:
            query["dryRun"] = "All"
        return self.request(
            "PATCH",
            resource.path(namespace, name),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
            what=describe(obj),
        )

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:  # a kind the server does not serve (its CRD is gone) has no objects either
            resource = self.resource_type(api_version, kind)
            return self.request(
                "GET",
                resource.path(namespace, name),
                what=object_path(kind, namespace, name),
            )
        except NotFound:
            return None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Every object of a kind (in a namespace), and the list's resourceVersion."""
        resource = self.resource_type(api_version, kind)
        query = {"labelSelector": label_selector} if label_selector else None
        listing = self.request(
            "GET",
            resource.path(namespace),
            query=query,
            what=f"list {kind} in {namespace or 'the cluster'}",
        )
        items = listing.get("items", [])
        for item in items:  # list items omit these; callers expect whole objects
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items, str(listing.get("metadata", {}).get("resourceVersion", ""))

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        dry_run: bool = False,
    ) -> bool:
        """Delete one object (background propagation); False if it was already gone (or its
        kind is no longer served)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if dry_run:
            body["dryRun"] = ["All"]
        try:
            resource = self.resource_type(api_version, kind)
            self.request(
                "DELETE",
                resource.path(namespace, name),
                body=body,
                what=f"delete {object_path(kind, namespace, name)}",
            )
        except NotFound:
            return False
        return True

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        label_selector: str | None = None,
    ) -> WatchStream:
        """Events (type, object) after `resource_version`, until the server ends the watch or
        another thread calls the stream's `close()`.

        Types are ADDED, MODIFIED, DELETED and BOOKMARK (an object carrying only a newer
        metadata.resourceVersion to resume from). Iterating raises ResourceExpired when
        `resource_version` is too old (the caller re-lists) and ClusterError when the
        connection breaks.
        """
        resource = self.resource_type(api_version, kind)
        query: dict[str, str | int | bool] = {
            "watch": True,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": True,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        response = self._send(
            "GET",
            resource.path(namespace),
            query=query,
            stream=True,
            timeout=timeout_seconds + 10,
            what=f"watch {kind}",
        )
        return WatchStream(response, f"watch {kind} on {self.server}")
