"""`rollback(app, target, to=None)`: back to the previous (or a named) recorded digest."""

from __future__ import annotations

from dataclasses import replace

from prefect import flow, get_run_logger

from conveyor.adapters.prefect_api import ROLLBACK
from conveyor.errors import InputError, StageFailed
from conveyor.kit.redaction import without_userinfo
from conveyor.records import state
from flows.context import run_context
from flows.steps import LOCK_WAIT, now, roll_back, run_label
from tasks import records, reports
from tasks.locks import hold_targets


@flow(name=ROLLBACK, flow_run_name="rollback-{app}-{target}")
async def rollback(app: str, target: str, to: str | None = None) -> str:
    """Re-deploy a digest this target ran before, with the parameters it ran with then."""
    logger = get_run_logger()
    context = await run_context(app)
    chosen = context.app.pipeline.target(target)
    current = await records.read_desired_state(context.state, app, target)
    if current is None:
        raise InputError(f"{app}/{target}: no recorded desired state to roll back from")
    entries = await records.read_history(context.state, app, target)
    goal = state.previous_desired(current, entries, to)
    if goal is None and to is None:
        raise InputError(f"{app}/{target}: only {current.digest[:19]} was ever recorded")
    if goal is None:
        raise InputError(
            f"{app}/{target}: {to} was never this target's desired digest",
            hint=f"`git log -p -- {state.desired_path(app, target)}` in a clone of the state "
            f"repository ({without_userinfo(context.config.state_repository)}) lists the "
            "recorded digests",
        )
    async with hold_targets(app, [target], wait_seconds=LOCK_WAIT):
        result = await roll_back(context, chosen, goal)
        if not result.passed:
            raise StageFailed(f"{app}/{target}: {result.reason}")
        promoted_by, run_id = run_label()
        await records.record_state(
            context.state,
            desired=replace(goal, promoted_by=promoted_by, flow_run_id=run_id, updated_at=now()),
            action="rollback",
            reason=f"from {current.digest[:19]}",
        )
    reports.announce(
        "promotion.rolled-back",
        app=app,
        target=target,
        payload={"from": current.digest, "to": goal.digest},
    )
    logger.info(
        "%s/%s rolled back from %s to %s", app, target, current.digest[:19], goal.digest[:19]
    )
    return goal.digest
