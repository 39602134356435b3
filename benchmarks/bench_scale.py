"""The control loop at fleet size: one idle cycle per cluster against a reconcile per target.

Run from the repository root, with the local platform up (`.venv/bin/conveyor platform up`):

    .venv/bin/python benchmarks/bench_scale.py [--apps 100] [--targets 10] [--cycles 3]
        [--sample 20] [--out FILE]

It builds a fleet on the platform's cluster: `--apps` apps of `--targets` targets each (100 x 10
= 1,000 targets by default), each target 10 objects (8 ConfigMaps, a Role, a ServiceAccount: no
Service, the cluster's service IP range would run out) in one of `--targets` shared namespaces,
every bundle built into the platform's registry and every target applied and recorded in a
state repository of the benchmark's own, as a release would leave them. Then, in this process,
through the platform's Prefect server and against the same cluster:

  per cluster  `reconcile_cluster("local")` (flows/reconcile_cluster.py), `--cycles` idle cycles:
               the whole fleet checked in one flow run
  per target   `reconcile(app, target)` (flows/reconcile.py), what each target's schedule ran
               every cycle before, for `--sample` targets; its cost for the fleet is the
               sample's mean times the number of targets (runs are independent)

For each: wall time, Prefect API requests (HTTP requests of Prefect's clients in this process,
counted on httpx; events, task runs' among them, travel over one websocket and are not
counted), flow runs created (POST /flow_runs/), task runs created (asked of the server
afterwards), and Kubernetes API requests (Conveyor's own client counts them). Goals (issue 14,
2-core machine): a cycle for 1,000 targets within 60 s, at most 10 Prefect API calls per
cluster, Kubernetes requests within kinds x clusters plus a small constant. Everything it
created (namespaces, the temporary folder) is deleted at the end; results go to
benchmarks/results/scale.json. A script, never a timed unit test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from conveyor.adapters import gitrepo
from conveyor.adapters.kube import Kube
from conveyor.bundles import artifact
from conveyor.platform.local import LocalPlatform
from conveyor.promotion import deploy
from conveyor.promotion.context import PROCESS_CONNECTIONS
from conveyor.records import state
from tests.support.git import git, init_repository
from tests.support.prefect import PrefectREST

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
KINDS = 3  # ConfigMap, Role, ServiceAccount


def manifests(app: str) -> str:
    documents = [
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-c{i}\ndata:\n  shard: '{i}'\n"
        for i in range(8)
    ]
    documents.append(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n"
        f"  name: {app}\nrules:\n  - apiGroups: ['']\n    resources: [configmaps]\n"
        "    verbs: [get]\n"
    )
    documents.append(f"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {app}\n")
    return "---\n".join(documents)


class Fleet:
    """The apps, their config, their bundles, and every target applied and recorded."""

    def __init__(self, work: Path, platform: LocalPlatform, apps: int, targets: int) -> None:
        self.work, self.platform = work, platform
        self.prefix = f"scale-{uuid.uuid4().hex[:6]}"
        self.apps = [f"{self.prefix}-a{n:03d}" for n in range(apps)]
        self.targets = [f"t{n}" for n in range(targets)]
        self.namespaces = [f"{self.prefix}-{t}" for t in self.targets]
        self.state_repository = work / "state.git"
        self.config = work / "config" / "conveyor.yaml"

    def write(self) -> None:
        source = self.work / "source"
        for app in self.apps:
            folder = source / app
            (folder / "manifests").mkdir(parents=True)
            (folder / "bundle.yaml").write_text(
                f"apiVersion: conveyor.dev/v1alpha1\nkind: Bundle\nname: {app}\n"
            )
            (folder / "manifests" / "objects.yaml").write_text(manifests(app))
        init_repository(source, "the fleet's sources")
        git(self.work, "init", "-q", "--bare", "-b", "main", str(self.state_repository))
        config = self.config.parent
        (config / "pipelines").mkdir(parents=True)
        (config / "none.yaml").write_text("{}\n")
        apps = {}
        for app in self.apps:
            apps[app] = {
                "source": {"repository": str(source), "ref": "HEAD", "path": app},
                "pipeline": f"pipelines/{app}.yaml",
            }
            targets = [
                {"name": t, "cluster": "local", "namespace": ns, "parameters": "none.yaml"}
                for t, ns in zip(self.targets, self.namespaces, strict=True)
            ]
            pipeline = {
                "apiVersion": "conveyor.dev/v1alpha1",
                "kind": "Pipeline",
                "name": app,
                "stages": [{"name": "fleet", "targets": targets}],
            }
            (config / "pipelines" / f"{app}.yaml").write_text(json.dumps(pipeline))
        self.config.write_text(
            json.dumps(
                {
                    "apiVersion": "conveyor.dev/v1alpha1",
                    "kind": "Config",
                    "registry": self.platform.registry.address,
                    "stateRepository": str(self.state_repository),
                    "clusters": {"local": {"kubeconfig": str(self.platform.kubernetes.kubeconfig)}},
                    "apps": apps,
                }
            )
        )

    def deploy(self, kube: Kube) -> None:
        """Build each app's bundle, apply it to its targets and record them, as a release
        would (without a flow: this is the set-up, not what is measured)."""
        for namespace in self.namespaces:
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        repo = gitrepo.open_state_repository(str(self.state_repository))

        def one_app(app: str) -> list[state.DesiredState]:
            store = artifact.open_store(
                f"{self.platform.registry.address}/conveyor/{app}"  # as the config's registry
            )
            built = artifact.build(str(self.work / "source"), "HEAD", app, store)
            recorded = []
            for target, namespace in zip(self.targets, self.namespaces, strict=True):
                rendered = deploy.render_loaded(
                    artifact.load(store, built.digest),
                    app=app,
                    target=target,
                    namespace=namespace,
                    parameters={},
                )
                deploy.apply_target(kube, rendered)
                recorded.append(
                    state.DesiredState(
                        app=app,
                        target=target,
                        stage="fleet",
                        digest=built.digest,
                        parameters={},
                        parameters_hash=rendered.parameters_hash,
                        rendered_hash=rendered.rendered_hash,
                        promoted_by="bench_scale",
                        flow_run_id=None,
                        approved_by=None,
                        updated_at=datetime.now(UTC),
                    )
                )
            return recorded

        with ThreadPoolExecutor(max_workers=4) as pool:
            for done, desired in enumerate(pool.map(one_app, self.apps), start=1):
                state.record(repo, desired=desired, reason="bench_scale set-up")
                if done % 10 == 0:
                    note(f"deployed and recorded {done}/{len(self.apps)} apps")

    def delete(self, kube: Kube) -> None:
        for namespace in self.namespaces:
            kube.delete("v1", "Namespace", namespace)


class PrefectCalls:
    """Counts the HTTP requests Prefect's clients in this process send to its API."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url.rstrip("/")

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        original = httpx.AsyncClient.send
        counts: Counter[str] = Counter()

        async def send(client: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> Any:
            if str(request.url).startswith(self.api_url):
                path = str(request.url)[len(self.api_url) :].split("?")[0]
                counts[f"{request.method} {_generic(path)}"] += 1
            return await original(client, request, **kwargs)

        httpx.AsyncClient.send = send  # type: ignore[method-assign]
        try:
            yield counts
        finally:
            httpx.AsyncClient.send = original  # type: ignore[method-assign]


def _generic(path: str) -> str:
    parts = [
        "<id>" if len(part) == 36 and part.count("-") == 4 else part for part in path.split("/")
    ]
    return "/".join(parts)


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def measure(label: str, calls: PrefectCalls, kube: Kube, run: Any, repeat: int) -> dict[str, Any]:
    samples = []
    for _ in range(repeat):
        before = kube.requests
        with calls.counting() as counts:
            started = time.perf_counter()
            final = asyncio.run(run())
            seconds = time.perf_counter() - started
        assert final.is_completed(), f"{label}: {final.message}"
        samples.append(
            {
                "seconds": round(seconds, 3),
                "prefect_requests": sum(counts.values()),
                "flow_runs_created": counts["POST /flow_runs/"],
                "flow_run_id": str(final.state_details.flow_run_id),
                "kubernetes_requests": kube.requests - before,
                "requests": dict(sorted(counts.items())),
            }
        )
        note(f"{label}: {samples[-1]['seconds']:.2f} s, {samples[-1]['prefect_requests']} Prefect "
             f"request(s), {samples[-1]['kubernetes_requests']} Kubernetes request(s)")  # fmt: skip
    return {"label": label, "samples": samples}


def count_task_runs(api: PrefectREST, samples: list[dict[str, Any]]) -> None:
    """Each sample's task runs, asked of the server once they have all been written (a client
    reports its task runs as events, so no request of the run itself creates one)."""
    time.sleep(3)
    for sample in samples:
        sample["task_runs_created"] = len(api.task_run_records(sample["flow_run_id"]))


def median(samples: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(sample[key] for sample in samples))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    platform = LocalPlatform(ROOT / ".conveyor")
    if not all(health.healthy for health in platform.status()):
        platform.up()
    for name, value in {**platform.environment(), **platform.prefect.environment()}.items():
        os.environ[name] = value
    work = Path(tempfile.mkdtemp(prefix="conveyor-bench-scale-"))
    fleet = Fleet(work, platform, args.apps, args.targets)
    kube = Kube(platform.kubernetes.kubeconfig)
    started = time.monotonic()
    try:
        fleet.write()
        os.environ["CONVEYOR_CONFIG"] = str(fleet.config)
        note(f"fleet {fleet.prefix}: {len(fleet.apps)} apps x {len(fleet.targets)} targets")
        fleet.deploy(kube)
        note(f"set-up done in {time.monotonic() - started:.0f} s")

        from conveyor.config.reader import load_config
        from flows.reconcile import reconcile
        from flows.reconcile_cluster import reconcile_cluster

        cluster_kube = PROCESS_CONNECTIONS.kube(load_config().cluster("local"))
        calls = PrefectCalls(os.environ["PREFECT_API_URL"])
        sweep = measure(
            "per cluster",
            calls,
            cluster_kube,
            lambda: reconcile_cluster(cluster="local", return_state=True),
            args.cycles,
        )
        count = len(fleet.apps) * len(fleet.targets)
        picks = [
            (fleet.apps[i // len(fleet.targets)], fleet.targets[i % len(fleet.targets)])
            for i in sorted(random.Random(0).sample(range(count), min(args.sample, count)))
        ]
        per_target_runs = []
        for app, target in picks:
            per_target_runs += measure(
                f"per target {app}/{target}",
                calls,
                cluster_kube,
                lambda app=app, target=target: reconcile(app=app, target=target, return_state=True),
                1,
            )["samples"]
        api = PrefectREST(platform.prefect.api_url, auth_string=platform.prefect.auth_string())
        count_task_runs(api, sweep["samples"] + per_target_runs)
        result = report(sweep["samples"], per_target_runs, count)
        result["fleet"] = {"apps": len(fleet.apps), "targets": count, "objects": count * 10}
        result["machine"] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
        result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\n{time.monotonic() - started:.0f} s in all; every sample in {args.out}")
        return 0
    finally:
        fleet.delete(kube)
        shutil.rmtree(work, ignore_errors=True)


def report(
    sweep: list[dict[str, Any]], per_target: list[dict[str, Any]], count: int
) -> dict[str, Any]:
    per_target_seconds = statistics.mean(s["seconds"] for s in per_target)
    rows = {
        "wall time of one cycle (s)": (
            median(sweep, "seconds"),
            per_target_seconds * count,
        ),
        "Prefect API requests": (
            median(sweep, "prefect_requests"),
            statistics.mean(s["prefect_requests"] for s in per_target) * count,
        ),
        "flow runs created": (
            median(sweep, "flow_runs_created"),
            statistics.mean(s["flow_runs_created"] for s in per_target) * count,
        ),
        "task runs created": (
            median(sweep, "task_runs_created"),
            statistics.mean(s["task_runs_created"] for s in per_target) * count,
        ),
        "Kubernetes API requests": (
            median(sweep, "kubernetes_requests"),
            statistics.mean(s["kubernetes_requests"] for s in per_target) * count,
        ),
    }
    print(f"\nidle control-loop cycle over {count} targets on 1 cluster")
    print(f"| measurement | per cluster (median of {len(sweep)}) | per target (x{count}) | ratio |")
    print("|---|---|---|---|")
    for name, (cluster, target) in rows.items():
        ratio = f"{cluster / target:.4f}" if target else "-"
        print(f"| {name} | {cluster:g} | {target:.0f} | {ratio} |")
    seconds = rows["wall time of one cycle (s)"][0]
    prefect = rows["Prefect API requests"][0]
    kubernetes = rows["Kubernetes API requests"][0]
    goals = {
        "cycle within 60 s": seconds <= 60,
        "at most 10 Prefect API calls per cluster": prefect <= 10,
        f"Kubernetes requests within {KINDS} kinds x 1 cluster + 10": kubernetes <= KINDS + 10,
    }
    for goal, met in goals.items():
        print(f"goal: {goal}: {'met' if met else 'missed'}")
    print("Prefect requests of one idle cycle:", json.dumps(sweep[-1]["requests"]))
    return {
        "rows": {name: {"per_cluster": c, "per_target_fleet": t} for name, (c, t) in rows.items()},
        "goals": goals,
        "per_cluster_samples": sweep,
        "per_target_samples": per_target,
    }


if __name__ == "__main__":
    sys.exit(main())
