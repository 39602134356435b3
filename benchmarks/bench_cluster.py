"""Conveyor side by side with kubectl (and kapp, when it builds) on the running local cluster.

Run it (never as a unit test; it takes a few minutes and owns the machine meanwhile):

    .venv/bin/python benchmarks/bench_cluster.py [--objects 1000] [--repeat 3]

Three measurements, each in fresh namespaces that are deleted (and waited for) afterwards:

1. apply: N objects (80 % ConfigMaps, 20 % Deployments of 1 replica, over 2 namespaces) into an
   empty namespace pair (creates), then the same objects with one changed field each (updates).
   Conveyor's `apply_bundle` at concurrency 8/16/32 against `kubectl apply --server-side -f DIR`
   (and `kapp deploy --wait=false`). Both tools send the same objects with the same labels.
2. drift: a no-op drift check of those N objects, `drift.detect` against
   `kubectl diff --server-side -f DIR` (exit 0, no diff), with request counts: Conveyor's own
   (`Kube.requests`) and, for both tools, the API server's (`apiserver_request_total` delta).
3. readiness: apply a 3-replica Deployment, then wait with `wait_ready` or
   `kubectl rollout status`; an independent watch (a thread of its own with its own connection)
   stamps the moment the cluster has it ready (availableReplicas == 3 and observedGeneration ==
   generation); each tool's latency is t(tool reports ready) - t(cluster ready).

Conveyor runs in this process (a library call with a fresh `Kube`, so its discovery is counted; no
interpreter start-up). kubectl runs as a subprocess with a warm discovery cache of its own (its
start-up is part of its time, as it is for anyone who uses it). Timings are wall-clock medians.

The machine may be shared: each timed apply or drift check first waits (at most --quiet-wait s)
for processes other than the cluster's and ours to go quiet, and records the CPU seconds spent
during it by the tool, by the cluster's processes and by everything else, so a disturbed sample
can be told from a slow one. Results go to benchmarks/results/cluster.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import platform as pyplatform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, benchmarks.common

import yaml

from benchmarks import common
from benchmarks.common import log
from conveyor.adapters.kube import Kube, ResourceExpired
from conveyor.cluster.apply import Placement, apply_bundle, prepare
from conveyor.cluster.drift import detect
from conveyor.cluster.wait import wait_ready
from conveyor.errors import ConveyorError
from conveyor.platform.local import LocalPlatform
from tests.support import manifests

REPO = Path(__file__).resolve().parents[1]
STATE = REPO / ".conveyor"
RESULTS = REPO / "benchmarks" / "results" / "cluster.json"
KAPP_DIR = Path("/tmp/conveyor-bench-kapp")
KAPP_MODULE = "carvel.dev/kapp/cmd/kapp@latest"

APP = "bench"
TARGET = "cluster"
DIGEST = "sha256:" + "b3" * 32
IMAGE = "example.invalid/bench:1"
NS_PREFIX = "bench-"
REVISION_ANNOTATION = "bench.conveyor.dev/revision"
DEFAULT_CONCURRENCY = 16


# -- objects ----------------------------------------------------------------------------------


def make_objects(count: int, namespaces: Sequence[str], revision: int) -> list[dict[str, Any]]:
    """`count` objects, 80 % ConfigMaps and 20 % Deployments (1 replica), alternating namespaces.

    `revision` is the one field that changes between the create and the update: a ConfigMap's
    data.revision, a Deployment's metadata annotation (so no rollout of 200 Deployments runs
    during the update measurement).
    """
    deployments = count // 5
    objects: list[dict[str, Any]] = []
    for i in range(count - deployments):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i:05d}", "namespace": namespaces[i % len(namespaces)]},
                "data": {"key": f"value-{i}", "revision": str(revision)},
            }
        )
    for i in range(deployments):
        objects.append(deployment(f"dep-{i:05d}", namespaces[i % len(namespaces)], 1, revision))
    return objects


def deployment(name: str, namespace: str, replicas: int, revision: int = 1) -> dict[str, Any]:
    obj = manifests.deployment(
        name,
        replicas,
        labels={"bench.conveyor.dev/deployment": name},
        image=IMAGE,
        requests={"cpu": "10m", "memory": "16Mi"},
    )
    obj["metadata"].update(namespace=namespace, annotations={REVISION_ANNOTATION: str(revision)})
    # No container runs under KWOK; without a grace period the namespace controller deletes a
    # round's pods at once (~8 s a round instead of ~13 s).
    obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0
    return obj


def placement_in(namespaces: Sequence[str]) -> Placement:
    """The benchmark's target: the first namespace is its own, the others are allowed to it (a
    target is confined to its namespace and those its configuration lists under `namespaces`)."""
    return Placement(APP, TARGET, namespaces[0], namespaces=tuple(namespaces[1:]))


def write_manifests(objects: Sequence[Mapping[str, Any]], folder: Path) -> Path:
    """One multi-document YAML file per (namespace, kind), as a repository would hold them."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    files: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        key = f"{obj['metadata'].get('namespace', '_')}-{obj['kind'].lower()}.yaml"
        files.setdefault(key, []).append(obj)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    for name, docs in files.items():
        (folder / name).write_text(yaml.dump_all(docs, Dumper=dumper, sort_keys=False))
    return folder


# -- cluster helpers (untimed) ------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent not idle (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


