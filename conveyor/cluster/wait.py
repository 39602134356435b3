"""Wait until the objects a stage applied are ready, by watching them, with a deadline.

Why: a stage may promote a bundle only once the cluster has reconciled everything it applied, and
a rollout that cannot succeed should stop the stage at once, not at a timeout. Polling each object
costs a request per object per interval and still reacts late; this module reads each kind once
and then watches it, so it reacts to the very event that makes the last object ready, or one fail.

How it cannot miss an event. Objects are grouped by (apiVersion, kind, namespace); each group is
listed once, then watched from the list's resourceVersion in a thread of its own; every watch
resumes from the last resourceVersion it saw (BOOKMARK events included). A 410 Gone re-lists at
once; a broken connection (the API server restarting) is retried with a short backoff, 0.2 s
doubling to 2 s, until the deadline, and re-lists when it is back. A list replaces what was known
of its group, so an object deleted in the meantime is "not found", as is one a DELETED event
removes. The threads only read and feed one queue; the calling thread owns every state.

Deployments. A Deployment's status does not say why its pods do not become available, so while
one is not ready (STRICT profile) its ReplicaSets and pods are watched too, by its label selector,
and `health.deployment_failure_from_pods` judges the pods of its current ReplicaSet (the one whose
revision matches the Deployment's, once the Deployment's generation is observed): an Unschedulable
pod or a container in CrashLoopBackOff fails the wait at once. Pods of older ReplicaSets are left
out, so rolling back from a crash-looping release is not mistaken for a failure.

Objects that do not appear. Every object waited for was just applied, so one still not found
`not_found_after` seconds (5 by default) after the wait started was deleted since (its namespace
is being deleted, say, or a controller removed it): the wait fails at once, naming it
("<Kind>/<namespace>/<name>: not found 5 s after apply"), instead of running to its deadline.
Until its group has been listed an object is "not read yet", never "not found".

Threads. On return the threads are told to stop; each ends at its next event or when its current
watch request ends, which the server does within WATCH_SECONDS (threads are daemons meanwhile and
report nothing more). An exception in a thread is raised again in the caller, with a note naming
what that thread watched.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from conveyor.adapters.kube import ResourceExpired
from conveyor.cluster.health import (
    Profile,
    Readiness,
    State,
    deployment_failure_from_pods,
    object_key,
    status,
    summarize,
)
from conveyor.cluster.health_rules import NO_RULES, HealthRules
from conveyor.errors import ClusterError, InputError

WATCH_SECONDS = 5
"""Server-side timeout of one watch request, renewed in a loop until the wait ends."""
NOT_FOUND_SECONDS = 5.0
"""How long an object applied just before the wait may take to be found before it fails."""
_JOIN_SECONDS = 2.0
"""How long a finished wait gives its threads, all together, to end after their streams close."""

_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0
_REVISION = "deployment.kubernetes.io/revision"
_NOT_READ = Readiness(State.IN_PROGRESS, "not read yet")
_NOT_FOUND = Readiness(State.IN_PROGRESS, "not found")

ReadinessProgress = Callable[[int, int, list[str]], None]
"""on_progress(ready, total, ["Kind/namespace/name: reason" for each object not ready])."""


class EventStream(Protocol):
    """A watch's events; `close()` from another thread ends them (`kube.WatchStream`)."""

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]: ...

    def close(self) -> None: ...


class ListWatch(Protocol):
    """What waiting needs from a cluster connection; `conveyor.adapters.kube.Kube` provides it."""

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        label_selector: str | None = None,
    ) -> EventStream: ...


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: all Current (`ready`), or one Failed, or the deadline passed."""

    ready: bool
    elapsed: float
    """Seconds from the call to the verdict."""
    states: dict[str, Readiness]
    """Each object's last readiness, by `health.object_key`."""


