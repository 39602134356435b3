"""`deploy_target(app, target, digest)`: one target of a stage, under the same policy."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from conveyor.config.reader import load_config
from conveyor.records import policy
from conveyor.records.state import StageVerdict
from flows.steps import (
    LOCK_WAIT,
    PromotionRefused,
    StageFailed,
    deploy_to_target,
    now,
    record_outcomes,
    render_stage,
)
from tasks import bundles, records
from tasks.locks import hold_targets


@flow(name="deploy-target", flow_run_name="deploy-{app}-{target}-{digest}")
async def deploy_target(app: str, target: str, digest: str, config_file: str | None = None) -> None:
    """Deploy `digest` to one target; the digest must have passed the previous stage."""
    config = load_config(Path(config_file) if config_file else None)
    spec = config.app(app)
    chosen = spec.pipeline.target(target)
    stage = spec.pipeline.stage(chosen.stage)
    previous = spec.pipeline.previous(stage.name)
    evidence = await records.read_evidence(config, app, digest, previous.name) if previous else None
    decision = policy.may_enter(
        spec.pipeline, stage.name, digest, previous_evidence=evidence, now=now()
    )
    if not decision.allowed:
        raise PromotionRefused(
            f"{app}: {digest[:19]} may not enter {target}: " + decision.explain()
        )
    approved_by = None
    if stage.approval.required:
        renders = await render_stage(config, spec, stage, digest)
        rendered = renders[target]
        bound_to = policy.stage_rendered_hash({t: r.rendered_hash for t, r in renders.items()})
        recorded = await records.read_evidence(config, app, digest, stage.name)
        held = policy.approval_holds(recorded, digest=digest, rendered_hash=bound_to)
        if not held.allowed or recorded is None or recorded.approval is None:
            raise PromotionRefused(
                f"{app}: {stage.name} needs an approval of {digest[:19]} for these manifests "
                f"({held.explain()}); promote the stage (`conveyor promote`) to ask for one"
            )
        approved_by = recorded.approval.approver
    else:
        rendered = await bundles.render_bundle(config, app, chosen, digest)
    async with hold_targets(app, [target], wait_seconds=LOCK_WAIT):
        outcome = await deploy_to_target(
            config, spec, stage, chosen, rendered, approved_by=approved_by
        )
        # the stage's verdict comes when the stage is promoted as a whole
        verdict: StageVerdict = "pending" if outcome.passed else "failed"
        await record_outcomes(config, spec, stage, digest, [outcome], verdict)
    if not outcome.passed:
        raise StageFailed(f"{app}/{target}: {digest[:19]} failed")