class CpuMeter:
    """Where the machine's CPU went during one timed operation: the tool (this process or
    kubectl), the cluster's processes, and everything else (other users of the machine)."""

    def __init__(self, cluster_pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in cluster_pids.items() if pid}

    def sample(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "busy": busy_cpu(),
            "cluster": sum(process_cpu(pid) for pid in self.pids.values()),
            "bench": time.process_time(),
            "kubectl": children.ru_utime + children.ru_stime,
        }

    @staticmethod
    def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        used = {key: after[key] - before[key] for key in before}
        used["other"] = max(0.0, used["busy"] - used["cluster"] - used["bench"] - used["kubectl"])
        return {key: round(value, 3) for key, value in used.items()}

    def wait_quiet(self, limit: float, window: float = 0.5, threshold: float = 0.25) -> float:
        """Wait (at most `limit` s) until the processes that are neither the cluster's nor ours
        use less than `threshold` of one core over `window` s; the seconds waited.

        The machine is shared (other sessions build and run tests on it); starting each timed
        operation in a quiet moment keeps their bursts out of most samples."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            before = self.sample()
            time.sleep(window)
            if self.spent(before, self.sample())["other"] / window < threshold:
                break
        return round(time.monotonic() - started, 2)


class Cluster:
    """Namespaces, settling and API-server request counts, on an admin connection of its own."""

    def __init__(
        self,
        kubeconfig: Path,
        kubectl: Path,
        workdir: Path,
        cpu: CpuMeter | None = None,
        quiet_limit: float = 0.0,
    ) -> None:
        self.cpu = cpu or CpuMeter({})
        self.quiet_limit = quiet_limit
        self.quiet_waited = 0.0
        self.kubeconfig = kubeconfig
        self.kubectl_binary = kubectl
        self.kubectl_cache = workdir / "kubectl-cache"
        self.admin = Kube(kubeconfig)
        self.created: list[str] = []
        self.metrics_reads = 0
        self.read_cost = 0
        self.kubectl_responses = 0

    # kubectl -----------------------------------------------------------------------------------

    def kubectl(self, *args: str) -> list[str]:
        return [
            str(self.kubectl_binary),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.kubectl_cache),
            *args,
        ]

    def wait_quiet(self) -> float:
        waited = self.cpu.wait_quiet(self.quiet_limit) if self.quiet_limit > 0 else 0.0
        self.quiet_waited += waited
        return waited

    def warm_kubectl(self) -> None:
        subprocess.run(self.kubectl("api-resources"), capture_output=True, check=True, timeout=60)

    # namespaces --------------------------------------------------------------------------------

    def new_namespaces(self, tag: str, count: int) -> list[str]:
        suffix = uuid.uuid4().hex[:6]
        names = [f"{NS_PREFIX}{tag}-{suffix}-{chr(ord('a') + i)}" for i in range(count)]
        for name in names:
            self.admin.request(
                "POST",
                "/api/v1/namespaces",
                body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                what=f"create namespace {name}",
            )
            self.created.append(name)
        return names

    def delete_namespaces(self, names: Sequence[str], timeout: float = 240.0) -> float:
        """Delete and wait until they are gone; seconds it took."""
        started = time.perf_counter()
        for name in names:
            self.admin.delete("v1", "Namespace", name)
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            pending = [n for n in pending if self.admin.get("v1", "Namespace", n) is not None]
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"namespaces {pending} still terminating after {timeout:.0f} s")
            if pending:
                time.sleep(0.25)
        for name in names:
            if name in self.created:
                self.created.remove(name)
        return time.perf_counter() - started

    def namespaces(self) -> list[str]:
        items, _ = self.admin.list("v1", "Namespace")
        return [i["metadata"]["name"] for i in items]

    def leftover_namespaces(self) -> list[str]:
        return [n for n in self.namespaces() if n.startswith(NS_PREFIX)]

    def settle(self, namespaces: Sequence[str], expected: int, timeout: float = 180.0) -> float:
        """Wait until `expected` Deployments in `namespaces` are available and observed."""
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        while True:
            ready = 0
            for namespace in namespaces:
                items, _ = self.admin.list("apps/v1", "Deployment", namespace)
                ready += sum(1 for item in items if deployment_ready(item))
            if ready >= expected:
                return time.perf_counter() - started
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ready}/{expected} Deployments ready after {timeout} s")
            time.sleep(0.5)

    # API-server request counts -----------------------------------------------------------------

    def request_counts(self) -> dict[str, float]:
        """Every `apiserver_request_total` sample, by its label set (`kubectl get --raw`)."""
        self.metrics_reads += 1
        metrics = subprocess.run(
            self.kubectl("get", "--raw", "/metrics"),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        samples = {}
        for line in metrics.splitlines():
            if line.startswith("apiserver_request_total{"):
                key, value = line.rsplit(" ", 1)
                samples[key[len("apiserver_request_total") :]] = float(value)
        return samples


def deployment_ready(item: Mapping[str, Any]) -> bool:
    status = item.get("status") or {}
    metadata = item.get("metadata") or {}
    wanted = (item.get("spec") or {}).get("replicas", 1)
    return bool(
        status.get("observedGeneration") == metadata.get("generation")
        and status.get("availableReplicas", 0) == wanted
        and status.get("updatedReplicas", 0) == wanted
    )


def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, int]:
    changed = {}
    for key, value in after.items():
        diff = round(value - before.get(key, 0.0))
        if diff:
            changed[key] = diff
    return changed


def label_value(key: str, name: str) -> str:
    marker = f'{name}="'
    start = key.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return key[start : key.find('"', start)]


BACKGROUND_RESOURCES = {"leases", "events"}


def summarize_delta(changed: Mapping[str, int], own_reads: int = 0) -> dict[str, Any]:
    """Total requests, and those on resources the benchmark touches (no leases or events).

    `own_reads`: what the benchmark's own /metrics read between the two samples added (0 when
    the API server does not count /metrics, as v1.36.3 does not).
    """
    total = sum(changed.values()) - own_reads
    scoped = sum(
        v for k, v in changed.items() if label_value(k, "resource") not in BACKGROUND_RESOURCES
    )
    by_verb: dict[str, int] = {}
    for key, value in changed.items():
        verb = label_value(key, "verb")
        resource = label_value(key, "resource")
        subresource = label_value(key, "subresource")
        name = f"{verb} {'/'.join(x for x in (resource, subresource) if x) or '?'}"
        by_verb[name] = by_verb.get(name, 0) + value
    applies = sum(v for k, v in changed.items() if label_value(k, "verb") == "APPLY")
    return {
        "total": total,
        "scoped": scoped,
        "apply_verb": applies,
        "by_verb_resource": dict(sorted(by_verb.items())),
    }


# -- statistics and the table -------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {
        "median": common.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def median_or_none(values: Sequence[float]) -> float | None:
    return common.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value * 1000:.0f} ms"
    if unit == "x":
        return f"{value:.2f}x"
    if float(value).is_integer():
        return f"{int(value)}"
    return f"{value:.1f}"


# -- 1. apply -----------------------------------------------------------------------------------


def run_kubectl(cluster: Cluster, args: Sequence[str], ok: Sequence[int] = (0,)) -> int:
    result = subprocess.run(
        cluster.kubectl(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300
    )
    if result.returncode not in ok:
        raise RuntimeError(
            f"kubectl {' '.join(args[:3])} exited {result.returncode}: "
            f"{result.stderr.decode(errors='replace')[-800:]}"
        )
    if "-v=6" in args:
        cluster.kubectl_responses += responses(result.stderr)
    return result.returncode


def responses(log: bytes) -> int:
    """HTTP requests in a kubectl -v=6 log (one "Response" line each)."""
    return sum(1 for line in log.splitlines() if b'] "Response" verb=' in line)


def apply_round(
    cluster: Cluster,
    tool: str,
    concurrency: int,
    count: int,
    workdir: Path,
    kapp: Path | None,
    settle: bool,
) -> dict[str, Any]:
    """One fresh namespace pair: create N objects, (settle,) update them all; then delete."""
    namespaces = cluster.new_namespaces("apply", 2)
    placement = placement_in(namespaces)
    result: dict[str, Any] = {
        "tool": tool,
        "concurrency": concurrency,
        "namespaces": namespaces,
        "loadavg_1m": os.getloadavg()[0],
    }
    try:
        for step, revision in (("create", 1), ("update", 2)):
            objects = make_objects(count, namespaces, revision)
            folder = None
            if tool != "conveyor":
                labelled = prepare(cluster.admin, objects, placement, DIGEST)
                folder = write_manifests(labelled, workdir / f"{tool}-{step}")
            apply = partial(
                apply_with, cluster, tool, concurrency, objects, placement, folder, kapp
            )
            result[step] = timed_apply(cluster, apply, count)
            log_apply(tool, concurrency, step, result[step])
            if step == "create" and settle:
                result["settle_seconds"] = cluster.settle(namespaces, count // 5)
    finally:
        result["delete_seconds"] = cluster.delete_namespaces(namespaces)
    return result


def timed_apply(
    cluster: Cluster, apply: Callable[[], tuple[int | None, int | None]], count: int
) -> dict[str, Any]:
    """One `apply()` of `count` objects, in a quiet moment: its seconds, requests and CPU (see
    the module's doc)."""
    quiet_wait = cluster.wait_quiet()
    before = cluster.request_counts()
    cpu_before = cluster.cpu.sample()
    started = time.perf_counter()
    requests, applied = apply()
    seconds = time.perf_counter() - started
    cpu = cluster.cpu.spent(cpu_before, cluster.cpu.sample())
    if applied is not None and applied != count:
        raise RuntimeError(f"apply_bundle applied {applied} of {count}")
    after = cluster.request_counts()
    return {
        "seconds": seconds,
        "client_requests": requests,
        "apiserver": summarize_delta(delta(before, after), cluster.read_cost),
        "cpu": cpu,
        "quiet_wait": quiet_wait,
    }


def apply_with(
    cluster: Cluster,
    tool: str,
    concurrency: int,
    objects: list[dict[str, Any]],
    placement: Placement,
    folder: Path | None,
    kapp: Path | None,
) -> tuple[int | None, int | None]:
    """Apply with `tool` (the timed part): (requests sent, objects applied), known for
    Conveyor only; kubectl and kapp apply the manifests written to `folder`."""
    if tool == "conveyor":
        kube = Kube(cluster.kubeconfig)
        report = apply_bundle(kube, objects, placement, digest=DIGEST, concurrency=concurrency)
        return kube.requests, len(report.applied)
    assert folder is not None
    if tool == "kubectl":
        run_kubectl(cluster, ["apply", "--server-side", "-f", str(folder)])
    else:  # kapp
        assert kapp is not None
        run_kapp(cluster, kapp, folder, placement.namespace)
    return None, None


def log_apply(tool: str, concurrency: int, step: str, measured: Mapping[str, Any]) -> None:
    seconds, requests = measured["seconds"], measured["client_requests"]
    cpu, quiet_wait = measured["cpu"], measured["quiet_wait"]
    log(
        f"  {tool:8s} c={concurrency:<3d} {step}: {seconds:6.2f} s"
        + (f", {requests} requests" if requests is not None else "")
        + f"; CPU s: tool {cpu['bench'] + cpu['kubectl']:.2f}, cluster "
        f"{cpu['cluster']:.2f}, other processes {cpu['other']:.2f}"
        + (f" (waited {quiet_wait:.1f} s for quiet)" if quiet_wait > 0.6 else "")
    )


def run_kapp(cluster: Cluster, kapp: Path, folder: Path, namespace: str) -> None:
    result = subprocess.run(
        [
            str(kapp),
            "deploy",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            namespace,
            "-a",
            APP,
            "-f",
            str(folder),
            "--yes",
            "--wait=false",
            "--tty=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kapp deploy exited {result.returncode}: {result.stderr[-800:]!r}")


def build_kapp(timeout: float) -> tuple[Path | None, str]:
    """kapp from `go install` into /tmp, once; (binary, note). Never raises."""
    binary = KAPP_DIR / "bin" / "kapp"
    if binary.is_file():
        return binary, f"kapp: using {binary}"
    go = shutil.which("go")
    if go is None:
        return None, "kapp skipped: no `go` on PATH"
    env = dict(
        os.environ,
        GOBIN=str(KAPP_DIR / "bin"),
        GOPATH=str(KAPP_DIR / "gopath"),
        GOCACHE=str(KAPP_DIR / "gocache"),
        GOFLAGS="-modcacherw",
    )
    KAPP_DIR.mkdir(parents=True, exist_ok=True)
    log(f"building kapp: go install {KAPP_MODULE} (at most {timeout:.0f} s)")
    try:
        process = subprocess.Popen(
            [go, "install", KAPP_MODULE],
            env=env,
            cwd=KAPP_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as error:
        return None, f"kapp skipped: cannot run go ({error})"
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, 9)
        process.wait()
        return None, f"kapp skipped: `go install {KAPP_MODULE}` did not finish in {timeout:.0f} s"
    if process.returncode != 0 or not binary.is_file():
        first = output.decode(errors="replace").strip().splitlines()[:2]
        return None, f"kapp skipped: `go install {KAPP_MODULE}` failed: {' '.join(first)[:300]}"
    return binary, f"kapp: built {binary}"


# -- 2. drift -----------------------------------------------------------------------------------


def drift_measurement(cluster: Cluster, count: int, repeat: int, workdir: Path) -> dict[str, Any]:
    namespaces = cluster.new_namespaces("drift", 2)
    placement = placement_in(namespaces)
    objects = make_objects(count, namespaces, 1)
    runs: dict[str, list[dict[str, Any]]] = {"conveyor": [], "kubectl": []}
    try:
        apply_bundle(Kube(cluster.kubeconfig), objects, placement, digest=DIGEST)
        prepared = prepare(cluster.admin, objects, placement, DIGEST)
        folder = write_manifests(prepared, workdir / "drift")
        cluster.settle(namespaces, count // 5)
        time.sleep(1.0)  # let the controllers' last status writes pass
        idle_seconds = 1.0
        idle = idle_requests(cluster, idle_seconds)
        kinds_namespaces = len({(o["kind"], o["metadata"]["namespace"]) for o in prepared})
        for index in range(repeat):
            for tool in alternating(index):
                runs[tool].append(drift_check(cluster, tool, objects, placement, folder))
    finally:
        delete_seconds = cluster.delete_namespaces(namespaces)
    return {
        "kinds_x_namespaces": kinds_namespaces,
        "idle": {"seconds": idle_seconds, **idle},
        "runs": runs,
        "delete_seconds": delete_seconds,
    }


def alternating(index: int) -> tuple[str, str]:
    """Which tool goes first in repetition `index`: each in turn."""
    return ("conveyor", "kubectl") if index % 2 == 0 else ("kubectl", "conveyor")


def idle_requests(cluster: Cluster, seconds: float) -> dict[str, Any]:
    """The API server's requests while nobody asks it anything for `seconds`."""
    before = cluster.request_counts()
    time.sleep(seconds)
    idle = summarize_delta(delta(before, cluster.request_counts()))
    log(
        f"  idle API server: {idle['total']} requests in {seconds:.0f} s "
        f"({idle['scoped']} not leases/events)"
    )
    return idle


def conveyor_drift(
    cluster: Cluster, objects: list[dict[str, Any]], placement: Placement
) -> tuple[int, int]:
    """Conveyor's drift check, as reconcile runs it: (objects drifted, requests sent)."""
    kube = Kube(cluster.kubeconfig)
    desired = prepare(kube, objects, placement, DIGEST)
    drifts = detect(kube, desired, app=APP, target=TARGET)
    return len(drifts), kube.requests


def drift_check(
    cluster: Cluster, tool: str, objects: list[dict[str, Any]], placement: Placement, folder: Path
) -> dict[str, Any]:
    """One timed no-op drift check with `tool`, in a quiet moment."""
    quiet_wait = cluster.wait_quiet()
    before = cluster.request_counts()
    cpu_before = cluster.cpu.sample()
    requests: int | None = None
    if tool == "conveyor":
        seconds, (drifted, requests) = common.timed(
            partial(conveyor_drift, cluster, objects, placement)
        )
        if drifted:
            raise RuntimeError(f"drift.detect found {drifted} drifted objects (no-op)")
    else:
        diff = ["diff", "--server-side", "-f", str(folder)]
        seconds, code = common.timed(partial(run_kubectl, cluster, diff, ok=(0, 1)))
        if code != 0:
            raise RuntimeError("kubectl diff --server-side found a diff in a no-op")
    cpu = cluster.cpu.spent(cpu_before, cluster.cpu.sample())
    after = cluster.request_counts()
    server = summarize_delta(delta(before, after), cluster.read_cost)
    log(
        f"  {tool:8s} drift: {seconds:6.3f} s, API server +{server['total']} "
        f"({server['scoped']} not leases/events)"
        + (f", client {requests}" if requests is not None else "")
    )
    return {
        "seconds": seconds,
        "client_requests": requests,
        "apiserver": server,
        "cpu": cpu,
        "quiet_wait": quiet_wait,
    }


# -- 3. readiness -------------------------------------------------------------------------------


class ReadyWatch:
    """An independent watch on Deployments in one namespace: when each was first seen ready."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kube = Kube(kubeconfig)
        self.namespace = namespace
        self.ready_at: dict[str, float] = {}
        self.seen_at: dict[str, float] = {}
        self.condition = threading.Condition()
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.stream: Any = None
        self.thread = threading.Thread(target=self._run, name="bench-ready-watch", daemon=True)

    def start(self) -> None:
        items, self.version = self.kube.list("apps/v1", "Deployment", self.namespace)
        for item in items:
            self._see(item)
        self.thread.start()

    def _see(self, obj: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        ready = status.get("availableReplicas") == obj["spec"]["replicas"] and status.get(
            "observedGeneration"
        ) == obj["metadata"].get("generation")
        with self.condition:
            self.seen_at.setdefault(name, now)
            if ready and name not in self.ready_at:
                self.ready_at[name] = now
                self.condition.notify_all()

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                try:
                    self.stream = self.kube.watch(
                        "apps/v1", "Deployment", self.namespace, self.version, timeout_seconds=30
                    )
                    if self.stopped.is_set():
                        return
                    for kind, obj in self.stream:
                        self.version = obj["metadata"].get("resourceVersion") or self.version
                        if kind in ("ADDED", "MODIFIED"):
                            self._see(obj)
                        if self.stopped.is_set():
                            return
                except ResourceExpired:
                    items, self.version = self.kube.list("apps/v1", "Deployment", self.namespace)
                    for item in items:
                        self._see(item)
        except BaseException as error:  # reported by wait_for
            self.error = error

    def wait_for(self, name: str, timeout: float = 30.0) -> float:
        with self.condition:
            self.condition.wait_for(lambda: name in self.ready_at, timeout=timeout)
        if self.error:
            raise RuntimeError(f"the readiness watch failed: {self.error}")
        if name not in self.ready_at:
            raise RuntimeError(f"Deployment {name} not seen ready within {timeout} s")
        return self.ready_at[name]

    def stop(self) -> None:
        self.stopped.set()
        if self.stream is not None:
            self.stream.close()  # conveyor.kube.WatchStream: ends the iteration quietly
        self.thread.join(timeout=5)


def readiness_measurement(cluster: Cluster, repeat: int, workdir: Path) -> dict[str, Any]:
    (namespace,) = cluster.new_namespaces("ready", 1)
    watch = ReadyWatch(cluster.kubeconfig, namespace)
    watch.start()
    runs: dict[str, list[dict[str, Any]]] = {"conveyor": [], "kubectl": []}
    try:
        for index in range(repeat):
            for tool in alternating(index):
                name = f"ready-{tool}-{index}"
                runs[tool].append(readiness_run(cluster, watch, tool, name, workdir))
    finally:
        watch.stop()
        delete_seconds = cluster.delete_namespaces([namespace])
    return {"namespace_objects": 2 * repeat, "runs": runs, "delete_seconds": delete_seconds}


@dataclass(frozen=True)
class Reported:
    """When (perf_counter) a tool started applying, had applied, reported the Deployment ready
    and exited; and the requests it sent."""

    started: float
    applied: float
    reported: float
    exited: float
    requests: int | None


def readiness_run(
    cluster: Cluster, watch: ReadyWatch, tool: str, name: str, workdir: Path
) -> dict[str, Any]:
    """Apply a 3-replica Deployment `name` and wait with `tool`; how long after the cluster
    had it ready the tool said so."""
    obj = deployment(name, watch.namespace, 3)
    before = cluster.request_counts()
    if tool == "conveyor":
        moments = conveyor_ready(cluster, obj)
    else:
        moments = kubectl_ready(cluster, obj, workdir / f"{name}.yaml")
    ready = watch.wait_for(name)
    time.sleep(0.3)  # let the tools' last requests land before reading the counter
    server = summarize_delta(delta(before, cluster.request_counts()), cluster.read_cost)
    run: dict[str, Any] = {
        "latency_after_ready": moments.reported - ready,
        "apply_to_reported": moments.reported - moments.started,
        "apply_to_cluster_ready": ready - moments.started,
        "apply_seconds": moments.applied - moments.started,
        "exit_after_report": moments.exited - moments.reported,
        "client_requests": moments.requests,
        "apiserver": server,
    }
    log(
        f"  {tool:8s} ready: +{run['latency_after_ready'] * 1000:6.0f} ms after the "
        f"cluster, apply->reported {run['apply_to_reported'] * 1000:5.0f} ms "
        f"(cluster ready at {run['apply_to_cluster_ready'] * 1000:5.0f} ms)"
        + (f", client {moments.requests} requests" if moments.requests is not None else "")
    )
    return run


def conveyor_ready(cluster: Cluster, obj: dict[str, Any]) -> Reported:
    """`Kube.apply`, then `wait_ready`, in this process."""
    kube = Kube(cluster.kubeconfig)
    started = time.perf_counter()
    kube.apply(obj)
    applied = time.perf_counter()
    result = wait_ready(kube, [obj], timeout=60)
    reported = time.perf_counter()
    if not result.ready:
        raise RuntimeError(f"wait_ready: {result.states}")
    return Reported(started, applied, reported, reported, kube.requests)


def kubectl_ready(cluster: Cluster, obj: dict[str, Any], path: Path) -> Reported:
    """`kubectl apply --server-side`, then `kubectl rollout status`; their requests counted
    from their -v=6 logs."""
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    cluster.kubectl_responses = 0
    started = time.perf_counter()
    run_kubectl(cluster, ["apply", "--server-side", "-f", str(path), "-v=6"])
    applied = time.perf_counter()
    process = subprocess.Popen(
        cluster.kubectl(
            "rollout", "status", "-n", namespace, f"deployment/{name}", "--timeout=60s", "-v=6"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    reported: float | None = None
    for line in process.stdout:
        if b"successfully rolled out" in line:
            reported = time.perf_counter()
    code = process.wait(timeout=70)
    exited = time.perf_counter()
    assert process.stderr is not None
    stderr = process.stderr.read()
    if code != 0 or reported is None:
        raise RuntimeError(f"kubectl rollout status exited {code}: {stderr[-500:]!r}")
    requests = cluster.kubectl_responses + responses(stderr)
    return Reported(started, applied, reported, exited, requests)


# -- the run ------------------------------------------------------------------------------------


def ensure_platform() -> LocalPlatform:
    platform = LocalPlatform(STATE)
    health = platform.status()
    if not all(h.healthy for h in health):
        log(
            "platform not healthy ("
            + ", ".join(f"{h.component}: {h.detail}" for h in health)
            + "); running up()"
        )
        health = platform.up()
    bad = [h for h in health if not h.healthy]
    if bad:
        raise SystemExit(f"platform not healthy: {bad}")
    return platform


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": pyplatform.python_version(),
        "system": f"{pyplatform.system()} {pyplatform.release()}",
        "loadavg_start": list(os.getloadavg()),
    }


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = common.argument_parser(
        __doc__,
        repeat=3,
        repeat_help="repeats of the drift check",
        results=RESULTS,
        results_option="--output",
    )
    parser.add_argument(
        "--objects", type=int, default=1000, help="objects per apply (default 1000)"
    )
    parser.add_argument(
        "--ready-repeat",
        type=int,
        default=5,
        help="repeats of the readiness measurement (default 5; about 1 s each)",
    )
    parser.add_argument(
        "--apply-repeat",
        type=int,
        default=3,
        help="apply rounds for conveyor c=16 and kubectl (default 3; a round with 200 "
        "Deployments costs ~20 s on 2 cores, most of it waiting for namespace deletion)",
    )
    parser.add_argument(
        "--sweep-repeat",
        type=int,
        default=1,
        help="repeats of the apply rounds for the other concurrencies (default 1)",
    )
    parser.add_argument("--concurrency", default="8,16,32", help="Conveyor concurrencies to try")
    parser.add_argument(
        "--settle",
        action="store_true",
        help="wait until the Deployments are available between create and update (adds ~45 s "
        "a round: the controller-manager creates 200 ReplicaSets and pods at its 20 QPS)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=6.0,
        help="before each timed apply or drift check, wait at most this long for other "
        "processes to use under a quarter of a core (default 6 s; 0 turns it off)",
    )
    parser.add_argument("--kapp", choices=("auto", "skip"), default="auto")
    parser.add_argument("--kapp-build-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    args.concurrencies = [int(c) for c in args.concurrency.split(",")]
    if DEFAULT_CONCURRENCY not in args.concurrencies:
        args.concurrencies.insert(0, DEFAULT_CONCURRENCY)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    run_started = time.perf_counter()
    info = machine()
    log(
        f"machine: {info['cpus']} cores ({info['cpu_model']}), load average "
        + " ".join(f"{x:.2f}" for x in info["loadavg_start"])
    )
    platform = ensure_platform()
    kubectl = platform.kubernetes.kubectl()
    version = subprocess.run(
        [str(kubectl), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    log(f"platform healthy; kubectl {kubectl} ({version})")
    kapp, kapp_note = find_kapp(args)
    log(kapp_note)

    workdir = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    cluster = Cluster(
        platform.kubernetes.kubeconfig,
        kubectl,
        workdir,
        CpuMeter(platform.kubernetes.health().processes),
        args.quiet_wait,
    )
    prepared = prepare_cluster(cluster)
    plan = describe_plan(args, kapp)
    log("plan: " + plan)
    results = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "kubectl": {"path": str(kubectl), "version": version},
        "kapp": {"path": str(kapp) if kapp else None, "note": kapp_note},
        **prepared,
        "plan": plan,
        "parameters": parameters(args),
    }
    try:
        run_measurements(cluster, args, kapp, workdir, results)
    finally:
        if cluster.created:
            log(f"cleaning up namespaces {cluster.created}")
            cluster.delete_namespaces(list(cluster.created))
        shutil.rmtree(workdir, ignore_errors=True)
    finish(results, cluster, run_started, args.output)
    return 0


def find_kapp(args: argparse.Namespace) -> tuple[Path | None, str]:
    if args.kapp == "auto":
        return build_kapp(args.kapp_build_timeout)
    return None, "kapp skipped (--kapp skip)"


def prepare_cluster(cluster: Cluster) -> dict[str, Any]:
    """Delete what an earlier run left, warm kubectl's discovery cache, learn what reading the
    request counters costs and whether others use the cluster; what the results record of it."""
    leftovers = cluster.leftover_namespaces()
    if leftovers:
        log(f"deleting {len(leftovers)} namespace(s) left by an earlier run: {leftovers}")
        cluster.delete_namespaces(leftovers)
    cluster.warm_kubectl()

    # Do our own /metrics reads count in apiserver_request_total? Look for their series, and
    # read it back to back a few times (the smallest difference bounds the cost of one read).
    reads = [cluster.request_counts() for _ in range(4)]
    series = [k for k in reads[-1] if "/metrics" in k]
    back_to_back = min(sum(delta(a, b).values()) for a, b in itertools.pairwise(reads))
    own = 1 if series else 0
    cluster.read_cost = own
    log(
        f"/metrics reads {'are' if series else 'are not'} counted in apiserver_request_total "
        f"(series: {len(series)}; smallest back-to-back difference {back_to_back})"
    )
    others = [
        n for n in cluster.namespaces() if not n.startswith(("kube-", NS_PREFIX)) and n != "default"
    ]
    if others:
        log(f"note: the cluster is shared: other namespaces present: {', '.join(others)}")
    return {
        "metrics_read_cost": own,
        "metrics_back_to_back_min_delta": back_to_back,
        "other_namespaces_at_start": others,
    }


def describe_plan(args: argparse.Namespace, kapp: Path | None) -> str:
    return (
        f"objects={args.objects} (ConfigMaps {args.objects - args.objects // 5}, Deployments "
        f"{args.objects // 5}, 2 namespaces); apply rounds: conveyor c={DEFAULT_CONCURRENCY} and "
        f"kubectl x{args.apply_repeat}, conveyor c="
        + "/".join(str(c) for c in args.concurrencies if c != DEFAULT_CONCURRENCY)
        + f" x{args.sweep_repeat}"
        + (f", kapp x{args.apply_repeat}" if kapp else "")
        + f"; drift x{args.repeat}; readiness x{args.ready_repeat}"
        + (
            "; settle between create and update"
            if args.settle
            else "; update right after create (no settle)"
        )
        + (
            f"; each timed apply/drift waits up to {args.quiet_wait:g} s for other processes "
            "to quieten"
            if args.quiet_wait > 0
            else ""
        )
    )


def parameters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "objects": args.objects,
        "repeat": args.repeat,
        "ready_repeat": args.ready_repeat,
        "apply_repeat": args.apply_repeat,
        "sweep_repeat": args.sweep_repeat,
        "settle": args.settle,
        "quiet_wait": args.quiet_wait,
        "concurrency": args.concurrencies,
        "default_concurrency": DEFAULT_CONCURRENCY,
    }


def run_measurements(
    cluster: Cluster,
    args: argparse.Namespace,
    kapp: Path | None,
    workdir: Path,
    results: dict[str, Any],
) -> None:
    log("1. apply (create, then update) into fresh namespace pairs")
    apply_runs = []
    for index, tool, concurrency in apply_rounds(args, kapp):
        run = apply_round(cluster, tool, concurrency, args.objects, workdir, kapp, args.settle)
        run["batch"] = index
        apply_runs.append(run)
    results["apply"] = summarize_apply(apply_runs, DEFAULT_CONCURRENCY)

    log("2. no-op drift check")
    results["drift"] = drift_measurement(cluster, args.objects, args.repeat, workdir)

    log("3. readiness latency")
    results["readiness"] = readiness_measurement(cluster, args.ready_repeat, workdir)


def apply_rounds(args: argparse.Namespace, kapp: Path | None) -> list[tuple[int, str, int]]:
    """(batch, tool, concurrency) of every apply round: each batch has conveyor at the default
    concurrency, kubectl (and kapp) for --apply-repeat batches and the other concurrencies for
    --sweep-repeat batches; every other batch runs in reverse order."""
    rounds: list[tuple[int, str, int]] = []
    for index in range(max(args.apply_repeat, args.sweep_repeat)):
        batch: list[tuple[str, int]] = []
        if index < args.apply_repeat:
            batch += [("conveyor", DEFAULT_CONCURRENCY), ("kubectl", 0)]
            if kapp:
                batch.append(("kapp", 0))
        if index < args.sweep_repeat:
            batch += [("conveyor", c) for c in args.concurrencies if c != DEFAULT_CONCURRENCY]
        if index % 2:
            batch.reverse()
        rounds += [(index, tool, concurrency) for tool, concurrency in batch]
    return rounds


def finish(results: dict[str, Any], cluster: Cluster, run_started: float, output: Path) -> None:
    """Summarise, print the table, write the results file."""
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    results["total_seconds"] = time.perf_counter() - run_started
    results["metrics_reads"] = cluster.metrics_reads
    results["quiet_waited_seconds"] = round(cluster.quiet_waited, 1)
    results["summary"] = summary(results)
    table = render_table(results)
    results["table"] = table
    print()
    print(table)
    common.write_results(output, results, indent=1)
    log(
        f"total {results['total_seconds']:.0f} s (of which {cluster.quiet_waited:.0f} s waiting "
        f"for other processes to quieten); wrote {output}"
    )


def summarize_apply(runs: list[dict[str, Any]], default_concurrency: int) -> dict[str, Any]:
    configs: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = run["tool"] if run["tool"] != "conveyor" else f"conveyor-c{run['concurrency']}"
        config = configs.setdefault(key, {"tool": run["tool"], "concurrency": run["concurrency"]})
        for step in ("create", "update"):
            config.setdefault(step, []).append(run[step]["seconds"])
            config.setdefault(f"{step}_requests", []).append(run[step]["client_requests"])
            config.setdefault(f"{step}_apiserver", []).append(run[step]["apiserver"]["total"])
            config.setdefault(f"{step}_apply_verb", []).append(run[step]["apiserver"]["apply_verb"])
            cpu = run[step]["cpu"]
            config.setdefault(f"{step}_cpu_tool", []).append(cpu["bench"] + cpu["kubectl"])
            config.setdefault(f"{step}_cpu_cluster", []).append(cpu["cluster"])
            config.setdefault(f"{step}_cpu_other", []).append(cpu["other"])
    for config in configs.values():
        for step in ("create", "update"):
            config[f"{step}_stats"] = stats(config.pop(step))
    # Paired ratios: conveyor at the default concurrency against the kubectl run next to it in
    # the same batch (minutes apart at most), less exposed to slow swings in the machine's load.
    paired: dict[str, list[float]] = {"create": [], "update": []}
    for batch in sorted({run["batch"] for run in runs}):
        mine = [r for r in runs if r["batch"] == batch]
        conveyor_run = next(
            (
                r
                for r in mine
                if r["tool"] == "conveyor" and r["concurrency"] == default_concurrency
            ),
            None,
        )
        kubectl_run = next((r for r in mine if r["tool"] == "kubectl"), None)
        if conveyor_run and kubectl_run:
            for step in paired:
                paired[step].append(conveyor_run[step]["seconds"] / kubectl_run[step]["seconds"])
    conveyor = {k: v for k, v in configs.items() if v["tool"] == "conveyor"}
    best = min(
        conveyor,
        key=lambda k: conveyor[k]["create_stats"]["median"] + conveyor[k]["update_stats"]["median"],
    )
    return {
        "configs": configs,
        "default": f"conveyor-c{default_concurrency}",
        "best": best,
        "paired_ratios": paired,
        "runs": runs,
    }


def summary(results: Mapping[str, Any]) -> dict[str, Any]:
    apply = results["apply"]
    configs = apply["configs"]
    kubectl = configs["kubectl"]
    out: dict[str, Any] = {"apply": {}, "drift": {}, "readiness": {}}
    for step in ("create", "update"):
        k = kubectl[f"{step}_stats"]["median"]
        for label in ("default", "best"):
            c = configs[apply[label]][f"{step}_stats"]["median"]
            out["apply"][f"{step}_{label}_ratio"] = ratio(c, k)
        out["apply"][f"{step}_paired_ratio_median"] = median_or_none(apply["paired_ratios"][step])
        out["apply"][f"{step}_goal_met"] = out["apply"][f"{step}_default_ratio"] <= 0.5
    drift = results["drift"]
    c_runs, k_runs = drift["runs"]["conveyor"], drift["runs"]["kubectl"]
    c_seconds = median_or_none([r["seconds"] for r in c_runs])
    c_requests = median_or_none([r["client_requests"] for r in c_runs])
    out["drift"] = {
        "conveyor_seconds": c_seconds,
        "kubectl_seconds": median_or_none([r["seconds"] for r in k_runs]),
        "ratio": ratio(c_seconds, median_or_none([r["seconds"] for r in k_runs])),
        "conveyor_client_requests": c_requests,
        "conveyor_apiserver_requests": median_or_none([r["apiserver"]["total"] for r in c_runs]),
        "kubectl_apiserver_requests": median_or_none([r["apiserver"]["total"] for r in k_runs]),
        "kinds_x_namespaces": drift["kinds_x_namespaces"],
        "goal_seconds_met": c_seconds is not None and c_seconds <= 1.0,
        # "a small constant": discovery of each group-version (2 here) plus 2 to spare
        "goal_requests_met": c_requests is not None
        and c_requests <= drift["kinds_x_namespaces"] + 4,
    }
    ready = results["readiness"]["runs"]
    for tool in ("conveyor", "kubectl"):
        out["readiness"][f"{tool}_latency"] = median_or_none(
            [r["latency_after_ready"] for r in ready[tool]]
        )
        out["readiness"][f"{tool}_apply_to_reported"] = median_or_none(
            [r["apply_to_reported"] for r in ready[tool]]
        )
        out["readiness"][f"{tool}_apply_to_cluster_ready"] = median_or_none(
            [r["apply_to_cluster_ready"] for r in ready[tool]]
        )
    out["readiness"]["goal_met"] = out["readiness"]["conveyor_latency"] <= 0.1
    return out


def render_table(results: Mapping[str, Any]) -> str:
    apply = results["apply"]
    default, best = apply["configs"][apply["default"]], apply["configs"][apply["best"]]
    header = (
        "measurement (median)",
        f"conveyor c={default['concurrency']}",
        f"conveyor best (c={best['concurrency']})",
        "kubectl",
        "ratio c16 / best",
        "goal",
    )
    rows = [*apply_rows(results), *drift_rows(results), *readiness_rows(results)]
    return common.markdown_table(header, rows)


def row(*cells: str) -> tuple[str, ...]:
    """A row of the table's six columns; the cells not given are empty."""
    return (*cells, *[""] * (6 - len(cells)))


def met(flag: bool) -> str:
    return "met" if flag else "MISSED"


def apply_rows(results: Mapping[str, Any]) -> list[tuple[str, ...]]:
    apply = results["apply"]
    configs = apply["configs"]
    default, best = configs[apply["default"]], configs[apply["best"]]
    kubectl = configs["kubectl"]
    s = results["summary"]["apply"]
    rows: list[tuple[str, ...]] = []
    for step, verb in (("create", "creates"), ("update", "updates")):
        c = default[f"{step}_stats"]["median"]
        b = best[f"{step}_stats"]["median"]
        k = kubectl[f"{step}_stats"]["median"]
        rows.append(
            row(
                f"apply {results['parameters']['objects']} objects, {verb}",
                fmt(c, "s"),
                fmt(b, "s"),
                fmt(k, "s"),
                f"{fmt(ratio(c, k), 'x')} / {fmt(ratio(b, k), 'x')}",
                f"<= 0.5x: {met(s[f'{step}_goal_met'])} ({s[f'{step}_default_ratio']:.3f})",
            )
        )
        paired = "paired: " + fmt(s[f"{step}_paired_ratio_median"], "x")
        rows += apply_detail_rows(step, (default, best, kubectl), paired)

    def both_steps(config: Mapping[str, Any]) -> str:
        return (
            f"{fmt(config['create_stats']['median'], 's')} / "
            f"{fmt(config['update_stats']['median'], 's')}"
        )

    for key, config in sorted(configs.items()):
        if config["tool"] == "conveyor" and key not in (apply["default"], apply["best"]):
            rows.append(
                row(f"  conveyor c={config['concurrency']} create / update", both_steps(config))
            )
    if "kapp" in configs:
        rows.append(row("  kapp deploy create / update", both_steps(configs["kapp"])))
    return rows


def apply_detail_rows(
    step: str, columns: tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], paired: str
) -> list[tuple[str, ...]]:
    """Requests sent, the API server's APPLY and other requests, and CPU, of one step, for the
    default concurrency, the best one and kubectl; `paired`: the paired ratio's cell."""
    default, best, kubectl = columns

    def requests(config: Mapping[str, Any]) -> str:
        return (
            f"{fmt(median_or_none(config[f'{step}_apply_verb']))} / "
            f"{fmt(median_or_none(config[f'{step}_apiserver']))}"
        )

    def cpu(config: Mapping[str, Any]) -> str:
        return " / ".join(
            f"{median_or_none(config[f'{step}_cpu_{part}']) or 0:.1f}"
            for part in ("tool", "cluster", "other")
        )

    return [
        row(
            "  requests sent (Kube.requests)",
            fmt(median_or_none(default[f"{step}_requests"])),
            fmt(median_or_none(best[f"{step}_requests"])),
            "-",
        ),
        row(
            "  API server: APPLY requests / all requests",
            requests(default),
            requests(best),
            requests(kubectl),
        ),
        row(
            "  CPU s: tool / cluster / other processes",
            cpu(default),
            cpu(best),
            cpu(kubectl),
            paired,
        ),
    ]


def drift_rows(results: Mapping[str, Any]) -> list[tuple[str, ...]]:
    d = results["summary"]["drift"]
    return [
        row(
            f"no-op drift check, {results['parameters']['objects']} objects",
            fmt(d["conveyor_seconds"], "s"),
            "",
            fmt(d["kubectl_seconds"], "s"),
            fmt(d["ratio"], "x"),
            f"<= 1 s: {met(d['goal_seconds_met'])}",
        ),
        row(
            "  client requests (Kube.requests)",
            fmt(d["conveyor_client_requests"]),
            "",
            "-",
            "",
            f"<= {d['kinds_x_namespaces']}+4: {met(d['goal_requests_met'])}",
        ),
        row(
            "  API server requests (delta)",
            fmt(d["conveyor_apiserver_requests"]),
            "",
            fmt(d["kubectl_apiserver_requests"]),
            fmt(ratio(d["conveyor_apiserver_requests"], d["kubectl_apiserver_requests"]), "x"),
        ),
    ]


def readiness_rows(results: Mapping[str, Any]) -> list[tuple[str, ...]]:
    r = results["summary"]["readiness"]
    runs = results["readiness"]["runs"]

    def worst(tool: str) -> str:
        return fmt(max(x["latency_after_ready"] for x in runs[tool]), "ms")

    def requests(tool: str) -> str:
        return fmt(median_or_none([x["client_requests"] for x in runs[tool]]))

    def both(key: str) -> tuple[str, str, str]:
        return fmt(r[f"conveyor_{key}"], "ms"), "", fmt(r[f"kubectl_{key}"], "ms")

    def compared(key: str) -> str:
        return fmt(ratio(r[f"conveyor_{key}"], r[f"kubectl_{key}"]), "x")

    return [
        row(
            "readiness: reported after cluster ready",
            *both("latency"),
            compared("latency"),
            f"<= 100 ms: {met(r['goal_met'])}",
        ),
        row(f"  worst of {len(runs['conveyor'])}", worst("conveyor"), "", worst("kubectl")),
        row("  apply -> reported ready", *both("apply_to_reported"), compared("apply_to_reported")),
        row("  apply -> cluster ready (watch)", *both("apply_to_cluster_ready")),
        row(
            "  requests sent (conveyor: Kube.requests; kubectl: its -v=6 log)",
            requests("conveyor"),
            "",
            requests("kubectl"),
        ),
    ]


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConveyorError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(4)
