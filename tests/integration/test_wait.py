"""wait_ready against the real local cluster: rollouts, failures, deadlines, an API server restart.

KWOK simulates the nodes, so the scheduler and controllers really act: pods are bound and become
Ready, a nodeSelector no node has leaves pods Unschedulable, and a ResourceQuota on pods keeps a
Deployment from creating more (it then stays InProgress, or fails at its progress deadline).
The restart test runs a cluster of its own, so the session's platform is never disturbed.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conveyor.adapters.kube import Kube
from conveyor.cluster import health
from conveyor.cluster.health import Profile, State
from conveyor.cluster.wait import WATCH_SECONDS, describe_failure, wait_ready
from conveyor.errors import ClusterError
from conveyor.platform import binaries, process
from conveyor.platform.components import CLUSTER_NAME, Kubernetes
from conveyor.platform.local import LocalPlatform


def deployment(
    namespace: str,
    name: str = "web",
    replicas: int = 3,
    *,
    node_selector: dict[str, str] | None = None,
    progress_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    labels = {"app": name}
    pod_spec: dict[str, Any] = {"containers": [{"name": "app", "image": "example.invalid/app:1"}]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def service(namespace: str, name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def config_map(namespace: str, name: str = "settings") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"greeting": "hello"},
    }


def pods_quota(namespace: str, pods: int = 0) -> dict[str, Any]:
    """A ResourceQuota of `pods` pods: the namespace's ReplicaSets can create no more."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pods", "namespace": namespace},
        "spec": {"hard": {"pods": str(pods)}},
    }


def apply_all(kube: Kube, objects: list[dict[str, Any]]) -> None:
    for obj in objects:
        kube.apply(obj)


