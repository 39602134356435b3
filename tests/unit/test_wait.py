"""wait_ready's event handling, against a small in-memory API server with scripted faults.

The fake keeps objects, a resourceVersion counter and an event log like the real one: a list
returns the current objects and version, a watch replays the log after a version and then blocks
for new entries until its timeout. Tests change the world from the on_progress callback, which
runs in the waiting thread between two reads, so every sequence is deterministic: no sleeps.
Faults are aimed at the watches open at that moment: end them (a server timeout), expire them
(410 Gone, with the log compacted so only a re-list can tell what changed), or break them and
refuse every request for a while (the API server restarting).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conveyor.adapters.kube import ResourceExpired
from conveyor.cluster import wait
from conveyor.cluster.health import Profile, Readiness, State
from conveyor.cluster.health_rules import HealthRule, HealthRules
from conveyor.cluster.wait import WaitResult, describe_failure, wait_ready
from conveyor.errors import ClusterError, InputError

NS = "shop"


@dataclass
class _Open:
    """A watch being served; `control` is (log index, what to do on reaching it)."""

    control: tuple[int, str] | None = None


@dataclass(frozen=True)
class Call:
    verb: str
    kind: str
    namespace: str | None
    label_selector: str | None
    resource_version: str
    at: float
    failed: bool


@dataclass
class FakeCluster:
    """An in-memory API server: list, watch, and the faults the tests aim at open watches."""

    version: int = 1
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    compacted: int = 0
    outage_until: float = 0.0
    calls: list[Call] = field(default_factory=list)
    crash_on_list: dict[str, Exception] = field(default_factory=dict)
    _open: list[_Open] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # -- the world, changed by tests --------------------------------------------------------

    def put(self, obj: dict[str, Any], *, expire: bool = False) -> None:
        """Create or replace `obj`; with `expire`, open watches get 410 before they see it."""
        with self._cond:
            self._advance(expire)
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self.version)
            key = _key(stored)
            event = "MODIFIED" if key in self.objects else "ADDED"
            self.objects[key] = stored
            self.log.append((self.version, event, stored))
            self._cond.notify_all()

    def delete(self, kind: str, name: str, *, expire: bool = False) -> None:
        with self._cond:
            self._advance(expire)
            gone = self.objects.pop((kind, NS, name))
            gone = copy.deepcopy(gone)
            gone["metadata"]["resourceVersion"] = str(self.version)
            self.log.append((self.version, "DELETED", gone))
            self._cond.notify_all()

    def bookmark(self, kind: str) -> int:
        """A BOOKMARK at the current version for watches of `kind`; returns that version."""
        with self._cond:
            self.log.append((self.version, "BOOKMARK", {"kind": kind, "metadata": {}}))
            self._cond.notify_all()
            return self.version

    def end_watches(self) -> None:
        """Open watches end normally once they have sent what is logged now."""
        with self._cond:
            self._control("END")

    def outage(self, seconds: float) -> None:
        """Open watches break; every request fails with ClusterError for `seconds`."""
        with self._cond:
            self.outage_until = time.monotonic() + seconds
            self._control("BREAK")

    def _advance(self, expire: bool) -> None:
        """The next resourceVersion; with `expire`, open watches get 410 and the log before it
        is compacted away."""
        if expire:
            self._control("EXPIRE")
        self.version += 1
        if expire:
            self.compacted = self.version

    def _control(self, action: str) -> None:
        for watch in self._open:
            watch.control = (len(self.log), action)
        self._cond.notify_all()

    # -- the API ------------------------------------------------------------------------------

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        with self._cond:
            self._record("list", kind, namespace, label_selector, "")
            if kind in self.crash_on_list:
                raise self.crash_on_list[kind]
            items = [
                copy.deepcopy(obj)
                for (k, ns, _), obj in sorted(self.objects.items())
                if k == kind and ns == namespace and _selected(obj, label_selector)
            ]
            return items, str(self.version)

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        resource_version: str,
        *,
        timeout_seconds: int,
        label_selector: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        start = int(resource_version)
        with self._cond:
            self._record("watch", kind, namespace, label_selector, resource_version)
            if start < self.compacted:
                raise ResourceExpired(f"watch {kind}: too old resource version {start}")
            cursor = next((i for i, (v, _, _) in enumerate(self.log) if v > start), len(self.log))
            me = _Open()
            self._open.append(me)
        ends = time.monotonic() + timeout_seconds
        try:
            while True:
                with self._cond:
                    while True:
                        if me.control is not None and cursor >= me.control[0]:
                            action = me.control[1]
                            if action == "EXPIRE":
                                raise ResourceExpired(f"watch {kind}: too old resource version")
                            if action == "BREAK":
                                raise ClusterError(f"watch {kind} broke off: ProtocolError")
                            return
                        if cursor < len(self.log):
                            version, event, obj = self.log[cursor]
                            cursor += 1
                            break
                        left = ends - time.monotonic()
                        if left <= 0:
                            return
                        self._cond.wait(left)
                if event == "BOOKMARK":
                    if obj["kind"] == kind:
                        yield event, {"kind": kind, "metadata": {"resourceVersion": str(version)}}
                elif (
                    obj["kind"] == kind
                    and obj["metadata"].get("namespace") == namespace
                    and _selected(obj, label_selector)
                ):
                    yield event, copy.deepcopy(obj)
        finally:
            with self._cond:
                self._open.remove(me)

    def _record(
        self, verb: str, kind: str, namespace: str | None, selector: str | None, version: str
    ) -> None:
        failed = time.monotonic() < self.outage_until
        self.calls.append(Call(verb, kind, namespace, selector, version, time.monotonic(), failed))
        if failed:
            raise ClusterError(f"cannot reach the API server ({verb} {kind}): ConnectionRefused")

    def count(self, verb: str, kind: str, *, failed: bool = False) -> int:
        return sum(1 for c in self.calls if (c.verb, c.kind, c.failed) == (verb, kind, failed))


def _key(obj: dict[str, Any]) -> tuple[str, str | None, str]:
    return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


def _selected(obj: dict[str, Any], selector: str | None) -> bool:
    if not selector:
        return True
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in (term.split("=") for term in selector.split(",")))


# -- objects ------------------------------------------------------------------------------------


def config_map(name: str, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
    }


def deployment(
    name: str = "web",
    *,
    ready: int = 0,
    replicas: int = 3,
    revision: str = "2",
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Deployment whose generation is observed, with `ready` of `replicas` pods available."""
    available = ready == replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 2,
            "annotations": {"deployment.kubernetes.io/revision": revision},
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": ready,
            "readyReplicas": ready,
            "conditions": conditions
            or [{"type": "Available", "status": "True" if available else "False"}],
        },
    }


