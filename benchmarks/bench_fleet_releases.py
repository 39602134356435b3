"""Twenty releases at once, and the platform's memory at 1,000 targets, on both profiles.

Run from the repository root (neither platform needs to be up; the default one is not touched):

    .venv/bin/python benchmarks/bench_fleet_releases.py [--releases 20] [--fleet-apps 100]
        [--fleet-targets 10] [--profiles embedded,scale] [--out FILE]

Issue 14 asks what one machine's Prefect does past one release at a time. For each profile in
turn this script brings up a whole platform of its own (`conveyor platform up [--profile scale]
--clusters 1`, CONVEYOR_STATE and CONVEYOR_CONFIG in a temporary folder, PREFECT_* variables
removed, as tests/integration/test_scale_profile.py does) and takes it down at the end, also on
failure; the default platform in .conveyor/ is never used. Then:

1. `--releases` apps, each a copy of examples/web in a git repository of its own, with the
   pipeline of benchmarks/bench_release.py (4 stages, 5 targets, prod-eu and prod-us in
   parallel, every target on the one cluster; each stage's gates replaced by a 2.5 s sleep, the
   stand-in for the cluster's work). A first batch releases every app at once (it builds, creates
   the namespaces); then each app gets a new commit (a new digest) and the measured batch
   releases them all at once again, through the deployments: on the embedded profile the served
   `release/conveyor` (`python -m deployments.serve`, as bench_release.py --shared-deployment
   serves it), on the scale profile the `release/conveyor` that `prefect deploy` registered from
   deployments/prefect.yaml, run by the two process workers. The scheduled per-cluster reconcile
   is kept out of the batches (served with a 1-day interval; the scale profile's schedule
   paused). Measured: releases and target promotions per minute (first trigger to last
   COMPLETED), trigger->COMPLETED per release (median, p90), the overhead of each release (flow
   run start->end minus its cluster work, from the evidence, as bench_release.py counts it) as a
   share of a release whose cluster work takes 10 s, the Prefect client's retries after busy
   answers (503...) and their sleeps (the client logger at DEBUG in every log: serve, workers,
   their runs), and SQLite's "database is locked" in the embedded server's log.
2. A fleet of `--fleet-apps` x `--fleet-targets` targets (1,000 by default: bench_scale.py's
   Fleet, 10 objects a target) is built, applied and recorded, added to the configuration, and
   one idle per-cluster reconcile runs through the deployment `reconcile-cluster/local`. Then the
   resident memory (VmRSS of /proc/<pid>/status, summed over each component's process tree) of
   the Prefect server (embedded: the one server; scale: the API, the services, each worker,
   PostgreSQL and Redis) and of the serve process, also once right after the release batch.

Goals (issue 14, scale profile, 2-core machine): no 503, no retry sleep, overhead at most 10 %
of a release whose cluster work takes 10 s. Results go to benchmarks/results/fleet_releases.json.
11 to 15 minutes on 2 cores. A script, never a timed unit test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform as pyplatform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, benchmarks

from benchmarks import common
from benchmarks.bench_release import (
    RETRY_LINE,
    SQLITE_LOCKED,
    STAGE_TARGETS,
    Served,
    bytecode,
    cluster_work,
    cluster_work_stage,
    commit_revision,
    desired_digest,
    first_state_times,
    release_parameters,
    run_seconds,
    source_state,
    start_serving,
    state_of,
    task_breakdown,
)
from benchmarks.bench_scale import Fleet
from benchmarks.common import log
from conveyor.adapters.kube import Kube
from conveyor.adapters.prefect_api import (
    FINAL_STATES,
    RECONCILE_CLUSTER,
    RELEASE,
    SERVED_DEPLOYMENT,
)
from conveyor.platform import process
from conveyor.platform.local import LocalPlatform
from tests.support.git import init_repository
from tests.support.prefect import PrefectREST
from tests.support.world import World, stop_process

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "fleet_releases.json"
PROFILES = ("embedded", "scale")
OVERHEAD_GOAL_SHARE = 0.10
CLUSTER_WORK_GOAL_S = 10.0
POLL = 0.5
BATCH_TIMEOUT = 900.0
UP_TIMEOUT = 600.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Bench:
    """One platform in a folder of its own, and the release apps on it."""

    profile: str
    root: Path
    env: dict[str, str] = field(default_factory=dict)
    worlds: list[World] = field(default_factory=list)
    served: Served | None = None

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "config" / "conveyor.yaml"

    @property
    def state_repository(self) -> Path:
        return self.root / "fleet" / "state.git"  # the Fleet's, shared with the release apps

    def conveyor(self, *args: str) -> None:
        command = [sys.executable, "-c", "from conveyor.cli import main; main()", *args]
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=UP_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"conveyor {' '.join(args)}: exit {done.returncode}\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )

    def platform(self) -> LocalPlatform:
        return LocalPlatform(self.state)  # the profile recorded in its platform.json

    def logs(self) -> list[Path]:
        """Every log that a Prefect client of this platform writes to (serve, workers and their
        runs) or that the server writes to."""
        found = sorted((self.state / "logs").glob("*.log"))
        return found + ([self.served.logfile] if self.served else [])


def environment(root: Path) -> dict[str, str]:
    """This shell's environment with another platform's settings removed, the bench's own
    state and configuration, the Prefect client's retries logged, and this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CONVEYOR_"))}
    env.update(
        CONVEYOR_STATE=str(root / "state"),
        CONVEYOR_CONFIG=str(root / "config" / "conveyor.yaml"),
        PREFECT_LOGGING_LOGGERS_PREFECT_CLIENT_LEVEL="DEBUG",  # retries after 503, in the logs
        PYTHONPATH=str(REPO),
    )
    return env