class Observer(threading.Thread):
    """Watches one Deployment on a connection of its own; notes when it is first Current."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        super().__init__(name="test-observer", daemon=True)
        self._kube, self._namespace, self._name = kube, namespace, name
        self.current_at: float | None = None
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            items, version = self._kube.list("apps/v1", "Deployment", self._namespace)
            if any(self._current(item) for item in items):
                return
            events = self._kube.watch(
                "apps/v1", "Deployment", self._namespace, version, timeout_seconds=90
            )
            for _, obj in events:
                if self._current(obj):
                    return
        except BaseException as error:
            self.errors.append(error)

    def _current(self, obj: dict[str, Any]) -> bool:
        mine = obj.get("metadata", {}).get("name") == self._name
        if mine and health.status(obj).state is State.CURRENT:
            self.current_at = time.monotonic()
            return True
        return False


def test_deployment_service_and_config_map_become_ready(
    platform: LocalPlatform, namespace: str
) -> None:
    kube = Kube(platform.kubernetes.kubeconfig)
    objects = [deployment(namespace), service(namespace), config_map(namespace)]
    observer = Observer(Kube(platform.kubernetes.kubeconfig), namespace, "web")
    reports: list[tuple[int, int, list[str]]] = []
    apply_all(kube, objects)
    observer.start()
    requests_before = kube.requests

    result = wait_ready(kube, objects, timeout=90, on_progress=lambda *r: reports.append(r))
    returned_at, returned_wall = time.monotonic(), datetime.now(UTC)

    observer.join(timeout=10)
    assert not observer.errors
    assert result.ready, describe_failure(result)
    assert result.states[f"Deployment/{namespace}/web"].reason == "3/3 replicas available"
    assert result.states[f"Service/{namespace}/web"].state is State.CURRENT
    assert result.states[f"ConfigMap/{namespace}/settings"].state is State.CURRENT
    assert reports[-1] == (3, 3, [])
    assert all(a != b for a, b in itertools.pairwise(reports)), "reported on change only"
    # Watching, not polling: three groups, and ReplicaSets and pods of the Deployment, each one
    # list plus one watch per WATCH_SECONDS (and the discovery of apps/v1 ReplicaSets).
    sources = 5
    renewals = int(result.elapsed // WATCH_SECONDS) + 1
    assert kube.requests - requests_before <= sources * (1 + renewals) + 1

    live = kube.get("apps/v1", "Deployment", "web", namespace)
    assert live is not None
    progressing = next(c for c in live["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    rolled_out = datetime.fromisoformat(progressing["lastUpdateTime"].replace("Z", "+00:00"))
    assert observer.current_at is not None
    lag = returned_at - observer.current_at
    print(
        f"\nwait_ready returned {lag * 1000:+.1f} ms after an independent watch saw the "
        f"Deployment Current; {(returned_wall - rolled_out).total_seconds():.2f} s after "
        f"Progressing=NewReplicaSetAvailable's lastUpdateTime (1 s resolution); "
        f"rollout took {result.elapsed:.2f} s"
    )
    assert lag < 1.0


def test_unschedulable_pods_fail_the_wait_early(platform: LocalPlatform, namespace: str) -> None:
    kube = Kube(platform.kubernetes.kubeconfig)
    stuck = deployment(namespace, replicas=2, node_selector={"conveyor.test/pool": "nowhere"})
    kube.apply(stuck)

    result = wait_ready(kube, [stuck], timeout=60)

    assert not result.ready
    assert result.elapsed < 20, "failed as soon as the scheduler said so, not at the deadline"
    verdict = result.states[f"Deployment/{namespace}/web"]
    assert verdict.state is State.FAILED
    assert verdict.reason.startswith("pod web-")
    assert "is Unschedulable" in verdict.reason
    assert "node(s) didn't match Pod's node affinity/selector" in verdict.reason
    assert f"Deployment/{namespace}/web: pod web-" in describe_failure(result)


def test_progress_deadline_exceeded_fails_the_wait(platform: LocalPlatform, namespace: str) -> None:
    kube = Kube(platform.kubernetes.kubeconfig)
    kube.apply(pods_quota(namespace))
    stuck = deployment(namespace, replicas=2, progress_deadline_seconds=5)
    kube.apply(stuck)

    result = wait_ready(kube, [stuck], timeout=60)

    assert not result.ready
    assert 4 < result.elapsed < 30, f"failed {result.elapsed:.1f} s in, with a 5 s deadline"
    verdict = result.states[f"Deployment/{namespace}/web"]
    assert verdict.state is State.FAILED
    assert verdict.reason == "Progressing=False: ProgressDeadlineExceeded"
    assert verdict.message is not None and "has timed out progressing" in verdict.message
    assert (
        f"Deployment/{namespace}/web: Progressing=False: ProgressDeadlineExceeded"
        in describe_failure(result)
    )


def test_the_deadline_ends_a_wait_on_what_cannot_get_ready(
    platform: LocalPlatform, namespace: str
) -> None:
    kube = Kube(platform.kubernetes.kubeconfig)
    kube.apply(pods_quota(namespace))
    blocked = deployment(namespace, replicas=2)
    kube.apply(blocked)
    settings = config_map(namespace)
    kube.apply(settings)

    started = time.monotonic()
    result = wait_ready(kube, [blocked, settings], timeout=3)
    took = time.monotonic() - started

    assert not result.ready
    assert 3 <= result.elapsed < 4
    assert took < 4
    verdict = result.states[f"Deployment/{namespace}/web"]
    assert verdict.state is State.IN_PROGRESS
    # On a busy machine the controller may not have reached the Deployment in 3 s.
    assert verdict.reason in ("0/2 replicas created", "status.observedGeneration not reported yet")
    assert result.states[f"ConfigMap/{namespace}/settings"].state is State.CURRENT
    assert describe_failure(result).splitlines()[1:] == [
        f"  Deployment/{namespace}/web: {verdict.reason}"
    ]


def _restart_api_server(cluster: Kubernetes, workdir: Path) -> tuple[int, int]:
    """Kill the kube-apiserver and have kwokctl start it again; returns (old pid, new pid).

    kwokctl v0.8.0 has no `stop component`/`start component` commands, but `start cluster`
    starts each component whose recorded process is not running, and waits until it serves.
    """
    pidfile = cluster.cluster_dir / "pids" / "kube-apiserver.pid"
    old = int(pidfile.read_text())
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{old}").exists():  # kwokctl takes a zombie for a running process
        assert time.monotonic() < deadline, f"kube-apiserver {old} was not reaped"
        time.sleep(0.05)
    kwokctl = binaries.ensure_built(binaries.KWOK)["kwokctl"]
    started = subprocess.run(
        [str(kwokctl), "start", "cluster", "--name", CLUSTER_NAME],
        env=dict(os.environ, KWOK_WORKDIR=str(workdir)),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert started.returncode == 0, started.stderr[-2000:]
    new = int(pidfile.read_text())
    assert process.start_ticks(new) is not None, "the new kube-apiserver is running"
    return old, new


def _retrying(action: Callable[[], object], until: float) -> None:
    """Run `action`, retrying while the API server is still coming up."""
    while True:
        try:
            action()
            return
        except ClusterError:
            if time.monotonic() > until:
                raise
            time.sleep(0.2)


class Recording:
    """A Kube that notes when wait_ready lists and when a watch breaks off (it changes nothing)."""

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self.lists: list[float] = []
        self.broken: list[tuple[float, str]] = []

    def list(self, *args: Any, **options: Any) -> tuple[list[dict[str, Any]], str]:
        listed = self._kube.list(*args, **options)
        self.lists.append(time.monotonic())
        return listed

    def watch(self, *args: Any, **options: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            yield from self._kube.watch(*args, **options)
        except ClusterError as error:
            self.broken.append((time.monotonic(), type(error).__name__))
            raise


def test_an_api_server_restart_does_not_break_the_wait(tmp_path: Path) -> None:
    cluster = Kubernetes(tmp_path)
    try:
        cluster.up()
        kube = Kube(cluster.kubeconfig)
        admin = Kube(cluster.kubeconfig)
        recording = Recording(kube)
        namespace = "wait"
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        first = deployment(namespace, replicas=1)
        kube.apply(first)
        # A fresh cluster's nodes may be tainted not-ready for a moment, which STRICT would call
        # Unschedulable: roll one pod out first, judged by the Deployment alone.
        warm = wait_ready(kube, [first], timeout=90, profile=Profile.KSTATUS)
        assert warm.ready, describe_failure(warm)
        kube.apply(pods_quota(namespace, pods=1))  # the running pod is all it allows
        kube.apply(deployment(namespace, replicas=2))
        scaled = deployment(namespace, replicas=3)
        timeline: dict[str, float] = {}
        pids: list[int] = []
        errors: list[BaseException] = []
        reports: list[tuple[int, int, list[str]]] = []

        def restart_then_scale() -> None:
            try:
                time.sleep(1)  # the wait is watching by now
                timeline["restart"] = time.monotonic()
                pids.extend(_restart_api_server(cluster, tmp_path / "kwok"))
                timeline["restarted"] = time.monotonic()
                until = time.monotonic() + 60
                _retrying(lambda: admin.apply(scaled), until)
                _retrying(lambda: admin.delete("v1", "ResourceQuota", "pods", namespace), until)
                timeline["scaled"] = time.monotonic()
            except BaseException as error:
                errors.append(error)

        operator = threading.Thread(target=restart_then_scale, name="test-restart")
        timeline["wait"] = time.monotonic()
        operator.start()
        try:
            result = wait_ready(
                recording, [scaled], timeout=120, on_progress=lambda *r: reports.append(r)
            )
        finally:
            operator.join(timeout=180)
        timeline["returned"] = time.monotonic()

        assert not errors, errors
        assert pids[0] != pids[1], "the kube-apiserver really was replaced"
        assert result.ready, describe_failure(result)
        assert result.states[f"Deployment/{namespace}/web"].reason == "3/3 replicas available"
        assert reports[0][0] == 0, "the quota held the Deployment back until after the restart"
        assert timeline["wait"] < timeline["restart"] < timeline["restarted"] < timeline["scaled"]
        assert timeline["scaled"] < timeline["returned"], "ready only after the scale-up"
        broke = [at for at, _ in recording.broken if timeline["restart"] < at]
        assert broke, "the restart broke the wait's watch"
        assert any(at > broke[0] for at in recording.lists), "re-listed once the server was back"
        live = kube.get("apps/v1", "Deployment", "web", namespace)
        assert live is not None and live["status"]["readyReplicas"] == 3
        print(
            f"\nAPI server down for {timeline['restarted'] - timeline['restart']:.1f} s; "
            f"wait_ready returned {timeline['returned'] - timeline['scaled']:.1f} s after the "
            "scale-up"
        )
    finally:
        cluster.down(purge=True)
