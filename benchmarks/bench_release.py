"""Conveyor's orchestration overhead on a release, against the real Prefect server.

Run from the repository root, with the local platform up (`.venv/bin/conveyor platform up`):

    .venv/bin/python benchmarks/bench_release.py [--repeat N] [--budget SECONDS] [--out FILE]

It builds, in a temporary folder, the isolated world the end-to-end tests use
(tests/support/world.py): a git repository holding a copy of examples/web, a copy of config/ with
a unique app name (`web-<prefix>`), namespaces `<prefix>-<target>`, a state repository of its own
and a registry prefix of its own. The pipeline keeps its 4 stages and 5 targets (prod-eu and
prod-us in parallel) and nothing else: no approval, no soak, no freeze window, no budget shared
with other apps; each stage's gates are replaced by one command gate that sleeps 2.5 s, the
stand-in for the cluster's own work (so a release's cluster work is 4 x (readiness + 2.5 s) on
its critical path).

1. No-op release: after one real release, the app already runs its digest in every stage; the
   same release again, N times
   a. in a child process, `python -m flows release '{...}'` (what the CLI does without a served
      deployment): the flow run's own start->end (Prefect's API) and the child's wall time;
   b. through a served deployment: the release flow served the way `deployments.serve` serves it
      (`prefect.serve`, PREFECT_RUNNER_POLL_FREQUENCY=1), triggered over the REST API
      (POST /deployments/{id}/create_flow_run, then GET /flow_runs/{id} every 0.1 s):
      trigger->COMPLETED and the run's own start->end, split into phases by the run's states.
2. Real release of a new digest (a commit to the source each time), N times, through the served
   deployment: overhead = flow run start->end - cluster work, where cluster work is the
   readiness and gate durations recorded as evidence in the state repository, summed over the
   stages (for prod, whose two targets run in parallel, the longer target counts). The goal is
   stated for 10 s of cluster work, so the share is also given as overhead / (overhead + 10 s).
   The overhead is broken down from the run's task runs (POST /task_runs/filter): wall time
   covered by each kind (build, renders, applies, git reads and records, reports), the idle time
   entering and leaving stages (queue tag, target slots), and the Prefect client's retry sleeps
   after a 503 (from the serve log, with the client logger at DEBUG).

By default the served deployment is `release/bench-<prefix>`, served by a small wrapper over
`deployments.serve.deployments()` (the same RunnerDeployment, the same `prefect.serve`), so that
the shared `release/conveyor`, `promote-stage/conveyor`... deployments of the shared Prefect
server are not taken over while others run tests on it; `--shared-deployment` serves them with
`python -m deployments.serve` verbatim instead.

Repetitions stop early when the next would overrun --budget (default 270 s; the table prints
the N reached). Every process it starts is stopped by pid at the end (also on failure); the
world's namespaces, its served deployment and its target concurrency limits are deleted. Results
go to benchmarks/results/release.json. It is a script, never a timed unit test.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform as pyplatform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, benchmarks.common

from benchmarks import common
from benchmarks.common import log
from conveyor.adapters.prefect_api import (
    FINAL_STATES,
    HEARTBEAT_ENVIRONMENT,
    RECONCILE,
    RELEASE,
    SERVED_DEPLOYMENT,
)
from conveyor.platform.local import LocalPlatform
from tasks.locks import limit_name
from tests.support.world import TARGETS, World, isolated_world, stop_process

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "release.json"
PLATFORM_STATE = REPO / ".conveyor"
STAGES = ("dev", "test", "staging", "prod")
STAGE_TARGETS = {
    "dev": ("dev",),
    "test": ("test",),
    "staging": ("staging",),
    "prod": ("prod-eu", "prod-us"),
}
GATE_SECONDS = 2.5
SLEEP_GATE = [sys.executable, "-c", f"import time; time.sleep({GATE_SECONDS})"]
NOOP_GOAL_SECONDS = 5.0
OVERHEAD_GOAL_SHARE = 0.20
POLL = 0.1
RUN_TIMEOUT = 240.0
FLOW_RUN_URL = re.compile(
    r"flow-run/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
SQLITE_LOCKED = "sqlite3.OperationalError: database is locked"
ENTERING = "entering stages (queue tag, turn check, target slots, event)"
LEAVING = "leaving stages (slot release, tags, events)"

# Task runs by kind (their names: tasks/*.py); the first matching prefix wins.
TASK_KINDS = (
    ("build", ("build-bundle",)),
    ("render", ("render-",)),
    ("apply", ("apply-",)),
    ("readiness", ("wait-",)),
    ("gates", ("gate-",)),
    ("git reads", ("read-desired-", "read-evidence-", "read-halt", "read-provenance", "history-")),
    ("git records", ("record-state",)),
    ("drift checks", ("drift-",)),
    ("reports", ("publish-report", "publish-table")),
)

# The serve wrapper: `deployments.serve.main()` with only the release deployment, renamed (the
# heartbeat settings come from the environment; the crash automation, shared by every served
# process of the server, is left as it is).
SERVE_WRAPPER = """
import os
import sys
from prefect import serve
from conveyor.config.reader import load_config
from deployments.serve import deployments
from flows.console import use_plain_console
use_plain_console()
config = load_config()
os.environ["CONVEYOR_CONFIG"] = str(config.path)
served = [d for d in deployments(config) if d.flow_name == "release"]
for d in served:
    d.name = sys.argv[1]