def release_apps(bench: Bench, count: int, platform: LocalPlatform, api: PrefectREST) -> None:
    """`count` copies of examples/web, each in a git repository of its own, as Worlds (whose
    helpers bench_release.py uses); the state repository a World reads, `<root>/state.git`,
    is a link to the configuration's one."""
    env = {**bench.env, **platform.environment(), **platform.prefect.environment()}
    kube = Kube(platform.kubernetes.kubeconfig)
    for number in range(count):
        prefix = f"r{uuid.uuid4().hex[:4]}{number:02d}"
        world = World(bench.root / "apps" / prefix, platform, prefix, env, kube, api)
        shutil.copytree(REPO / "examples" / "web", world.source / "web")
        init_repository(world.source, "web v1")
        (world.root / "state.git").symlink_to(bench.state_repository)
        bench.worlds.append(world)


def write_config(bench: Bench, fleet: Fleet | None = None) -> None:
    """The release apps (and the fleet's apps, when given) in one configuration: every target
    on the cluster `local`; the registry is the platform's ($CONVEYOR_REGISTRY)."""
    folder = bench.config.parent
    if not (folder / "environments").exists():
        shutil.copytree(REPO / "config" / "environments", folder / "environments")
    (folder / "pipelines").mkdir(parents=True, exist_ok=True)
    web = yaml.safe_load((REPO / "config" / "pipelines" / "web.yaml").read_text())
    apps: dict[str, Any] = {}
    for world in bench.worlds:
        stages = [cluster_work_stage(stage) for stage in web["stages"]]
        for stage in stages:
            for target in stage["targets"]:
                target.update(cluster="local", namespace=world.namespace(target["name"]))
        pipeline = {**web, "name": world.app, "stages": stages}
        (folder / "pipelines" / f"{world.app}.yaml").write_text(yaml.safe_dump(pipeline))
        apps[world.app] = {
            "source": {"repository": str(world.source), "ref": "HEAD", "path": "web"},
            "pipeline": f"pipelines/{world.app}.yaml",
        }
    if fleet is not None:  # its targets' parameters file, relative to the config's folder
        shutil.copy(fleet.config.parent / "none.yaml", folder / "none.yaml")
        for app, entry in json.loads(fleet.config.read_text())["apps"].items():
            apps[app] = {**entry, "pipeline": str(fleet.config.parent / entry["pipeline"])}
    config = {
        "apiVersion": "conveyor.dev/v1alpha1",
        "kind": "Config",
        "registry": "",
        "stateRepository": str(bench.state_repository),
        "clusters": {"local": {"kubeconfig": str(bench.state / "kubeconfig")}},
        "apps": apps,
    }
    bench.config.write_text(yaml.safe_dump(config, sort_keys=False))


