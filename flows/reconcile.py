"""`reconcile(app, target)`: the control loop. Git holds the desired state; the cluster follows.

Run on a schedule per target. It renders exactly what the state repository records (digest and
parameter values), reports drift as an artifact and an event, and, when the target has
self-heal on, re-applies it and waits for readiness. A commit that changes the desired state by
hand (a revert, say) is what the next run applies.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger

from conveyor.config.reader import load_config
from conveyor.errors import ConveyorError
from flows.steps import LOCK_WAIT, READINESS_TIMEOUT
from tasks import bundles, cluster, records, reports
from tasks.locks import hold_targets


@flow(name="reconcile", flow_run_name="reconcile-{app}-{target}")
async def reconcile(app: str, target: str, config_file: str | None = None) -> int:
    """Return the number of drifted objects found (and corrected when self-heal is on)."""
    logger = get_run_logger()
    config = load_config(Path(config_file) if config_file else None)
    chosen = config.app(app).pipeline.target(target)
    desired = await records.read_desired_state(config, app, target)
    if desired is None:
        logger.info("%s/%s: no desired state recorded yet; nothing to reconcile", app, target)
        return 0
    rendered = await bundles.render_bundle(config, app, chosen, desired.digest, desired.parameters)
    drifts = await cluster.detect_drift(rendered, chosen)
    rows = [
        {"object": str(d.ref), "field": f.path, "desired": repr(f.desired), "live": repr(f.live)}
        for d in drifts
        for f in d.fields
    ]
    rows += [
        {
            "object": str(d.ref),
            "field": "(object)",
            "desired": "present",
            "live": "deleted out of band",
        }
        for d in drifts
        if d.missing
    ]
    if not drifts:
        logger.info("%s/%s: live matches %s", app, target, desired.digest[:19])
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
        await cluster.apply_bundle(rendered, replace(chosen, force_conflicts=True))
        ready = await cluster.wait_for_readiness(rendered, chosen, READINESS_TIMEOUT)
    if not ready.passed:
        raise ConveyorError(f"{app}/{target}: corrected drift but not ready: {ready.reason}")
    reports.announce(
        "drift.corrected",
        app=app,
        target=target,
        payload={"digest": desired.digest, "objects": [str(d.ref) for d in drifts]},
    )
    return len(drifts)
