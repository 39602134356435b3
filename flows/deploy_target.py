"""`deploy_target(app, target, digest)`: one target of a stage, under the same policy."""

from __future__ import annotations

from prefect import flow

from conveyor.adapters.prefect_api import DEPLOY_TARGET
from conveyor.bundles.render import Rendered
from conveyor.config.model import Stage
from conveyor.errors import PromotionRefused, StageFailed
from conveyor.promotion.context import RunContext
from conveyor.records import policy
from conveyor.records.state import StageVerdict
from flows.approval import standing_approval
from flows.context import run_context
from flows.steps import LOCK_WAIT, deploy_targets, now, record_outcomes, render_stage
from tasks import bundles, records
from tasks.locks import hold_targets


@flow(name=DEPLOY_TARGET, flow_run_name="deploy-{app}-{target}-{digest}")
async def deploy_target(app: str, target: str, digest: str) -> None:
    """Deploy `digest` to one target; the digest must have passed the previous stage."""
    context = await run_context(app)
    chosen = context.app.pipeline.target(target)
    stage = context.app.pipeline.stage(chosen.stage)
    previous = context.app.pipeline.previous(stage.name)
    evidence = (
        await records.read_evidence(context.state, app, digest, previous.name) if previous else None
    )
    decision = policy.may_enter(
        context.app.pipeline, stage.name, digest, previous_evidence=evidence, now=now()
    )
    if not decision.allowed:
        raise PromotionRefused(
            f"{app}: {digest[:19]} may not enter {target}: " + decision.explain()
        )
    approved_by = None
    if stage.approval.required:
        rendered, approved_by = await _approved_render(context, stage, target, digest)
    else:
        rendered = await bundles.render_bundle(context.store, app, chosen, digest)
    async with hold_targets(app, [target], wait_seconds=LOCK_WAIT):
        [outcome] = await deploy_targets(context, stage, {target: rendered}, approved_by)
        # the stage's verdict comes when the stage is promoted as a whole
        verdict: StageVerdict = "pending" if outcome.passed else "failed"
        await record_outcomes(context, stage, digest, [outcome], verdict)
    if not outcome.passed:
        raise StageFailed(f"{app}/{target}: {digest[:19]} failed")


async def _approved_render(
    context: RunContext, stage: Stage, target: str, digest: str
) -> tuple[Rendered, str]:
    """The target's render and its approver: the stage's approval must still hold for the
    manifests of every target of the stage (it is bound to all of them)."""
    renders = await render_stage(context, stage, digest)
    standing = await standing_approval(context, stage, digest, renders)
    if standing.approver is None:
        raise PromotionRefused(
            f"{context.app.name}: {stage.name} needs an approval of {digest[:19]} for these "
            f"manifests ({standing.verdict.explain()}); promote the stage (`conveyor promote`) "
            "to ask for one"
        )
    return renders[target], standing.approver