serve(*served, pause_on_shutdown=False)
"""


# -- Prefect's records ------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime.datetime | None:
    return datetime.datetime.fromisoformat(value) if value else None


def stamp(value: str) -> float:
    """A server timestamp as seconds since the epoch."""
    parsed = parse_time(value)
    assert parsed is not None
    return parsed.timestamp()


def run_seconds(run: dict[str, Any]) -> float:
    """A flow run's own duration: its start_time (first Running) to its end_time."""
    start, end = parse_time(run.get("start_time")), parse_time(run.get("end_time"))
    if start is None or end is None:
        raise RuntimeError(f"flow run {run.get('name')} has no start or end time")
    return (end - start).total_seconds()


def state_of(run: dict[str, Any]) -> tuple[str, str]:
    current = run.get("state") or {}
    return str(current.get("type", "")), str(current.get("message") or "")


# -- the world ----------------------------------------------------------------------------------


def keep_only_cluster_work(world: World) -> None:
    """Each stage keeps its name, targets (in the world's namespaces) and parallelism, nothing
    else: no approval, no soak, no freeze window, no budget shared with other apps' runs; its one
    gate is the 2.5 s stand-in for the cluster's own work."""

    def rewrite(pipeline: dict[str, Any]) -> None:
        assert [s["name"] for s in pipeline["stages"]] == list(STAGES), pipeline["stages"]
        pipeline["stages"] = [cluster_work_stage(stage) for stage in pipeline["stages"]]

    world.edit_pipeline(rewrite)


def cluster_work_stage(stage: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"name": stage["name"], "autoPromote": True, "soak": "0s"}
    if "parallelism" in stage:
        kept["parallelism"] = stage["parallelism"]
    kept["targets"] = stage["targets"]
    kept["gates"] = [
        {
            "type": "command",
            "name": "cluster-work",
            "command": list(SLEEP_GATE),
            "timeout": "60s",
        }
    ]
    return kept


def release_parameters(world: World) -> dict[str, Any]:
    return {"app": world.app, "ref": "HEAD"}


def commit_revision(world: World, revision: int) -> None:
    """A new source tree, hence a new digest: one ConfigMap key changes (no rollout)."""
    path = world.source / "web" / "manifests" / "configmap.yaml"
    lines = [x for x in path.read_text().splitlines() if "bench-revision" not in x]
    lines.append(f'  bench-revision: "{revision}"')
    path.write_text("\n".join(lines) + "\n")
    world.git("commit", "-qam", f"web revision {revision}")


def desired_digest(world: World, target: str) -> str | None:
    desired = world.desired(target)
    return desired.digest if desired else None


# -- processes ----------------------------------------------------------------------------------


def run_child(world: World) -> tuple[str, float, str, float, float]:
    """`python -m flows release '{...}'`: (flow run id, wall seconds, output, spawn and exit
    times on the wall clock, which the Prefect server's timestamps share on this machine)."""
    spawned = time.time()
    started = time.monotonic()
    process = world.start(RELEASE, **release_parameters(world))
    try:
        code, output = world.finish(process, RUN_TIMEOUT)
    finally:
        stop_process(process)
    wall = time.monotonic() - started
    exited = time.time()
    if code != 0:
        raise RuntimeError(f"release exited {code}:\n{output[-4000:]}")
    found = FLOW_RUN_URL.search(output)
    if found is None:
        raise RuntimeError(f"no flow run id in the child's output:\n{output[-2000:]}")
    return found.group(1), wall, output, spawned, exited