def replica_set(name: str, deployment_name: str, revision: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "labels": {"app": deployment_name},
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"uid": f"uid-{deployment_name}", "controller": True}],
        },
    }


def pod(
    name: str, replica_set_name: str, app: str, *, problem: str | None = None
) -> dict[str, Any]:
    """A pending pod; `problem` is "Unschedulable" or "CrashLoopBackOff"."""
    status: dict[str, Any] = {"phase": "Pending", "conditions": []}
    if problem == "Unschedulable":
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available",
            }
        ]
    if problem == "CrashLoopBackOff":
        status = {
            "phase": "Running",
            "containerStatuses": [
                {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ],
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app": app},
            "ownerReferences": [{"uid": f"uid-{replica_set_name}", "controller": True}],
        },
        "status": status,
    }


Report = tuple[int, int, list[str]]


class Script:
    """on_progress: records every report and runs the next step on the report that matches."""

    def __init__(self, *steps: tuple[str, Any]) -> None:
        self.reports: list[Report] = []
        self._steps = list(steps)

    def __call__(self, ready: int, total: int, waiting: list[str]) -> None:
        self.reports.append((ready, total, waiting))
        if self._steps and any(self._steps[0][0] in line for line in waiting):
            self._steps.pop(0)[1]()


@pytest.fixture(autouse=True)
def short_watches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One-second watches, and no wait thread may outlive a test by more than one watch."""
    monkeypatch.setattr(wait, "WATCH_SECONDS", 1)
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("conveyor-wait"):
            thread.join(timeout=3)
            assert not thread.is_alive(), f"{thread.name} still runs after the wait returned"


def _wait(fake: FakeCluster, objects: list[dict[str, Any]], **options: Any) -> WaitResult:
    options.setdefault("timeout", 10)
    return wait_ready(fake, objects, **options)


# -- tests ------------------------------------------------------------------------------------


def test_ready_objects_need_one_list_per_group_and_no_pod_watch() -> None:
    fake = FakeCluster()
    objects = [config_map("a"), config_map("b"), config_map("c"), config_map("d", "other")]
    objects.append(deployment(ready=3))
    for obj in objects:
        fake.put(obj)
    reports: list[Report] = []

    result = _wait(fake, objects, on_progress=lambda *r: reports.append(r))

    assert result.ready
    assert result.states["ConfigMap/shop/a"].state is State.CURRENT
    assert set(result.states) == {
        "ConfigMap/shop/a",
        "ConfigMap/shop/b",
        "ConfigMap/shop/c",
        "ConfigMap/other/d",
        "Deployment/shop/web",
    }
    lists = sorted((c.kind, c.namespace) for c in fake.calls if c.verb == "list")
    assert lists == [("ConfigMap", "other"), ("ConfigMap", "shop"), ("Deployment", "shop")]
    assert reports == [(5, 5, [])]
    assert describe_failure(result).startswith("all 5 objects are ready")


def test_a_watch_event_makes_it_ready_and_progress_is_reported_on_change_only() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    script = Script(
        ("0/3 replicas available", lambda: fake.put(deployment(ready=1))),
        ("1/3 replicas available", lambda: fake.put(deployment(ready=3))),
    )

    result = _wait(fake, [deployment()], on_progress=script)

    assert result.ready
    assert script.reports == [
        (0, 1, ["Deployment/shop/web: 0/3 replicas available"]),
        (0, 1, ["Deployment/shop/web: 1/3 replicas available"]),
        (1, 1, []),
    ]
    assert fake.count("list", "Deployment") == 1, "events came from the watch, not from lists"


def test_resource_expired_relists_and_sees_what_the_watch_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wait, "_BACKOFF_FIRST", 5.0)  # so a 410 taken for an outage would show
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    expired_at: list[float] = []

    def expire() -> None:
        expired_at.append(time.monotonic())
        fake.put(deployment(ready=3), expire=True)

    result = _wait(fake, [deployment()], on_progress=Script(("0/3", expire)))

    assert result.ready
    assert fake.count("list", "Deployment") == 2
    relist = [c for c in fake.calls if (c.verb, c.kind) == ("list", "Deployment")][1]
    assert relist.at - expired_at[0] < 2, "a 410 re-lists at once, without backoff"
    watches = [c.resource_version for c in fake.calls if c.verb == "watch"]
    assert watches[-1] == str(fake.version), "the new watch starts from the new list"


def test_an_object_deleted_during_a_410_is_not_found_after_the_relist() -> None:
    fake = FakeCluster()
    fake.put(config_map("settings"))
    fake.put(deployment(ready=0))
    script = Script(("0/3", lambda: fake.delete("ConfigMap", "settings", expire=True)))

    result = _wait(fake, [config_map("settings"), deployment()], timeout=1.5, on_progress=script)

    assert not result.ready
    assert result.states["ConfigMap/shop/settings"] == Readiness(State.IN_PROGRESS, "not found")
    assert fake.count("list", "ConfigMap") == 2
    assert "ConfigMap/shop/settings: not found" in describe_failure(result)


def test_a_deleted_event_means_not_found_until_the_object_comes_back() -> None:
    fake = FakeCluster()
    fake.put(config_map("settings"))
    fake.put(config_map("unrelated"))
    fake.put(deployment(ready=0))

    def delete_both() -> None:
        fake.delete("ConfigMap", "unrelated")  # not waited for: its events must change nothing
        fake.delete("ConfigMap", "settings")

    script = Script(
        ("0/3", delete_both),
        ("settings: not found", lambda: fake.put(config_map("settings"))),
        ("0/3", lambda: fake.put(deployment(ready=3))),
    )

    result = _wait(fake, [config_map("settings"), deployment()], on_progress=script)

    assert result.ready
    assert script.reports == [
        (1, 2, ["Deployment/shop/web: 0/3 replicas available"]),
        (
            0,
            2,
            ["ConfigMap/shop/settings: not found", "Deployment/shop/web: 0/3 replicas available"],
        ),
        (1, 2, ["Deployment/shop/web: 0/3 replicas available"]),
        (2, 2, []),
    ]
    assert fake.count("list", "ConfigMap") == 1, "deletion and re-creation came as watch events"


def test_cluster_errors_are_retried_with_backoff_then_relisted() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))

    def restart_api_server() -> None:
        fake.outage(1.0)
        fake.put(deployment(ready=3))  # happens while the wait cannot see it

    result = _wait(fake, [deployment()], on_progress=Script(("0/3", restart_api_server)))

    assert result.ready
    calls = [c for c in fake.calls if c.kind == "Deployment"]
    failed = [c.at for c in calls if c.failed]
    assert len(failed) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed)]
    assert 0.38 < gaps[0] < 1.2, f"second retry 0.4 s after the first, got {gaps}"
    recovered = [c for c in calls if not c.failed and c.at > failed[-1]]
    assert recovered[0].verb == "list", "the watch is re-established by a new list"
    assert recovered[0].at - failed[-1] > 0.7, "backoff doubled again (0.8 s)"


def test_bookmarks_move_the_resume_point() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    listed_at = fake.version
    marks: list[int] = []

    def bookmark_then_end_the_watch() -> None:
        fake.put(config_map("unrelated", "elsewhere"))  # the version moves on
        marks.append(fake.bookmark("Deployment"))
        fake.end_watches()
        fake.put(deployment(ready=3))

    result = _wait(fake, [deployment()], on_progress=Script(("0/3", bookmark_then_end_the_watch)))

    assert result.ready
    watches = [
        c.resource_version for c in fake.calls if (c.verb, c.kind) == ("watch", "Deployment")
    ]
    assert watches[:2] == [str(listed_at), str(marks[0])]
    assert marks[0] > listed_at
    assert fake.count("list", "Deployment") == 1


def test_the_deadline_ends_the_wait_naming_what_is_not_ready() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=1))

    result = _wait(fake, [deployment(), config_map("missing")], timeout=0.5)

    assert not result.ready
    assert 0.5 <= result.elapsed < 1.0
    assert result.states["Deployment/shop/web"].reason == "1/3 replicas available"
    assert describe_failure(result).splitlines() == [
        f"2 of 2 objects not ready after {result.elapsed:.1f} s:",
        "  ConfigMap/shop/missing: not found",
        "  Deployment/shop/web: 1/3 replicas available",
    ]


def test_a_failed_object_ends_the_wait_at_once() -> None:
    fake = FakeCluster()
    stuck = deployment(
        ready=1,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "web-5d9c" has timed out progressing.',
            }
        ],
    )
    fake.put(stuck)
    fake.put(config_map("settings"))

    result = _wait(fake, [deployment(), config_map("settings"), config_map("gone")], timeout=30)

    assert not result.ready
    assert result.elapsed < 5, "not at the 30 s deadline"
    assert result.states["Deployment/shop/web"].state is State.FAILED
    assert describe_failure(result).splitlines() == [
        f"1 failed and 1 not ready of 3 objects after {result.elapsed:.1f} s:",
        "  Deployment/shop/web: Progressing=False: ProgressDeadlineExceeded"
        ' (ReplicaSet "web-5d9c" has timed out progressing.)',
        "  ConfigMap/shop/gone: not found",
    ]


def test_an_unschedulable_pod_of_the_current_replica_set_fails_the_deployment() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0, revision="2"))
    fake.put(replica_set("web-old", "web", "1"))
    fake.put(replica_set("web-new", "web", "2"))
    fake.put(pod("web-old-a", "web-old", "web", problem="CrashLoopBackOff"))  # rolling back
    fake.put(pod("web-new-a", "web-new", "web"))
    script = Script(
        ("0/3", lambda: fake.put(pod("web-new-a", "web-new", "web", problem="Unschedulable")))
    )

    result = _wait(fake, [deployment()], on_progress=script)

    assert not result.ready
    verdict = result.states["Deployment/shop/web"]
    assert verdict.state is State.FAILED
    assert verdict.reason == "pod web-new-a is Unschedulable: 0/2 nodes are available"
    assert verdict.message == "1 of 1 pods of Deployment web cannot start"
    assert script.reports[0][2] == ["Deployment/shop/web: 0/3 replicas available"], (
        "the old ReplicaSet's crash-looping pod is not the new rollout's failure"
    )
    selectors = {(c.kind, c.label_selector) for c in fake.calls if c.verb == "list"}
    assert selectors == {("Deployment", None), ("ReplicaSet", "app=web"), ("Pod", "app=web")}


def test_a_crash_looping_pod_fails_the_deployment() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    fake.put(replica_set("web-new", "web", "2"))
    fake.put(pod("web-new-a", "web-new", "web", problem="CrashLoopBackOff"))

    result = _wait(fake, [deployment()])

    assert result.states["Deployment/shop/web"].reason == (
        "pod web-new-a container app is in CrashLoopBackOff"
    )
    assert not result.ready


def test_the_kstatus_profile_judges_the_deployment_alone() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    fake.put(replica_set("web-new", "web", "2"))
    fake.put(pod("web-new-a", "web-new", "web", problem="CrashLoopBackOff"))

    result = _wait(fake, [deployment()], timeout=0.3, profile=Profile.KSTATUS)

    assert result.states["Deployment/shop/web"] == Readiness(
        State.IN_PROGRESS, "0/3 replicas available"
    )
    assert {c.kind for c in fake.calls} == {"Deployment"}


def test_an_exception_in_a_watch_thread_is_raised_by_the_wait() -> None:
    fake = FakeCluster()
    fake.put(config_map("settings"))
    fake.crash_on_list["ConfigMap"] = KeyError("items")

    with pytest.raises(KeyError) as raised:
        _wait(fake, [config_map("settings")])

    assert raised.value.__notes__ == ["raised while wait_ready watched ConfigMap in shop"]


def test_an_api_server_down_at_the_deadline_is_a_cluster_error_not_a_verdict() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    fake.outage(30)

    with pytest.raises(ClusterError) as raised:
        _wait(fake, [deployment()], timeout=0.6)

    message = str(raised.value)
    assert "could not read Deployment in shop" in message
    assert "ConnectionRefused" in message
    assert "hint: check that the API server is up" in message


def test_an_object_without_a_name_is_refused() -> None:
    with pytest.raises(InputError, match=r"object #1 to wait for lacks"):
        _wait(FakeCluster(), [config_map("a"), {"apiVersion": "v1", "kind": "ConfigMap"}])


def test_nothing_to_wait_for_is_ready_at_once() -> None:
    fake = FakeCluster()
    result = _wait(fake, [])
    assert result.ready and result.states == {} and fake.calls == []


def test_an_object_still_not_found_soon_after_apply_fails_without_waiting_the_timeout() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=1))

    result = _wait(fake, [deployment(), config_map("gone")], timeout=30, not_found_after=0.5)

    assert not result.ready
    assert 0.5 <= result.elapsed < 2, "failed at the not-found limit, not at the 30 s deadline"
    assert result.states["ConfigMap/shop/gone"] == Readiness(
        State.FAILED, "not found 0.5 s after apply"
    )
    assert "  ConfigMap/shop/gone: not found 0.5 s after apply" in describe_failure(result)


def test_an_object_found_before_the_not_found_limit_is_judged_as_usual() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=0))
    script = Script(("settings: not found", lambda: fake.put(config_map("settings"))))

    result = _wait(fake, [config_map("settings"), deployment()], timeout=1.5, on_progress=script)

    assert not result.ready
    assert result.states["ConfigMap/shop/settings"].state is State.CURRENT
    assert result.states["Deployment/shop/web"].reason == "0/3 replicas available"


def test_without_a_not_found_limit_a_missing_object_waits_for_the_deadline() -> None:
    fake = FakeCluster()

    result = _wait(fake, [config_map("gone")], timeout=1.0, not_found_after=None)

    assert result.elapsed >= 1.0
    assert result.states["ConfigMap/shop/gone"] == Readiness(State.IN_PROGRESS, "not found")


def test_health_rules_decide_the_kinds_they_name() -> None:
    fake = FakeCluster()
    fake.put(deployment(ready=1))
    rules = HealthRules((HealthRule("apps/v1", "Deployment", "status.readyReplicas >= 1"),))

    result = _wait(fake, [deployment()], rules=rules)

    assert result.ready
    assert result.states["Deployment/shop/web"].reason == (
        "health check current is true: status.readyReplicas >= 1"
    )