def wait_ready(
    kube: ListWatch,
    objects: Sequence[Mapping[str, Any]],
    *,
    timeout: float,
    profile: Profile = Profile.STRICT,
    rules: HealthRules = NO_RULES,
    on_progress: ReadinessProgress | None = None,
    not_found_after: float | None = NOT_FOUND_SECONDS,
) -> WaitResult:
    """Watch `objects` until all are Current, one is Failed, or `timeout` seconds have passed.

    `rules` are the per-kind health rules in force (`health.status`). An object still not found
    `not_found_after` seconds after the call is Failed (None: it waits like any other).
    `on_progress` is called once every group has been read, and again whenever the number of
    ready objects or a reason changes. Raises ClusterError if, at the deadline, the objects of a
    group could not be read since the API server last failed (their state is unknown, not late).
    """
    started = time.monotonic()
    deadline = started + timeout
    missing_by = None if not_found_after is None else started + not_found_after
    tracker = _Tracker(objects, profile, rules)
    watchers = _Watchers(kube, deadline)
    reported: tuple[int, list[str]] | None = None
    try:
        while True:
            now = time.monotonic()
            missing_late = missing_by is not None and now >= missing_by
            states = tracker.states(not_found_after if missing_late else None)
            for source in tracker.sources:
                watchers.follow(source)
            ready, total, waiting = summarize(states)
            if on_progress is not None and tracker.read_all() and (ready, waiting) != reported:
                on_progress(ready, total, waiting)
                reported = (ready, waiting)
            failed = any(readiness.state is State.FAILED for readiness in states.values())
            if failed or ready == total:
                return WaitResult(ready == total, time.monotonic() - started, states)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tracker.raise_if_unreadable(timeout, waiting)
                return WaitResult(False, time.monotonic() - started, states)
            if missing_by is not None and not missing_late:  # wake to judge the missing ones
                remaining = min(remaining, max(0.0, missing_by - time.monotonic()))
            try:
                tracker.apply(watchers.queue.get(timeout=remaining))
            except queue.Empty:
                continue
            while True:  # take every message already there before judging again
                try:
                    tracker.apply(watchers.queue.get_nowait())
                except queue.Empty:
                    break
    finally:
        watchers.stop()


def describe_failure(result: WaitResult) -> str:
    """Each object not ready and why, one a line, failed ones first.

    For example "Deployment/shop/web: Progressing=False: ProgressDeadlineExceeded (ReplicaSet
    "web-5d9c" has timed out progressing.)".
    """
    total = len(result.states)
    if result.ready:
        return f"all {total} objects are ready ({result.elapsed:.1f} s)"
    failed = sorted(
        (key, readiness)
        for key, readiness in result.states.items()
        if readiness.state is State.FAILED
    )
    waiting = sorted(
        (key, readiness)
        for key, readiness in result.states.items()
        if readiness.state not in (State.FAILED, State.CURRENT)
    )
    after = f"after {result.elapsed:.1f} s"
    if failed and waiting:
        header = f"{len(failed)} failed and {len(waiting)} not ready of {total} objects {after}"
    elif failed:
        header = f"{len(failed)} of {total} objects failed {after}"
    else:
        header = f"{len(waiting)} of {total} objects not ready {after}"
    lines = [header + ":"]
    for key, readiness in failed + waiting:
        detail = f" ({readiness.message})" if readiness.message else ""
        lines.append(f"  {key}: {readiness.reason}{detail}")
    return "\n".join(lines)


# What the threads watch and what they report.


@dataclass(frozen=True)
class _Source:
    """One list-and-watch: a kind in a namespace (or the cluster), maybe by label selector."""

    api_version: str
    kind: str
    namespace: str | None
    label_selector: str | None = None

    def __str__(self) -> str:
        where = f"{self.kind} in {self.namespace or 'the cluster'}"
        return where + (f" ({self.label_selector})" if self.label_selector else "")


@dataclass(frozen=True)
class _Listed:
    source: _Source
    items: list[dict[str, Any]]


@dataclass(frozen=True)
class _Changed:
    source: _Source
    type: str
    obj: dict[str, Any]


@dataclass(frozen=True)
class _Lost:
    source: _Source
    error: ClusterError


@dataclass(frozen=True)
class _Crashed:
    source: _Source
    error: Exception


_Message = _Listed | _Changed | _Lost | _Crashed