@dataclass
class Served:
    process: subprocess.Popen[Any]
    deployment_id: str
    flow: str
    name: str
    logfile: Path


def start_serving(world: World, shared: bool) -> Served:
    logfile = world.root / "serve.log"
    name = SERVED_DEPLOYMENT if shared else f"bench-{world.prefix}"
    command = (
        [sys.executable, "-m", "deployments.serve"]
        if shared
        else [sys.executable, "-c", SERVE_WRAPPER, name]
    )
    env = {
        **world.env,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # what `conveyor serve` sets
        **HEARTBEAT_ENVIRONMENT,  # what deployments.serve.main() sets
        # the client's retries (503 when the server's SQLite is locked) go to serve.log
        "PREFECT_LOGGING_LOGGERS_PREFECT_CLIENT_LEVEL": "DEBUG",
        "CONVEYOR_RECONCILE_INTERVAL": "86400",  # --shared-deployment: no reconcile runs meanwhile
    }
    started_at = datetime.datetime.now(datetime.UTC)
    with logfile.open("w") as out:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=world.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    world.running.append(process)
    served = Served(process, "", RELEASE, name, logfile)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited {process.returncode}:\n{logfile.read_text()[-3000:]}")
        found = world.api.deployment_record(RELEASE, name)
        polled = parse_time(found.get("last_polled")) if found else None
        if found and found.get("status") == "READY" and polled and polled > started_at:
            served.deployment_id = str(found["id"])
            return served
        time.sleep(0.25)
    raise RuntimeError(f"release/{name} not served within 90s:\n{logfile.read_text()[-3000:]}")


RETRY_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) \|.*retryable status code (\d+)\. "
    r"Another attempt will be made in ([\d.]+)s"
)


def client_retries(served: Served, start: float, end: float) -> tuple[int, float]:
    """(count, seconds slept) of Prefect client retries that the served runs logged between
    `start` and `end` (epoch seconds); runs are sequential here, so these are one run's."""
    count, slept = 0, 0.0
    for line in served.logfile.read_text(errors="replace").splitlines():
        found = RETRY_LINE.match(line)
        if not found:
            continue
        h, m, sec, _, seconds = found.groups()
        day = time.localtime(start)
        moment = time.mktime(
            (day.tm_year, day.tm_mon, day.tm_mday, int(h), int(m), 0, 0, 0, -1)
        ) + float(sec)
        if start <= moment <= end:
            count += 1
            slept += float(seconds)
    return count, slept


def run_served(world: World, served: Served) -> tuple[str, float, dict[str, Any]]:
    """Trigger a run over the REST API; (id, trigger->final seconds, the final run)."""
    triggered = time.time()
    started = time.monotonic()
    created = world.api.post(
        f"/deployments/{served.deployment_id}/create_flow_run",
        {"parameters": release_parameters(world), "tags": ["bench"]},
    )
    run_id = str(created["id"])
    create_call = time.time() - triggered
    while True:
        run = world.api.flow_run_record(run_id)
        kind, message = state_of(run)
        if kind in FINAL_STATES:
            elapsed = time.monotonic() - started
            break
        if time.monotonic() - started > RUN_TIMEOUT:
            raise RuntimeError(f"flow run {run['name']} still {kind} after {RUN_TIMEOUT:.0f}s")
        if served.process.poll() is not None:
            raise RuntimeError(f"serve exited:\n{served.logfile.read_text()[-3000:]}")
        time.sleep(POLL)
    seen = time.time()
    if kind != "COMPLETED":
        raise RuntimeError(
            f"flow run {run['name']} ended {kind}: {message}\n" + served.logfile.read_text()[-3000:]
        )
    first = first_state_times(world, run_id)
    run["phases_s"] = {
        "create_flow_run call (503s retried)": round(create_call, 3),
        "created to Pending (runner poll)": round(first["PENDING"] - triggered - create_call, 3),
        "Pending to Running (process spawn, imports)": round(
            first["RUNNING"] - first["PENDING"], 3
        ),
        "flow run": round(first["COMPLETED"] - first["RUNNING"], 3),
        "Completed to seen (0.1 s polls)": round(seen - first["COMPLETED"], 3),
    }
    retries, slept = client_retries(served, first["RUNNING"], first["COMPLETED"])
    run["client_retries"] = {"count": retries, "seconds_slept": round(slept, 3)}
    return run_id, elapsed, run


