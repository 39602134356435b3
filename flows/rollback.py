"""`rollback(app, target, to=None)`: back to the previous (or a named) recorded digest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger

from conveyor.config.reader import load_config
from conveyor.errors import InputError
from flows.steps import LOCK_WAIT, StageFailed, now, roll_back, run_label
from tasks import records, reports
from tasks.locks import hold_targets


@flow(name="rollback", flow_run_name="rollback-{app}-{target}")
async def rollback(
    app: str, target: str, to: str | None = None, config_file: str | None = None
) -> str:
    """Re-deploy a digest this target ran before, with the parameters it ran with then."""
    logger = get_run_logger()
    config = load_config(Path(config_file) if config_file else None)
    chosen = config.app(app).pipeline.target(target)
    history = [
        entry.desired
        for entry in await records.read_history(config, app, target)
        if entry.desired is not None
    ]
    if not history:
        raise InputError(f"{app}/{target}: no recorded desired state to roll back from")
    current = history[0]
    if to is None:
        earlier = [d for d in history if d.digest != current.digest]
        if not earlier:
            raise InputError(f"{app}/{target}: only {current.digest[:19]} was ever recorded")
        goal = earlier[0]
    else:
        matches = [d for d in history if d.digest == to or d.digest.startswith(to)]
        if not matches:
            raise InputError(
                f"{app}/{target}: {to} was never this target's desired digest",
                hint="`conveyor status --history` lists the recorded digests",
            )
        goal = matches[0]
    async with hold_targets(app, [target], wait_seconds=LOCK_WAIT):
        result = await roll_back(config, chosen, goal)
        if not result.passed:
            raise StageFailed(f"{app}/{target}: {result.reason}")
        promoted_by, run_id = run_label()
        await records.record_state(
            config,
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