class _Watchers:
    """One daemon thread per source, each listing then watching it, all feeding one queue."""

    def __init__(self, kube: ListWatch, deadline: float) -> None:
        self._kube = kube
        self._deadline = deadline
        self._stopped = threading.Event()
        self._threads: dict[_Source, threading.Thread] = {}
        self._streams: dict[_Source, EventStream] = {}
        self._lock = threading.Lock()
        self.queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()

    def follow(self, source: _Source) -> None:
        """Start watching `source`, unless a thread already does."""
        if source in self._threads:
            return
        thread = threading.Thread(
            target=self._run, args=(source,), name=f"conveyor-wait {source}", daemon=True
        )
        self._threads[source] = thread
        thread.start()

    def stop(self) -> None:
        """Stop every thread: close the watches they block in, and wait for them to end."""
        self._stopped.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            with contextlib.suppress(Exception):  # a stream that cannot close ends on its own
                stream.close()
        deadline = time.monotonic() + _JOIN_SECONDS  # one deadline for all of them
        for thread in self._threads.values():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _run(self, source: _Source) -> None:
        try:
            self._follow(source)
        except Exception as error:  # the calling thread raises it again
            self.queue.put(_Crashed(source, error))

    def _follow(self, source: _Source) -> None:
        version = ""  # empty: list first
        backoff = _BACKOFF_FIRST
        while not self._stopped.is_set():
            try:
                if not version:
                    items, version = self._kube.list(
                        source.api_version,
                        source.kind,
                        source.namespace,
                        label_selector=source.label_selector,
                    )
                    self.queue.put(_Listed(source, items))
                seconds = max(1, min(WATCH_SECONDS, math.ceil(self._deadline - time.monotonic())))
                stream = self._kube.watch(
                    source.api_version,
                    source.kind,
                    source.namespace,
                    version,
                    timeout_seconds=seconds,
                    label_selector=source.label_selector,
                )
                with self._lock:
                    self._streams[source] = stream
                if self._stopped.is_set():  # stop() may have closed the streams before this one
                    with contextlib.suppress(Exception):
                        stream.close()
                    return
                for event, obj in stream:
                    if self._stopped.is_set():
                        return
                    version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                    if event != "BOOKMARK":
                        self.queue.put(_Changed(source, event, obj))
                    backoff = _BACKOFF_FIRST
            except ResourceExpired:
                version = ""
            except ClusterError as error:
                version = ""  # what happened while we were away is only in a new list
                self.queue.put(_Lost(source, error))
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)


# The calling thread's view of the cluster, and the verdicts drawn from it.