def first_state_times(world: World, run_id: str) -> dict[str, float]:
    """When the run first entered each state type (PENDING, RUNNING...), epoch seconds."""
    states = world.api.get(f"/flow_run_states/?flow_run_id={run_id}")
    first: dict[str, float] = {}
    for item in sorted(states, key=lambda x: x["timestamp"]):
        first.setdefault(item["type"], stamp(item["timestamp"]))
    return first


# -- analysis -----------------------------------------------------------------------------------


def union_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def kind_of(name: str) -> str:
    for kind, prefixes in TASK_KINDS:
        if name.startswith(prefixes):
            return kind
    return "other tasks"


def task_breakdown(world: World, run: dict[str, Any]) -> dict[str, Any]:
    """Wall seconds covered by each kind of task run, and by none (the flow's own time)."""
    start = parse_time(run["start_time"])
    end = parse_time(run["end_time"])
    assert start is not None and end is not None
    intervals: dict[str, list[tuple[float, float]]] = {}
    counts: dict[str, int] = {}
    tasks = world.api.task_run_records(str(run["id"]))
    for task in tasks:
        a, b = parse_time(task.get("start_time")), parse_time(task.get("end_time"))
        if a is None or b is None:
            continue
        kind = kind_of(str(task["name"]))
        a_s = max((a - start).total_seconds(), 0.0)
        b_s = min((b - start).total_seconds(), (end - start).total_seconds())
        intervals.setdefault(kind, []).append((a_s, b_s))
        counts[kind] = counts.get(kind, 0) + 1
    duration = (end - start).total_seconds()
    spans = [i for kind_spans in intervals.values() for i in kind_spans]
    outside = duration - union_seconds(spans)
    first, entry, exit_ = flow_own_time(tasks, start.timestamp(), duration, spans)
    return {
        "seconds": {kind: round(union_seconds(s), 3) for kind, s in intervals.items()},
        "task_runs": counts,
        "outside_tasks": round(outside, 3),
        "outside": {
            "before the first task run": round(first, 3),
            ENTERING: round(entry, 3),
            LEAVING: round(exit_, 3),
            "elsewhere between task runs": round(outside - first - entry - exit_, 3),
        },
    }


def flow_own_time(
    tasks: list[dict[str, Any]], start: float, duration: float, spans: list[tuple[float, float]]
) -> tuple[float, float, float]:
    """The flow's own time, where it can be placed: (before the first task run, entering
    stages, leaving stages), in seconds.

    A stage runs as: its evidence read and stop-the-line check (task runs), its targets'
    renders (task runs), then, in the flow itself, the queue tag, the turn check and the
    target slots (flows/steps.py `hold_targets`) and the `promotion.started` event, then the
    task runs of its targets (a stop-the-line check again, desired state, apply...). Entering a
    stage is the idle time right before the first task run that starts after the stage's last
    render has ended; leaving it, the idle time right before the next stage's evidence read or
    the flow's end (slot release, tags, events)."""

    def since_start(moment: str) -> float:
        return max(stamp(moment) - start, 0.0)

    named = sorted(
        (since_start(t["start_time"]), since_start(t["end_time"]), str(t["name"]))
        for t in tasks
        if t.get("start_time") and t.get("end_time")
    )

    def idle_before(moment: float) -> float:
        ended = [b for a, b in spans if b <= moment + 1e-6]
        return max(moment - max(ended, default=0.0), 0.0)

    entry = exit_ = 0.0
    for targets in STAGE_TARGETS.values():
        renders = {f"render-{t}" for t in targets}
        rendered = [b for _, b, name in named if name in renders]
        if not rendered:
            continue
        after = [
            a
            for a, _, name in named
            if a >= max(rendered) - 1e-6 and not name.startswith("render-")
        ]
        if after:
            entry += idle_before(min(after))
    stage_starts = [a for a, _, name in named if name.startswith("read-evidence-")]
    for moment in [*stage_starts[1:], duration]:
        exit_ += idle_before(moment)
    first = named[0][0] if named else duration
    return first, entry, exit_


