"""The approval a stage may require: one that still holds, or a person's answer to a pause.

Why a module of its own: an approval is bound to a digest and to the manifests rendered for every
target of the stage, so one given earlier counts only while it still holds for both
(`standing_approval`, the one home of that rule for promote_stage and deploy_target). Without
one, the run pauses with a typed form (Prefect's apause_flow_run), tagged so that `conveyor
approve|reject` finds it, and the answer is recorded as evidence before the run goes on or stops.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated

from prefect import apause_flow_run, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Running
from pydantic import Field

from conveyor.adapters.prefect_api import approval_pause_prefix, awaiting_approval_tag
from conveyor.bundles.render import Rendered
from conveyor.config.model import Stage
from conveyor.errors import PromotionRefused
from conveyor.promotion.context import RunContext
from conveyor.promotion.reports import Provenance, approval_form
from conveyor.records import policy, state
from tasks import bundles, cluster, records, reports
from tasks.locks import tag_current_run

APPROVAL_POLL_SECONDS = 2


class ApprovalInput(RunInput):
    """The form a person fills in, in the Prefect UI or through `conveyor approve|reject`.
    Approve and approver have no default, so the UI marks them required, and an approver must
    name someone: Prefect refuses a resume whose input does not fit this schema."""

    approve: bool
    approver: Annotated[str, Field(min_length=1, pattern=r"\S")]
    reason: str = ""


@dataclass(frozen=True)
class StandingApproval:
    """The approval on record for a digest at a stage, judged against the manifests about to
    be applied."""

    bound_to: str
    """The stage's rendered hash: what an approval must have been given for."""
    verdict: policy.Admission
    recorded: state.Approval | None

    @property
    def approver(self) -> str | None:
        """Who approved, when the recorded approval still holds."""
        return self.recorded.approver if self.verdict.allowed and self.recorded else None


async def standing_approval(
    context: RunContext, stage: Stage, digest: str, renders: dict[str, Rendered]
) -> StandingApproval:
    """Whether an approval recorded for `digest` at `stage` still holds for these renders."""
    bound_to = policy.stage_rendered_hash({t: r.rendered_hash for t, r in renders.items()})
    evidence = await records.read_evidence(context.state, context.app.name, digest, stage.name)
    verdict = policy.approval_holds(evidence, digest=digest, rendered_hash=bound_to)
    return StandingApproval(bound_to, verdict, evidence.approval if evidence else None)


async def obtain_approval(
    context: RunContext,
    stage: Stage,
    digest: str,
    renders: dict[str, Rendered],
    provenance: Provenance | None = None,
    *,
    break_glass: str | None = None,
) -> str:
    """An approval bound to this digest and these manifests: recorded, or asked for now.
    A break glass (its reason) is always asked for now, the reason at the top of the form: an
    approval given before, when the freeze was not at stake, does not count for it.
    Returns the approver; raises PromotionRefused on a rejection or a timeout."""
    logger = get_run_logger()
    standing = await standing_approval(context, stage, digest, renders)
    if standing.approver is not None and not break_glass:
        logger.info("%s: %s", stage.name, standing.verdict.explain())
        return standing.approver
    if standing.recorded is not None:
        logger.warning(
            "%s: earlier approval does not count: %s", stage.name, standing.verdict.explain()
        )
    if provenance is None:
        provenance = await bundles.read_provenance(context.store, digest)
    answer = await _ask(context, stage, digest, renders, standing.bound_to, provenance, break_glass)
    return await _record_answer(context, stage, digest, answer, standing.bound_to)


