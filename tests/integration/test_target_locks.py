"""Target slots and budgets against the platform's Prefect server: taken, waited for, refused
naming the holder, renewed, released, and created or resized on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

from conveyor.platform.local import LocalPlatform
from tasks.locks import budget_name, limit_name

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json, sys, threading, time
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from conveyor.config.model import Budget
from tasks import locks

APP = sys.argv[1]
events = []
renewals = []
leases = []
post_once = locks._post_once

async def counted_post(client, path, body):
    try:
        response = await post_once(client, path, body)
    except Exception as error:
        status = error.response.status_code
        raise
    else:
        status = response.status_code
        if path.endswith("increment-with-lease"):
            leases.append(response.json()["lease_id"])
        return response
    finally:
        if path.endswith("/renew"):
            renewals.append(status)

locks._post_once = counted_post

def note(what):
    events.append((round(time.monotonic(), 3), what))

held, trying = threading.Event(), threading.Semaphore(0)

async def until(condition):
    while not condition():
        await asyncio.sleep(0.02)

@flow(flow_run_name="holder-" + APP)
async def holder():
    async with locks.hold_targets(APP, ["eu", "us"], wait_seconds=5):
        note("holder in")
        held.set()
        for _ in range(2):  # both waiters are asking (their flow runs may start late)
            await until(lambda: trying.acquire(blocking=False))
        await asyncio.sleep(2.0)
        note("holder out")

@flow(flow_run_name="impatient-" + APP)
async def impatient():
    await until(held.is_set)
    trying.release()
    try:
        async with locks.hold_targets(APP, ["us"], wait_seconds=0.8):
            note("impatient in")
    except locks.TargetBusy as error:
        note("refused: " + str(error))

@flow(flow_run_name="patient-" + APP)
async def patient():
    await until(held.is_set)
    trying.release()
    async with locks.hold_targets(APP, ["eu"], wait_seconds=30):
        note("patient in")

@flow(flow_run_name="renewing-" + APP)
async def renewing():
    async with locks.hold_budget(Budget(name=APP, limit=2)):
        await asyncio.sleep(1.2)
        note("renewing out")

@flow(flow_run_name="robbed-" + APP)
async def robbed():
    try:
        async with locks.hold_targets(APP, ["eu"], wait_seconds=5):
            async with get_client() as client:  # someone frees the slot behind the run's back
                await client.release_concurrency_slots_with_lease(leases[-1])
            await asyncio.sleep(5)
            note("robbed finished")
    except locks.SlotsLost as error:
        note("lost: " + str(error))

@flow(flow_run_name="tagged-" + APP)
async def tagged():
    async with locks.hold_targets(APP, ["tags"], wait_seconds=5):
        # while the holder tag is still being set in the background
        await locks.tag_current_run(["conveyor-awaiting:" + APP + "/tags"])
        held = "conveyor-holds:" + APP + "/tags"
        async with get_client() as client:
            for _ in range(50):  # the holder tag lands in the background: give it 5 s
                run = await client.read_flow_run(get_run_context().flow_run.id)
                if held in run.tags:
                    break
                await asyncio.sleep(0.1)
        note("tags: " + " ".join(sorted(run.tags)))

async def limits():
    async with get_client() as client:
        return {
            name: (found.limit, found.active_slots)
            for name in [locks.limit_name(APP, "eu"), locks.limit_name(APP, "us"),
                         locks.budget_name(APP), locks.limit_name(APP, "tags")]
            for found in [await client.read_global_concurrency_limit_by_name(name)]
        }

async def main():
    locks.RENEW_EVERY = 0.3
    await asyncio.gather(holder(), impatient(), patient())
    # a budget resized in the configuration is resized on the server on first use
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(locks.budget_name(APP), 7)
    await renewing()
    renewed = list(renewals)
    await robbed()
    await tagged()
    print(json.dumps({"events": events, "renewed": renewed, "limits": await limits()}))

asyncio.run(main())
"""


def test_target_slots_are_taken_in_turn_refused_by_name_and_released(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    app = f"locks-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "locks_check.py"
    script.write_text(textwrap.dedent(SCRIPT))
    environment = dict(
        os.environ,
        **platform.prefect.environment(),
        PYTHONPATH=str(ROOT),
    )
    run = subprocess.run(
        [sys.executable, str(script), app],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    events = {what.split(":")[0]: moment for moment, what in report["events"]}
    refusal = next((w for _, w in report["events"] if w.startswith("refused")), str(report))

    # the impatient run gave up after its 0.8 s, naming the run that holds the target
    assert f"holder-{app}" in refusal and "us" in refusal, refusal
    assert "impatient in" not in events
    # the patient run waited for the holder, then got the target within ~BUSY_POLL_CAP
    assert events["holder out"] < events["patient in"] <= events["holder out"] + 2.5
    # the lease was renewed while the budget was held (every 0.3 s for 1.2 s)
    assert "renewing out" in events
    assert len(report["renewed"]) >= 3 and set(report["renewed"]) == {204}, report["renewed"]
    # a lease that disappears ends the block with SlotsLost instead of carrying on unguarded
    assert "robbed finished" not in events
    lost = next((w for _, w in report["events"] if w.startswith("lost")), str(report))
    assert limit_name(app, "eu") in lost and "no longer knows lease" in lost, lost
    # two tag changes at once (the holder tag in the background, an approval tag) both land
    tags = next((w for _, w in report["events"] if w.startswith("tags")), str(report)).split()
    assert {f"conveyor-holds:{app}/tags", f"conveyor-awaiting:{app}/tags"} <= set(tags), tags
    # every slot was given back; the limits exist with the sizes Conveyor wants
    assert report["limits"] == {
        limit_name(app, "eu"): [1, 0],
        limit_name(app, "us"): [1, 0],
        budget_name(app): [2, 0],
        limit_name(app, "tags"): [1, 0],
    }