def cluster_work(world: World, digest: str) -> tuple[float, float, dict[str, float]]:
    """(critical-path seconds, plain sum, per stage) of readiness + gates, from the evidence."""
    critical, plain, per_stage = 0.0, 0.0, {}
    for stage in STAGES:
        evidence = world.evidence(digest, stage)
        if evidence is None or evidence.verdict != "passed":
            raise RuntimeError(f"no passed evidence for {digest[:19]} in {stage}")
        by_target = {
            target: sum(g.duration_seconds for g in results)
            for target, results in evidence.gates.items()
        }
        per_stage[stage] = round(max(by_target.values()), 3)
        critical += max(by_target.values())
        plain += sum(by_target.values())
    return critical, plain, per_stage


# -- the measurements ---------------------------------------------------------------------------


def repeat(
    count: int, what: str, once: Callable[[int], dict[str, Any]], deadline: float
) -> list[dict[str, Any]]:
    """Up to `count` samples; fewer when the next one would end after `deadline` (monotonic)."""
    samples: list[dict[str, Any]] = []
    longest = 0.0
    for i in range(count):
        if samples and time.monotonic() + longest > deadline:
            log(f"{what}: {len(samples)} of {count} samples, the time budget is spent")
            break
        began = time.monotonic()
        sample = once(i)
        longest = max(longest, time.monotonic() - began)
        samples.append(sample)
        log(
            f"{what} {i + 1}/{count}: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in sample.items() if isinstance(v, float))
        )
    return samples


def noop_child(world: World, digest: str) -> Callable[[int], dict[str, Any]]:
    def once(_: int) -> dict[str, Any]:
        run_id, wall, output, spawned, exited = run_child(world)
        run = world.api.flow_run_record(run_id)
        if "nothing to do" not in output:
            raise RuntimeError(f"the release was not a no-op:\n{output[-3000:]}")
        created, start, end = (stamp(run[key]) for key in ("created", "start_time", "end_time"))
        return {
            "flow_run": run_id,
            "flow_run_s": run_seconds(run),
            "child_wall_s": wall,
            "phases_s": {
                "start-up to run created (interpreter, imports, client)": round(
                    created - spawned, 3
                ),
                "run created to Running": round(start - created, 3),
                "flow run": round(end - start, 3),
                "Completed to exit (flush logs and events)": round(exited - end, 3),
            },
        }

    return once


def noop_served(world: World, served: Served) -> Callable[[int], dict[str, Any]]:
    def once(_: int) -> dict[str, Any]:
        run_id, elapsed, run = run_served(world, served)
        tasks = world.api.task_run_records(run_id)
        if any(str(t["name"]).startswith(("apply-", "gate-")) for t in tasks):
            raise RuntimeError(f"served run {run['name']} was not a no-op")
        return {
            "flow_run": run_id,
            "flow_run_s": run_seconds(run),
            "trigger_to_completed_s": elapsed,
            "phases_s": run["phases_s"],
            "client_retries": run["client_retries"],
        }

    return once


def real_served(
    world: World, served: Served, first_revision: int
) -> Callable[[int], dict[str, Any]]:
    def once(i: int) -> dict[str, Any]:
        before = desired_digest(world, "prod-us")
        commit_revision(world, first_revision + i)
        run_id, elapsed, run = run_served(world, served)
        digest = desired_digest(world, "prod-us")
        if digest is None or digest == before:
            raise RuntimeError(f"served run {run['name']} did not release a new digest")
        duration = run_seconds(run)
        critical, plain, per_stage = cluster_work(world, digest)
        overhead = duration - critical
        return {
            "flow_run": run_id,
            "digest": digest,
            "flow_run_s": duration,
            "trigger_to_completed_s": elapsed,
            "cluster_work_s": critical,
            "cluster_work_plain_sum_s": round(plain, 3),
            "cluster_work_by_stage": per_stage,
            "overhead_s": overhead,
            "overhead_share": overhead / duration,
            "tasks": task_breakdown(world, run),
            "phases_s": run["phases_s"],
            "client_retries": run["client_retries"],
            "overhead_share_at_10s": overhead / (overhead + 10.0),
        }

    return once