# -- the platform's processes -------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        parent = process.parent_pid(int(entry.name)) if entry.name.isdigit() else None
        if parent is not None:
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def tree_memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (/proc/<pid>/status) and Pss (/proc/<pid>/smaps_rollup: shared pages divided
    among the processes sharing them) of `pid` and every process below it, in MiB; a process
    already gone counts 0. RSS counts a page shared by several processes once for each
    (PostgreSQL's shared buffers in every backend), Pss once in all."""
    total = {"rss": 0, "pss": 0}
    for each in process_tree(pid):
        for key, file, field_name in (("rss", "status", "VmRSS"), ("pss", "smaps_rollup", "Pss")):
            try:
                text = Path(f"/proc/{each}/{file}").read_text()
            except OSError:
                continue
            found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.MULTILINE)
            total[key] += int(found.group(1)) if found else 0
    return {key: round(kib / 1024, 1) for key, kib in total.items()}


def runners(bench: Bench) -> list[int]:
    """The processes that start flow runs, each in a child process: serve, the workers."""
    pids = [bench.served.process.pid] if bench.served is not None else []
    for health in bench.platform().status():
        if health.component.startswith("worker-"):
            pids += [pid for pid in health.processes.values() if pid is not None]
    return pids


def settle(bench: Bench, timeout: float = 60.0) -> None:
    """Wait until no flow run's process is left below serve or a worker (a run's process
    flushes its logs and events after COMPLETED), so that memory is the idle components'."""
    deadline = time.monotonic() + timeout
    while any(len(process_tree(pid)) > 1 for pid in runners(bench)):
        if time.monotonic() > deadline:
            log(f"flow run processes still alive after {timeout:.0f}s; measuring anyway")
            return
        time.sleep(0.5)


def components(bench: Bench) -> dict[str, int]:
    """The platform's processes by component (and the serve process), each the root of its
    tree (a worker's or serve's tree holds the flow runs it started)."""
    found: dict[str, int] = {}
    for health in bench.platform().status():
        for name, pid in health.processes.items():
            if pid is not None:
                several = len(health.processes) > 1
                found[f"{health.component} {name}" if several else health.component] = pid
    if bench.served is not None:
        found["serve"] = bench.served.process.pid
    return found


def memory(bench: Bench) -> dict[str, dict[str, float]]:
    """Resident MiB (RSS and Pss) of each Prefect component and of the serve process, by
    process tree, once no flow run's process is left."""
    settle(bench)
    return {
        name: tree_memory_mib(pid)
        for name, pid in components(bench).items()
        if not name.startswith(("kubernetes", "registry"))
    }


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by `pid` and the processes below it, and by the children they
    have reaped (a flow run's process, once it ended, counts under serve or its worker)."""
    ticks = 0
    for each in process_tree(pid):
        fields = process.stat_fields(each)
        if fields is None:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all but idle and iowait)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def cpu_snapshot(bench: Bench) -> dict[str, float]:
    snapshot = {name: tree_cpu_s(pid) for name, pid in components(bench).items()}
    snapshot["machine"] = machine_cpu_s()
    return snapshot


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each component used between two snapshots; `other processes` is the rest
    of the machine's busy time (this script, and whatever else runs there)."""
    used = {name: round(after[name] - before[name], 1) for name in before if name in after}
    used["other processes"] = round(used.pop("machine") - sum(used.values()), 1)
    return used


