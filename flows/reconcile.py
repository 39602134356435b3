"""`reconcile(app, target)`: the control loop. Git holds the desired state; the cluster follows.

Run on a schedule per target. It renders exactly what the state repository records (digest and
parameter values), reports drift as an artifact and an event, and, when the target has
self-heal on, re-applies it and waits for readiness. A commit that changes the desired state by
hand (a revert, say) is what the next run applies.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prefect import flow, get_run_logger

from conveyor.adapters.prefect_api import RECONCILE
from conveyor.errors import ConveyorError
from conveyor.promotion.context import open_run_context
from flows.steps import LOCK_WAIT, READINESS_TIMEOUT
from tasks import bundles, cluster, records, reports
from tasks.locks import hold_targets


@flow(name=RECONCILE, flow_run_name="reconcile-{app}-{target}")
async def reconcile(app: str, target: str, config_file: str | None = None) -> int:
    """Return the number of drifted objects found (and corrected when self-heal is on)."""
    logger = get_run_logger()
    context = await asyncio.to_thread(open_run_context, config_file, app)
    chosen = context.app.pipeline.target(target)
    desired = await records.read_desired_state(context.state, app, target)
    if desired is None:
        logger.info("%s/%s: no desired state recorded yet; nothing to reconcile", app, target)
        return 0
    kube = context.kube(chosen)
    rendered = await bundles.render_bundle(
        context.store, app, chosen, desired.digest, desired.parameters
    )
    drifts = await cluster.detect_drift(kube, rendered, chosen)
    rows = [row for drift in drifts for row in drift.rows()]
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
    async with hold_targets(app, [target], wait_seconds=LOCK_WAIT):
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