# -- report -------------------------------------------------------------------------------------


def verdict(median: float, p90: float, goal: float) -> str:
    if median >= goal:
        return "missed"
    return "met" + (", p90 too" if p90 < goal else "; p90 not")


def table(results: dict[str, Any]) -> str:
    summary, real = results["summary"], len(results["real"])
    rows: list[tuple[str, str, str, str, str]] = []

    def seconds(key: str, label: str, goal: float | None) -> None:
        s = summary[key]
        samples = "noop_child" if "child" in key else "noop_served" if "noop" in key else "real"
        judged = verdict(s["median"], s["p90"], goal) if goal is not None else ""
        n = str(len(results[samples]))
        rows.append((label, n, f"{s['median']:.2f} s", f"{s['p90']:.2f} s", judged))

    def share(key: str, label: str, judged: bool) -> None:
        s = summary[key]
        goal = verdict(s["median"], s["p90"], OVERHEAD_GOAL_SHARE) if judged else ""
        rows.append((label, str(real), f"{s['median']:.0%}", f"{s['p90']:.0%}", goal))

    noop = NOOP_GOAL_SECONDS
    seconds("noop_child_flow_run_s", "no-op, child process: flow run start→end", noop)
    seconds("noop_child_wall_s", "no-op, child process: wall time of the child", noop)
    seconds("noop_served_flow_run_s", "no-op, served: flow run start→end", noop)
    seconds("noop_served_trigger_s", "no-op, served: trigger→COMPLETED (REST)", noop)
    seconds("real_flow_run_s", "new digest, served: flow run start→end", None)
    seconds("real_trigger_s", "new digest, served: trigger→COMPLETED", None)
    seconds("real_cluster_work_s", "new digest: cluster work (readiness + gates)", None)
    seconds("real_overhead_s", "new digest: overhead = run - cluster work", None)
    share("real_overhead_share", "new digest: overhead / flow run, as measured", False)
    share("real_overhead_share_at_10s", "new digest: overhead / (overhead + 10 s)", True)
    head = ("measurement", "N", "median", "p90", "goal: < 5 s, < 20 %")
    return common.markdown_table(head, rows)


def breakdown_table(results: dict[str, Any]) -> str:
    rows = [
        (part, f"{s['median']:.2f}", f"{s['p90']:.2f}")
        for part, s in results["summary"]["overhead_breakdown"].items()
    ]
    head = ("part of the overhead (new digest)", "median s", "p90 s")
    return common.markdown_table(head, rows, aligned=False)


def phases_table(results: dict[str, Any]) -> str:
    rows = [
        (name, phase, f"{s['median']:.2f}", f"{s['p90']:.2f}")
        for name, phases in results["summary"]["phases"].items()
        for phase, s in phases.items()
    ]
    return common.markdown_table(("run", "phase", "median s", "p90 s"), rows, aligned=False)


def summarize(results: dict[str, Any]) -> None:
    child, served, real = results["noop_child"], results["noop_served"], results["real"]
    summary = common.summary
    s: dict[str, Any] = {
        "noop_child_flow_run_s": summary([x["flow_run_s"] for x in child]),
        "noop_child_wall_s": summary([x["child_wall_s"] for x in child]),
        "noop_served_flow_run_s": summary([x["flow_run_s"] for x in served]),
        "noop_served_trigger_s": summary([x["trigger_to_completed_s"] for x in served]),
        "real_flow_run_s": summary([x["flow_run_s"] for x in real]),
        "real_trigger_s": summary([x["trigger_to_completed_s"] for x in real]),
        "real_cluster_work_s": summary([x["cluster_work_s"] for x in real]),
        "real_overhead_s": summary([x["overhead_s"] for x in real]),
        "real_overhead_share": summary([x["overhead_share"] for x in real]),
        "real_overhead_share_at_10s": summary([x["overhead_share_at_10s"] for x in real]),
    }
    s["overhead_breakdown"] = {k: summary(v) for k, v in overhead_parts(real).items()}
    s["phases"] = {
        name: {
            phase: summary([x["phases_s"][phase] for x in samples])
            for phase in samples[0]["phases_s"]
        }
        for name, samples in (
            ("no-op, child process", child),
            ("no-op, served", served),
            ("new digest, served", real),
        )
    }
    results["summary"] = s
    results["goals"] = goals(s)