def log_sizes(bench: Bench) -> dict[Path, int]:
    return {path: path.stat().st_size for path in bench.logs()}


def busy_answers(bench: Bench, since: dict[Path, int]) -> dict[str, Any]:
    """What the logs gained since `since`: the Prefect client's retries by status code and the
    seconds they slept, and the embedded server's "database is locked"."""
    retries: Counter[str] = Counter()
    slept, locked = 0.0, 0
    for path in bench.logs():
        with path.open("rb") as file:
            file.seek(since.get(path, 0))
            text = file.read().decode(errors="replace")
        for line in text.splitlines():
            found = RETRY_LINE.match(line)
            if found:
                retries[found.group(4)] += 1
                slept += float(found.group(5))
            locked += line.startswith(SQLITE_LOCKED)
    return {
        "client_retries_by_status": dict(retries),
        "client_retry_sleep_s": round(slept, 3),
        "sqlite_locked": locked,
    }


# -- the measurements ---------------------------------------------------------------------------


def deployment_id(api: PrefectREST, flow: str, name: str) -> str:
    found = api.deployment_record(flow, name)
    if found is None:
        raise RuntimeError(f"no deployment {flow}/{name}")
    return str(found["id"])


def wait_for(api: PrefectREST, run_ids: list[str]) -> list[dict[str, Any]]:
    """The runs once every one is final (one filter request per poll)."""
    deadline = time.monotonic() + BATCH_TIMEOUT
    while time.monotonic() < deadline:
        runs: list[dict[str, Any]] = api.post(
            "/flow_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}, "limit": len(run_ids)}
        )
        if len(runs) == len(run_ids) and all(state_of(r)[0] in FINAL_STATES for r in runs):
            return runs
        time.sleep(POLL)
    raise RuntimeError(f"runs not final within {BATCH_TIMEOUT:.0f}s")


def task_runs_settled(api: PrefectREST, run_ids: list[str], timeout: float = 90.0) -> int:
    """The number of task runs the server holds for `run_ids` once it stops growing: task runs
    reach the database through events, which the scale profile's services may write seconds
    after the flow runs ended (their breakdown would otherwise count as the flows' own time)."""
    query = {"flow_runs": {"id": {"any_": run_ids}}}
    deadline = time.monotonic() + timeout
    counted, steady_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = int(api.post("/task_runs/count", query))
        if now != counted:
            counted, steady_since = now, time.monotonic()
        elif time.monotonic() - steady_since >= 5:
            break
        time.sleep(POLL)
    return counted