async def _ask(
    context: RunContext,
    stage: Stage,
    digest: str,
    renders: dict[str, Rendered],
    bound_to: str,
    provenance: Provenance,
    break_glass: str | None,
) -> ApprovalInput:
    """Pause the run until a person answers the form, or the stage's approval timeout (which
    answers as a rejection)."""
    description = await _form(context, stage, digest, renders, provenance)
    if break_glass:
        description = (
            f"**BREAK GLASS:** {break_glass}. Approving lets this digest pass the freeze "
            f"windows of {stage.name}; git records it as a break glass.\n\n{description}"
        )
    tag = awaiting_approval_tag(context.app.name, stage.name)
    await tag_current_run([tag])
    reports.announce(
        "approval.requested",
        app=context.app.name,
        stage=stage.name,
        payload={"digest": digest, "renderedHash": bound_to},
    )
    try:
        answer = await apause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description),
            timeout=int(stage.approval.timeout),
            poll_interval=APPROVAL_POLL_SECONDS,
            # Unique per pause (a repeated key would hand back an earlier answer), and found by
            # `conveyor approve` in the paused state itself, tag or no tag.
            key=approval_pause_prefix(context.app.name, stage.name) + uuid.uuid4().hex[:12],
        )
    except FlowPauseTimeout:
        await _end_expired_pause()
        answer = ApprovalInput(
            approve=False,
            approver="conveyor",
            reason=f"no answer within {stage.approval.timeout:.0f}s",
        )
    finally:
        await tag_current_run([], remove_prefix=tag)
    return answer


async def _form(
    context: RunContext,
    stage: Stage,
    digest: str,
    renders: dict[str, Rendered],
    provenance: Provenance,
) -> str:
    """The approval form: what each target's live objects would change, and its parameters
    against those the previous stage really ran (its desired state in git: effective values,
    defaults applied, as the renders here), so only true differences show."""
    targets = [context.app.pipeline.target(name) for name in renders]
    changes = await asyncio.gather(
        *(cluster.detect_drift(context.kube(t), renders[t.name], t) for t in targets)
    )
    previous = context.app.pipeline.previous(stage.name)
    baseline = None
    if previous is not None:
        first = previous.targets[0]
        ran = await records.read_desired_state(context.state, context.app.name, first.name)
        baseline = replace(first, parameters=dict(ran.parameters)) if ran else first
    return approval_form(
        context.app.name,
        stage.name,
        digest,
        renders,
        baseline=baseline,
        changes=dict(zip(renders, changes, strict=True)),
        provenance=provenance,
    )


async def _record_answer(
    context: RunContext, stage: Stage, digest: str, answer: ApprovalInput, bound_to: str
) -> str:
    """Record the answer as the stage's evidence and announce it; go on only when approved."""
    decision: state.Decision = "approved" if answer.approve else "rejected"
    if not answer.approver.strip():  # the schema refuses it; a hand-made input may not
        decision = "rejected"
        answer = ApprovalInput(approve=False, approver="conveyor", reason="no approver named")
    approval = state.Approval(decision, answer.approver, answer.reason, bound_to, datetime.now(UTC))
    app = context.app.name
    await records.record_state(
        context.state,
        evidence=state.Evidence(
            app, digest, stage.name, "pending" if answer.approve else "failed", {}, approval
        ),
    )
    reports.announce(
        f"approval.{decision}",
        app=app,
        stage=stage.name,
        payload={"digest": digest, "approver": approval.approver, "reason": approval.reason},
    )
    if not answer.approve:
        raise PromotionRefused(
            f"{app}: {stage.name} of {digest[:19]} {decision} by {approval.approver}"
            + (f": {approval.reason}" if approval.reason else "")
        )
    return approval.approver


async def _end_expired_pause() -> None:
    """Put a run whose approval pause timed out back to Running.

    Prefect leaves it Paused and turns any later transition into Failed("The flow was failed and
    never resumed."), which would hide why the promotion was refused; and a late answer would fail
    the run while it still records the rejection. The pause is over (the server refuses to resume
    it past its timeout), so the run goes on as Running and ends with Conveyor's own reason.
    """
    run = get_run_context().flow_run  # type: ignore[union-attr]
    if run is None:
        return
    async with get_client() as client:
        await client.set_flow_run_state(run.id, Running(), force=True)