def overhead_parts(real: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Overhead parts of each release of a new digest: wall time covered by each kind of task
    run; readiness and gate task runs count only beyond their recorded durations (their
    bookkeeping); "outside tasks" is the flow's own time between and around task runs (engine,
    target locks, run rename, events)."""
    parts: dict[str, list[float]] = {}
    kinds = [k for k, _ in TASK_KINDS if k not in ("readiness", "gates")] + ["other tasks"]
    for sample in real:
        seconds = sample["tasks"]["seconds"]
        for kind in kinds:
            parts.setdefault(kind, []).append(seconds.get(kind, 0.0))
        checks = seconds.get("readiness", 0.0) + seconds.get("gates", 0.0)
        parts.setdefault("readiness + gate task runs beyond their evidence", []).append(
            checks - sample["cluster_work_s"]
        )
        for where, seconds_outside in sample["tasks"]["outside"].items():
            parts.setdefault(f"outside task runs: {where}", []).append(seconds_outside)
        parts.setdefault("(of all the above: Prefect client retry sleeps after 503s)", []).append(
            sample["client_retries"]["seconds_slept"]
        )
    return parts


def goals(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "noop_under_5s": {
            key: s[key]["median"] < NOOP_GOAL_SECONDS
            for key in (
                "noop_child_flow_run_s",
                "noop_child_wall_s",
                "noop_served_flow_run_s",
                "noop_served_trigger_s",
            )
        },
        "overhead_under_20_percent_at_10s": s["real_overhead_share_at_10s"]["median"]
        < OVERHEAD_GOAL_SHARE,
        "overhead_under_20_percent_as_measured": s["real_overhead_share"]["median"]
        < OVERHEAD_GOAL_SHARE,
    }


def print_report(results: dict[str, Any], out: Path) -> None:
    print()
    print(table(results))
    print()
    print(breakdown_table(results))
    print()
    print(phases_table(results))
    print(
        f"\nPrefect server: {results['prefect_sqlite_locked']} 'database is locked' errors "
        "(answered 503, retried by clients after 2 s, 4 s...) while this ran"
    )
    if not results["machine"]["bytecode"]["prefect_compiled"]:
        print(
            "\nPrefect has no compiled bytecode here (PYTHONDONTWRITEBYTECODE="
            f"{results['machine']['bytecode']['PYTHONDONTWRITEBYTECODE']}): every process "
            "compiled it at start-up, which the start-up phases include"
        )
    print(f"\n{results['elapsed_s']:.0f}s in all; every sample in {out}")


# -- main ---------------------------------------------------------------------------------------


def sqlite_locked(platform: LocalPlatform) -> int:
    """How many times the Prefect server's log says its SQLite database was locked so far."""
    logfile = platform.state / "logs" / "prefect.log"
    if not logfile.exists():
        return 0
    with logfile.open(errors="replace") as lines:
        return sum(line.startswith(SQLITE_LOCKED) for line in lines)


def source_state() -> dict[str, Any]:
    """The commit measured, and files changed since (flows/tasks/conveyor are what runs)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = git("status", "--porcelain", "--", "flows", "tasks", "conveyor", "deployments")
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": changed.splitlines()}


def bytecode() -> dict[str, Any]:
    """Whether the interpreters this run starts (they inherit its environment) find Prefect
    compiled. Every flow run starts one; without .pyc files, and with PYTHONDONTWRITEBYTECODE
    set, each compiles Prefect's sources again (about 1.5 s more per start-up on 2 cores)."""
    spec = importlib.util.find_spec("prefect")
    origin = spec.origin if spec else None
    compiled = bool(origin) and Path(importlib.util.cache_from_source(str(origin))).exists()
    return {
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
        "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX"),
        "prefect_compiled": compiled,
    }