def release_batch(bench: Bench, api: PrefectREST, revision: int) -> dict[str, Any]:
    """Every app released at once, each a new digest; each release's figures and the batch's."""
    release = deployment_id(api, RELEASE, SERVED_DEPLOYMENT)
    for world in bench.worlds:
        commit_revision(world, revision)
    sizes, cpu = log_sizes(bench), cpu_snapshot(bench)
    triggered: dict[str, tuple[World, float]] = {}
    for world in bench.worlds:
        at = time.time()
        created = api.post(
            f"/deployments/{release}/create_flow_run",
            {"parameters": release_parameters(world), "tags": ["bench"]},
        )
        triggered[str(created["id"])] = (world, at)
    trigger_spread = time.time() - min(at for _, at in triggered.values())
    runs = wait_for(api, list(triggered))
    cpu = cpu_used(cpu, cpu_snapshot(bench))
    time.sleep(2)  # the last runs' log lines reach the logs
    task_runs = task_runs_settled(api, list(triggered))
    failed = [f"{r['name']}: {state_of(r)}" for r in runs if state_of(r)[0] != "COMPLETED"]
    if failed:
        raise RuntimeError(f"releases not completed: {failed}")
    samples: list[dict[str, Any]] = []
    for run in runs:
        world, at = triggered[str(run["id"])]
        digest = desired_digest(world, "prod-us")
        assert digest is not None
        critical, _, per_stage = cluster_work(world, digest)
        duration = run_seconds(run)
        overhead = duration - critical
        first = first_state_times(world, str(run["id"]))
        samples.append(
            {
                "app": world.app,
                "flow_run": str(run["id"]),
                "digest": digest,
                "trigger_to_completed_s": round(first["COMPLETED"] - at, 3),
                "trigger_to_running_s": round(first["RUNNING"] - at, 3),
                "flow_run_s": round(duration, 3),
                "cluster_work_s": round(critical, 3),
                "cluster_work_by_stage": per_stage,
                "overhead_s": round(overhead, 3),
                "overhead_share_at_10s": round(overhead / (overhead + CLUSTER_WORK_GOAL_S), 4),
                "tasks": task_breakdown(world, run),
                "started": first["RUNNING"],
                "completed": first["COMPLETED"],
                "triggered": at,
            }
        )
    span = max(s["completed"] for s in samples) - min(s["triggered"] for s in samples)
    targets = sum(len(names) for names in STAGE_TARGETS.values())
    return {
        "revision": revision,
        "releases": len(samples),
        "trigger_spread_s": round(trigger_spread, 3),
        "task_runs_recorded": task_runs,
        "first_trigger_to_last_completed_s": round(span, 3),
        "releases_per_minute": round(len(samples) / span * 60, 2),
        "target_promotions_per_minute": round(len(samples) * targets / span * 60, 2),
        "trigger_to_completed_s": common.summary([s["trigger_to_completed_s"] for s in samples]),
        "trigger_to_running_s": common.summary([s["trigger_to_running_s"] for s in samples]),
        "flow_run_s": common.summary([s["flow_run_s"] for s in samples]),
        "cluster_work_s": common.summary([s["cluster_work_s"] for s in samples]),
        "overhead_s": common.summary([s["overhead_s"] for s in samples]),
        "overhead_share_at_10s": common.summary([s["overhead_share_at_10s"] for s in samples]),
        **busy_answers(bench, sizes),
        "cpu_s": cpu,
        "samples": samples,
    }


def idle_cycle(bench: Bench, api: PrefectREST) -> dict[str, Any]:
    """One per-cluster reconcile through the deployment `reconcile-cluster/local`."""
    sizes = log_sizes(bench)
    at = time.time()
    reconcile = deployment_id(api, RECONCILE_CLUSTER, "local")
    created = api.post(f"/deployments/{reconcile}/create_flow_run", {"tags": ["bench"]})
    (run,) = wait_for(api, [str(created["id"])])
    if state_of(run)[0] != "COMPLETED":
        raise RuntimeError(f"reconcile-cluster/local ended {state_of(run)}")
    first = first_state_times(bench.worlds[0], str(run["id"]))
    return {
        "flow_run": str(run["id"]),
        "trigger_to_completed_s": round(first["COMPLETED"] - at, 3),
        "flow_run_s": round(run_seconds(run), 3),
        **busy_answers(bench, sizes),
    }


def pause_reconcile_schedule(api: PrefectREST) -> None:
    """The scale profile's per-cluster reconcile (every 60 s, from prefect.yaml) stays out of
    the release batches, as the embedded profile's (served with a 1-day interval) does."""
    api.post(f"/deployments/{deployment_id(api, RECONCILE_CLUSTER, 'local')}/pause_deployment", {})


