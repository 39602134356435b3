"""`reconcile(app, target)`: the control loop. Git holds the desired state; the cluster follows.

Run on demand (`conveyor reconcile`), and by a cluster's scheduled `reconcile_cluster` for each
target it found drifted. It renders exactly what the state repository records (digest and
parameter values), reports drift as an artifact and an event, and, when the target has
self-heal on, re-applies it and waits for readiness. Reporting and correcting happen while it
holds the target's slot, after reading git again, so it never undoes a promotion that recorded
a new digest while it waited. A commit that changes the desired state by
hand (a revert, say) is what the next run applies.
"""

from __future__ import annotations

import os
from dataclasses import replace

from prefect import flow, get_run_logger

from conveyor.adapters.prefect_api import RECONCILE
from conveyor.bundles.render import Rendered
from conveyor.cluster.drift import ObjectDrift
from conveyor.config.model import Target
from conveyor.errors import ConveyorError
from conveyor.promotion.context import RunContext
from conveyor.records.state import DesiredState
from flows.context import run_context
from flows.steps import READINESS_TIMEOUT
from tasks import bundles, cluster, records, reports
from tasks.locks import TargetBusy, hold_targets

RECONCILE_INTERVAL = float(os.environ.get("CONVEYOR_RECONCILE_INTERVAL", "60"))
"""Seconds between two scheduled control-loop cycles of a cluster; also the most a reconcile
waits for the target's slot: past that, the next cycle looks again."""


@flow(name=RECONCILE, flow_run_name="reconcile-{app}-{target}")
async def reconcile(app: str, target: str) -> int:
    """Return the number of drifted objects found (and corrected when self-heal is on).

    Drift is first looked for without the target's slot, so an idle cycle takes no lock and
    writes nothing. Drift seen there may be a promotion under way (its apply comes before its
    record), so it is only reported and corrected under the slot, after reading git again: if
    the desired state changed meanwhile, this run does nothing and says so.
    """
    logger = get_run_logger()
    context = await run_context(app)
    chosen = context.app.pipeline.target(target)
    desired = await records.read_desired_state(context.state, app, target)
    if desired is None:
        logger.info("%s/%s: no desired state recorded yet; nothing to reconcile", app, target)
        return 0
    kube = context.kube(chosen)
    _, drifts = await _drift_from(context, chosen, desired)
    if not drifts:
        logger.info(
            "%s/%s: live matches %s (%d API request(s), %d write(s))",
            app,
            target,
            desired.digest[:19],
            kube.requests,
            kube.writes,
        )
        return 0
    logger.info(
        "%s/%s: %d object(s) differ from %s; checking again while holding the target",
        app,
        target,
        len(drifts),
        desired.digest[:19],
    )
    try:
        async with hold_targets(app, [target], wait_seconds=RECONCILE_INTERVAL):
            return await _correct(context, chosen, desired)
    except TargetBusy as busy:
        logger.info("%s/%s: skipped, the next cycle looks again: %s", app, target, busy.message)
        return 0


async def _drift_from(
    context: RunContext, chosen: Target, desired: DesiredState
) -> tuple[Rendered, list[ObjectDrift]]:
    """What git records for the target, rendered, and how the live objects differ from it."""
    rendered = await bundles.render_bundle(
        context.store, context.app.name, chosen, desired.digest, desired.parameters
    )
    return rendered, await cluster.detect_drift(context.kube(chosen), rendered, chosen)


async def _correct(context: RunContext, chosen: Target, seen: DesiredState) -> int:
    """Under the target's slot: report drift from what git records now, and correct it."""
    logger = get_run_logger()
    app, target = context.app.name, chosen.name
    desired = await records.read_desired_state(context.state, app, target)
    if desired is None or (desired.digest, desired.parameters_hash) != (
        seen.digest,
        seen.parameters_hash,
    ):
        logger.info(
            "%s/%s: the desired state changed while this run waited for the target (%s -> %s); "
            "nothing done, the next cycle checks the new one",
            app,
            target,
            seen.digest[:19],
            desired.digest[:19] if desired else "none",
        )
        return 0
    kube = context.kube(chosen)
    rendered, drifts = await _drift_from(context, chosen, desired)
    if not drifts:
        logger.info("%s/%s: live matches %s after all", app, target, desired.digest[:19])
        return 0
    rows = [row for drift in drifts for row in drift.rows()]
    await reports.publish_table(
        f"drift-{app}-{target}",
        rows,
        f"{app}/{target}: {len(drifts)} object(s) drifted from {desired.digest[:19]}",
    )
    reports.announce(
        "drift.detected",
        app=app,
        target=target,
        payload={"digest": desired.digest, "objects": [str(d.ref) for d in drifts]},
    )
    logger.warning("%s/%s drifted:\n%s", app, target, "\n".join(d.describe() for d in drifts))
    if not chosen.self_heal:
        logger.info("self-heal is off for %s: drift reported, not corrected", target)
        return len(drifts)
    # Self-heal takes fields back from whoever changed them out of band.
    await cluster.apply_bundle(kube, rendered, replace(chosen, force_conflicts=True))
    ready = await cluster.wait_for_readiness(kube, rendered, chosen, READINESS_TIMEOUT)
    if not ready.passed:
        raise ConveyorError(f"{app}/{target}: corrected drift but not ready: {ready.reason}")
    reports.announce(
        "drift.corrected",
        app=app,
        target=target,
        payload={"digest": desired.digest, "objects": [str(d.ref) for d in drifts]},
    )
    return len(drifts)