def cleanup(world: World, served: Served | None) -> None:
    """Stop every process the world runs, delete the served deployment (or, when it served
    the shared ones, the reconcile deployments it added) and the target concurrency limits;
    the world deletes its namespaces when its block ends."""
    for process in world.running:
        stop_process(process)
    if served is not None and served.name != SERVED_DEPLOYMENT:
        world.api.delete_deployment(RELEASE, served.name)
    if served is not None and served.name == SERVED_DEPLOYMENT:  # the reconcile ones it added
        for target in TARGETS:
            world.api.delete_deployment(RECONCILE, f"{world.app}-{target}")
    for target in TARGETS:
        world.api.delete_concurrency_limit(limit_name(world.app, target))


def parse_arguments() -> argparse.Namespace:
    parser = common.argument_parser(
        __doc__, repeat=5, repeat_help="repetitions of each measurement", results=RESULTS
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=270.0,
        help="seconds; fewer repetitions when they would not fit (the table prints N)",
    )
    parser.add_argument(
        "--shared-deployment",
        action="store_true",
        help="serve with `python -m deployments.serve` (release/conveyor...) instead of a "
        "release/bench-<prefix> deployment of the same flow",
    )
    return parser.parse_args()


def measure(world: World, args: argparse.Namespace, began: float) -> dict[str, Any]:
    """The three measurements in `world`, within the budget; the results so far."""
    keep_only_cluster_work(world)
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "repeat": args.repeat,
        "budget_s": args.budget,
        "app": world.app,
        "gate_seconds": GATE_SECONDS,
        "served_deployment": None,
    }
    log(f"world {world.app} in {world.root}; N={args.repeat}")
    served: Served | None = None
    try:
        digest = first_release(world, results)
        # What is left of the budget goes 20 % to 1a, 25 % to 1b, the rest to 2 (unused time
        # carries over); every measurement takes at least one sample.
        end: float = began + args.budget

        def deadline(share: float) -> float:
            return time.monotonic() + max(end - time.monotonic(), 0.0) * share

        log("1a. no-op release in a child process")
        results["noop_child"] = repeat(
            args.repeat, "no-op child", noop_child(world, digest), deadline(0.20)
        )

        log("1b. no-op release through a served deployment")
        served_deadline = deadline(0.25 / 0.80)
        served = start_serving(world, args.shared_deployment)
        results["served_deployment"] = f"release/{served.name}"
        log(f"serving release/{served.name} (pid {served.process.pid})")
        run_served(world, served)  # warm-up: the runner's first run
        results["noop_served"] = repeat(
            args.repeat, "no-op served", noop_served(world, served), served_deadline
        )

        log("2. release of a new digest through the served deployment")
        results["real"] = repeat(
            args.repeat, "new digest", real_served(world, served, 2), deadline(1.0)
        )
    finally:
        log("cleaning up: processes, deployment, concurrency limits, namespaces")
        cleanup(world, served)
    return results


def first_release(world: World, results: dict[str, Any]) -> str:
    """The first release (builds, creates the namespaces), in a child process; its digest."""
    log("first release (builds, creates the namespaces): in a child process")
    run_id, wall, *_ = run_child(world)
    digest = desired_digest(world, "prod-us")
    assert digest is not None
    first = world.api.flow_run_record(run_id)
    results["first_release"] = {"flow_run_s": run_seconds(first), "child_wall_s": wall}
    log(f"first release {digest[:19]}: flow run {run_seconds(first):.2f}s, wall {wall:.2f}s")
    return digest


def main() -> None:
    args = parse_arguments()
    platform = LocalPlatform(PLATFORM_STATE)
    unhealthy = [h for h in platform.status() if not h.healthy]
    if unhealthy:
        sys.exit(f"the local platform is not healthy: {unhealthy}; `conveyor platform up`")
    began = time.monotonic()
    locked_before = sqlite_locked(platform)
    root = Path(tempfile.mkdtemp(prefix="conveyor-bench-release-"))
    try:
        with isolated_world(platform, root, prefix=f"b{uuid.uuid4().hex[:6]}") as world:
            results = measure(world, args, began)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results["elapsed_s"] = round(time.monotonic() - began, 1)
    results["prefect_sqlite_locked"] = sqlite_locked(platform) - locked_before
    results["source"] = source_state()
    results["machine"] = {
        "python": pyplatform.python_version(),
        "cpus": os.cpu_count(),
        "platform": pyplatform.platform(),
        "bytecode": bytecode(),
    }
    summarize(results)
    common.write_results(args.out, results)
    print_report(results, args.out)


if __name__ == "__main__":
    main()