def run_profile(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """Up, the release batches, the fleet and its idle cycle, memory; down (always)."""
    result: dict[str, Any] = {"profile": bench.profile}
    write_config(bench)  # no app yet; the workers' `up` wants the file
    profile = ["--profile", "scale"] if bench.profile == "scale" else []
    try:
        began = time.monotonic()
        bench.conveyor("platform", "up", *profile, "--clusters", "1")
        result["up_s"] = round(time.monotonic() - began, 1)
        platform = bench.platform()
        log(f"{bench.profile}: up in {result['up_s']} s ({bench.state})")
        api = PrefectREST(platform.prefect.api_url, auth_string=platform.prefect.auth_string())
        fleet = Fleet(bench.root / "fleet", platform, args.fleet_apps, args.fleet_targets)
        fleet.write()  # creates the state repository the configuration names
        release_apps(bench, args.releases, platform, api)
        write_config(bench)
        if bench.profile == "scale":
            pause_reconcile_schedule(api)
        else:
            bench.served = start_serving(bench.worlds[0], shared=True)
        log(f"{bench.profile}: first batch of {args.releases} releases (builds, namespaces)")
        result["first_batch"] = release_batch(bench, api, 1)
        log(f"{bench.profile}: first batch in {result['first_batch']['releases_per_minute']}/min")
        result["batch"] = release_batch(bench, api, 2)
        log(f"{bench.profile}: measured batch: {summary_line(result['batch'])}")
        result["memory_after_releases_mib"] = memory(bench)
        log(f"{bench.profile}: building the fleet of {len(fleet.apps) * len(fleet.targets)}")
        fleet.deploy(Kube(platform.kubernetes.kubeconfig))
        write_config(bench, fleet)
        if bench.served is not None:  # a served configuration is bound: serve it anew
            stop_process(bench.served.process)
            bench.served = start_serving(bench.worlds[0], shared=True)
        result["fleet_targets"] = len(fleet.apps) * len(fleet.targets)
        result["idle_cycle"] = idle_cycle(bench, api)
        result["memory_at_fleet_mib"] = memory(bench)
        log(
            f"{bench.profile}: idle cycle {result['idle_cycle']['flow_run_s']} s; memory "
            f"{result['memory_at_fleet_mib']}"
        )
    finally:
        if bench.served is not None:
            stop_process(bench.served.process)
        bench.conveyor("platform", "down")
        log(f"{bench.profile}: down")
    return result


def summary_line(batch: dict[str, Any]) -> str:
    trigger, overhead = batch["trigger_to_completed_s"], batch["overhead_s"]
    return (
        f"{batch['releases_per_minute']} releases/min, trigger->COMPLETED median "
        f"{trigger['median']} s p90 {trigger['p90']} s, overhead {overhead['median']} s "
        f"({batch['overhead_share_at_10s']['median']:.0%} at 10 s), retries "
        f"{batch['client_retries_by_status']} sleeping {batch['client_retry_sleep_s']} s"
    )


# -- report -------------------------------------------------------------------------------------


def goals(scale: dict[str, Any]) -> dict[str, bool]:
    batch = scale["batch"]
    return {
        "no 503": batch["client_retries_by_status"].get("503", 0) == 0,
        "no retry sleep": batch["client_retry_sleep_s"] == 0,
        "overhead <= 10 % at 10 s (median)": batch["overhead_share_at_10s"]["median"]
        <= OVERHEAD_GOAL_SHARE,
    }


def report(results: dict[str, Any]) -> str:
    profiles = results["profiles"]
    head = ("measured batch", *profiles)
    rows: list[tuple[str, ...]] = []

    def row(label: str, value: Any) -> None:
        rows.append((label, *(value(p["batch"]) for p in profiles.values())))

    def seconds(key: str) -> Any:
        return lambda b: f"{b[key]['median']:.1f} s / {b[key]['p90']:.1f} s"

    row("releases at once", lambda b: str(b["releases"]))
    row("triggers sent within", lambda b: f"{b['trigger_spread_s']:.1f} s")
    row(
        "first trigger → last COMPLETED",
        lambda b: f"{b['first_trigger_to_last_completed_s']:.0f} s",
    )
    row(
        "releases / target promotions per minute",
        lambda b: f"{b['releases_per_minute']:.1f} / {b['target_promotions_per_minute']:.1f}",
    )
    row("trigger → COMPLETED (median / p90)", seconds("trigger_to_completed_s"))
    row("trigger → Running (median / p90)", seconds("trigger_to_running_s"))
    row("flow run start→end (median / p90)", seconds("flow_run_s"))
    row("cluster work (median / p90)", seconds("cluster_work_s"))
    row("overhead = run - cluster work (median / p90)", seconds("overhead_s"))
    row(
        "overhead / (overhead + 10 s) (median / p90)",
        lambda b: (
            f"{b['overhead_share_at_10s']['median']:.0%} / {b['overhead_share_at_10s']['p90']:.0%}"
        ),
    )
    row(
        "client retries by status (sleep)",
        lambda b: f"{b['client_retries_by_status'] or 0} ({b['client_retry_sleep_s']:.1f} s)",
    )
    row("SQLite 'database is locked'", lambda b: str(b["sqlite_locked"]))
    cycles = (f"{p['idle_cycle']['flow_run_s']:.1f} s" for p in profiles.values())
    rows.append(("then one idle per-cluster cycle, fleet built (flow run)", *cycles))
    text = [common.markdown_table(head, rows, aligned=False), ""]
    for title, part in (
        ("wall time by kind of task run, flow's own time (median s)", overhead_parts),
        ("CPU s during the measured batch", lambda b: b["cpu_s"]),
    ):
        found = [part(p["batch"]) for p in profiles.values()]
        names = list(dict.fromkeys(name for each in found for name in each))
        table = [(n, *(f"{each[n]:.1f}" if n in each else "-" for each in found)) for n in names]
        text += [common.markdown_table((title, *profiles), table, aligned=False), ""]
    fleet = next(iter(profiles.values()))["fleet_targets"]
    for key, title in (
        ("memory_after_releases_mib", "MiB RSS (Pss) after the release batches"),
        ("memory_at_fleet_mib", f"MiB RSS (Pss) at {fleet} targets, after an idle cycle"),
    ):
        names = sorted({name for p in profiles.values() for name in p[key]})
        memory_rows = [(n, *(megabytes(p[key].get(n)) for p in profiles.values())) for n in names]
        text += [common.markdown_table((title, *profiles), memory_rows, aligned=False), ""]
    if "scale" in profiles:
        text += [
            f"goal (scale): {g}: {'met' if ok else 'not met'}" for g, ok in results["goals"].items()
        ]
    return "\n".join(text)


def overhead_parts(batch: dict[str, Any]) -> dict[str, float]:
    """The median over the batch's releases of the wall time covered by each kind of task run
    and of the flow's own time around them (bench_release.task_breakdown)."""
    parts: dict[str, list[float]] = {}
    for sample in batch["samples"]:
        tasks = sample["tasks"]
        for name, seconds in [*tasks["seconds"].items(), *tasks["outside"].items()]:
            parts.setdefault(name, []).append(seconds)
    return {name: common.median(values) for name, values in parts.items()}


def megabytes(measured: dict[str, float] | None) -> str:
    return f"{measured['rss']:.0f} ({measured['pss']:.0f})" if measured else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=20, help="apps released at once")
    parser.add_argument("--fleet-apps", type=int, default=100)
    parser.add_argument("--fleet-targets", type=int, default=10)
    parser.add_argument("--profiles", default=",".join(PROFILES), help="embedded,scale")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args()
    began = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source": source_state(),
        "machine": {
            "python": pyplatform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "bytecode": bytecode(),
        },
        "profiles": {},
    }
    top = Path(tempfile.mkdtemp(prefix="conveyor-bench-fleet-"))
    try:
        for profile in args.profiles.split(","):
            root = top / profile
            root.mkdir()
            bench = Bench(profile, root, environment(root))
            results["profiles"][profile] = run_profile(bench, args)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    if "scale" in results["profiles"]:
        results["goals"] = goals(results["profiles"]["scale"])
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["elapsed_s"] = round(time.monotonic() - began, 1)
    common.write_results(args.out, results)
    print()
    print(report(results))
    print(f"\n{results['elapsed_s']:.0f}s in all; every sample in {args.out}")


if __name__ == "__main__":
    main()