class _Tracker:
    """What is known of each watched source, and each object's readiness from it."""

    def __init__(
        self, objects: Sequence[Mapping[str, Any]], profile: Profile, rules: HealthRules
    ) -> None:
        self._profile = profile
        self._rules = rules
        self._where: dict[str, tuple[_Source, str]] = {}
        for index, obj in enumerate(objects):
            source, name = _locate(obj, index)
            self._where.setdefault(object_key(obj), (source, name))
        self._groups = {source for source, _ in self._where.values()}
        # An ordered set: the groups, then the ReplicaSets and pods of Deployments as needed.
        self.sources: dict[_Source, None] = dict.fromkeys(sorted(self._groups, key=str))
        self._known: dict[_Source, dict[str, dict[str, Any]]] = {}
        self._lost: dict[_Source, ClusterError] = {}

    def apply(self, message: _Message) -> None:
        if isinstance(message, _Crashed):
            message.error.add_note(f"raised while wait_ready watched {message.source}")
            raise message.error
        if isinstance(message, _Lost):
            self._lost[message.source] = message.error
            return
        if isinstance(message, _Listed):
            self._lost.pop(message.source, None)
            self._known[message.source] = {item["metadata"]["name"]: item for item in message.items}
            return
        known = self._known[message.source]
        name = message.obj["metadata"]["name"]
        if message.type == "DELETED":
            known.pop(name, None)
        else:
            known[name] = message.obj

    def read_all(self) -> bool:
        return all(source in self._known for source in self._groups)

    def states(self, missing_for: float | None = None) -> dict[str, Readiness]:
        """Each object's readiness; with `missing_for` (seconds since the wait started), one
        not found is Failed."""
        states = {key: self._readiness(source, name) for key, (source, name) in self._where.items()}
        if missing_for is None:
            return states
        gone = Readiness(State.FAILED, f"not found {missing_for:g} s after apply")
        return {key: gone if state is _NOT_FOUND else state for key, state in states.items()}

    def raise_if_unreadable(self, timeout: float, waiting: list[str]) -> None:
        lost = [source for source in sorted(self._groups, key=str) if source in self._lost]
        if not lost:
            return
        raise ClusterError(
            f"waited {timeout:g} s for readiness, but could not read "
            + ", ".join(str(source) for source in lost)
            + f" since: {self._lost[lost[0]].message}; last known: "
            + ("; ".join(waiting) or "nothing read yet"),
            hint="check that the API server is up and reachable, then wait again",
        )

    def _readiness(self, source: _Source, name: str) -> Readiness:
        known = self._known.get(source)
        if known is None:
            return _NOT_READ
        obj = known.get(name)
        if obj is None:
            return _NOT_FOUND
        readiness = status(obj, self._profile, self._rules)
        if (
            readiness.state is State.IN_PROGRESS
            and self._profile is Profile.STRICT
            and source.kind == "Deployment"
        ):
            return self._from_pods(obj, source.namespace) or readiness
        return readiness

    def _from_pods(self, deployment: Mapping[str, Any], namespace: str | None) -> Readiness | None:
        """Failed if a pod of the Deployment's current ReplicaSet cannot start; else None."""
        selector = _label_selector(deployment)
        if selector is None:
            return None
        replica_sets = _Source("apps/v1", "ReplicaSet", namespace, selector)
        pods = _Source("v1", "Pod", namespace, selector)
        self.sources.update(dict.fromkeys((replica_sets, pods)))
        if replica_sets not in self._known or pods not in self._known:
            return None
        current = _current_replica_set(deployment, self._known[replica_sets].values())
        if current is None:
            return None
        uid = current["metadata"].get("uid")
        return deployment_failure_from_pods(
            deployment, [pod for pod in self._known[pods].values() if _controlled_by(pod, uid)]
        )


def _locate(obj: Mapping[str, Any], index: int) -> tuple[_Source, str]:
    """The group an input object belongs to, and its name; InputError if it cannot be placed."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not (isinstance(name, str) and isinstance(api_version, str) and isinstance(kind, str)):
        raise InputError(
            f"object #{index} to wait for lacks apiVersion, kind or metadata.name: "
            f"{dict(obj)!r:.200}",
            hint="pass the objects as applied (rendered manifests with their names)",
        )
    return _Source(api_version, kind, namespace if isinstance(namespace, str) else None), name


def _label_selector(obj: Mapping[str, Any]) -> str | None:
    """spec.selector (matchLabels and matchExpressions) as a label selector query, or None."""
    selector = obj.get("spec", {}).get("selector") or {}
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        terms.append(
            {
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
                "Exists": f"{key}",
                "DoesNotExist": f"!{key}",
            }[operator]
        )
    return ",".join(terms) or None


def _current_replica_set(
    deployment: Mapping[str, Any], replica_sets: Iterable[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The Deployment's ReplicaSet at its current revision, once its generation is observed."""
    metadata = deployment.get("metadata", {})
    observed = deployment.get("status", {}).get("observedGeneration")
    revision = (metadata.get("annotations") or {}).get(_REVISION)
    if (
        revision is None
        or not isinstance(observed, int)
        or observed < metadata.get("generation", 0)
    ):
        return None
    uid = metadata.get("uid")
    for replica_set in replica_sets:
        annotations = replica_set.get("metadata", {}).get("annotations") or {}
        if _controlled_by(replica_set, uid) and annotations.get(_REVISION) == revision:
            return replica_set
    return None


def _controlled_by(obj: Mapping[str, Any], uid: Any) -> bool:
    references = obj.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in references)
