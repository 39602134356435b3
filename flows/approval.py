"""The approval a stage may require: one that still holds, or a person's answer to a pause.

Why a module of its own: an approval is bound to a digest and to the manifests rendered for every
target of the stage, so one given earlier counts only while it still holds for both
(`standing_approval`, the one home of that rule for promote_stage and deploy_target). Without
one, the run pauses with a typed form (Prefect's apause_flow_run), tagged so that `conveyor
approve|reject` finds it, and the answer is recorded as evidence before the run goes on or stops.

A stage whose approval must be signed (conveyor.promotion.signatures) counts only SSH signatures
over its statement (digest and rendered hash), verified against its allowed-signers file; the
run pauses again, saying who has signed so far and why other signatures did not count, until
enough distinct signers have signed or the approval's time is up. A recorded signed approval is
verified again before it is reused, so an edited evidence file in git approves nothing.
"""

from __future__ import annotations

import asyncio
import time
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

from conveyor.adapters import sshsig
from conveyor.adapters.prefect_api import approval_pause_prefix, awaiting_approval_tag
from conveyor.bundles.render import Rendered
from conveyor.config.model import SignatureRule, Stage
from conveyor.errors import PromotionRefused
from conveyor.promotion import signatures
from conveyor.promotion.context import RunContext
from conveyor.promotion.reports import Provenance, approval_form
from conveyor.records import policy, state
from tasks import bundles, cluster, records, reports
from tasks.locks import tag_current_run

APPROVAL_POLL_SECONDS = 2
MAX_SIGNATURES_PER_ANSWER = 10
"""Each is one ssh-keygen run; an answer cannot make the run verify thousands."""


class ApprovalInput(RunInput):
    """The form a person fills in, in the Prefect UI or through `conveyor approve|reject`.
    Approve and approver have no default, so the UI marks them required, and an approver must
    name someone: Prefect refuses a resume whose input does not fit this schema."""

    approve: bool
    approver: Annotated[str, Field(min_length=1, pattern=r"\S")]
    reason: str = ""
    signatures: list[str] = Field(
        default_factory=list,
        description="armored SSH signatures (`conveyor approve --sign-with` makes them); "
        "needed only where the stage requires signed approvals",
    )


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
    context: RunContext,
    stage: Stage,
    digest: str,
    renders: dict[str, Rendered],
    promoter: sshsig.Signer | None = None,
) -> StandingApproval:
    """Whether an approval recorded for `digest` at `stage` still holds for these renders; on a
    stage requiring signatures, only while enough of its recorded signatures verify again (not
    counting `promoter`'s where the stage forbids it)."""
    bound_to = policy.stage_rendered_hash({t: r.rendered_hash for t, r in renders.items()})
    evidence = await records.read_evidence(context.state, context.app.name, digest, stage.name)
    verdict = policy.approval_holds(evidence, digest=digest, rendered_hash=bound_to)
    recorded = evidence.approval if evidence else None
    rule = stage.approval.signatures
    if verdict.allowed and rule is not None and recorded is not None:
        statement = signatures.approval_statement(context.app.name, stage.name, digest, bound_to)
        given = [signed.signature for signed in recorded.signatures]
        tally = await _tally(statement, given, rule, promoter)
        if not tally.enough(rule.required):
            verdict = policy.Admission(
                False,
                (
                    f"{len(tally.counted)} of the {rule.required} signer(s) {stage.name} "
                    "requires verify in the recorded approval"
                    + (f" ({'; '.join(tally.refused)})" if tally.refused else ""),
                ),
            )
    return StandingApproval(bound_to, verdict, recorded)


async def obtain_approval(
    context: RunContext,
    stage: Stage,
    digest: str,
    renders: dict[str, Rendered],
    provenance: Provenance | None = None,
    *,
    break_glass: str | None = None,
    request_signature: str | None = None,
) -> str:
    """An approval bound to this digest and these manifests: recorded, or asked for now.
    A break glass (its reason) is always asked for now, the reason at the top of the form: an
    approval given before, when the freeze was not at stake, does not count for it.
    `request_signature` says who asked for the promotion, for stages that forbid the promoter's
    own signature. Returns the approver(s); raises PromotionRefused on a rejection, a timeout,
    or a promoter a signed stage cannot establish."""
    logger = get_run_logger()
    rule = stage.approval.signatures
    promoter = await _promoter(context, stage, digest, rule, request_signature)
    standing = await standing_approval(context, stage, digest, renders, promoter)
    if standing.approver is not None and not break_glass:
        logger.info("%s: %s", stage.name, standing.verdict.explain())
        return standing.approver
    if standing.recorded is not None:
        logger.warning(
            "%s: earlier approval does not count: %s", stage.name, standing.verdict.explain()
        )
    if provenance is None:
        provenance = await bundles.read_provenance(context.store, digest)
    form = await _form(context, stage, digest, renders, provenance)
    if break_glass:
        form = (
            f"**BREAK GLASS:** {break_glass}. Approving lets this digest pass the freeze "
            f"windows of {stage.name}; git records it as a break glass.\n\n{form}"
        )
    if rule is None:
        answer = await _ask(context, stage, digest, standing.bound_to, form, stage.approval.timeout)
        return await _record_answer(context, stage, digest, answer, standing.bound_to)
    return await _collect_signatures(context, stage, digest, standing.bound_to, form, promoter)


async def _promoter(
    context: RunContext,
    stage: Stage,
    digest: str,
    rule: SignatureRule | None,
    request_signature: str | None,
) -> sshsig.Signer | None:
    """Who asked for this promotion, by their verified signature of the request; None where
    the stage does not need to know. Refuses a request signature that does not verify, and a
    stage that forbids the promoter's approval when nobody signed the request."""
    if rule is None or (request_signature is None and not rule.forbid_promoter):
        return None
    app = context.app.name
    if request_signature is None:
        raise PromotionRefused(
            f"{app}: {stage.name} forbids approval by the promoter, and this promotion names "
            "no promoter",
            hint=f"promote with `conveyor promote {app} {stage.name} --digest {digest} "
            "--sign-with KEY`, signed by your key from the stage's allowed signers",
        )
    statement = signatures.request_statement(app, stage.name, digest)
    checked = await asyncio.to_thread(
        sshsig.verify, statement, request_signature, rule.allowed_signers
    )
    if isinstance(checked, sshsig.Refused):
        raise PromotionRefused(
            f"{app}: the signature of the request to promote {digest[:19]} into {stage.name} "
            f"does not count: {checked.reason}",
            hint=f"sign the request with a key listed in {rule.allowed_signers}",
        )
    get_run_logger().info("%s: promotion requested by %s", stage.name, checked.principal)
    return checked


async def _verify(
    statement: bytes, given: list[str], rule: SignatureRule
) -> list[sshsig.Signer | sshsig.Refused]:
    """Each of `given` verified against the stage's allowed signers, in order."""
    return list(
        await asyncio.gather(
            *(
                asyncio.to_thread(sshsig.verify, statement, one, rule.allowed_signers)
                for one in given
            )
        )
    )


async def _tally(
    statement: bytes,
    given: list[str],
    rule: SignatureRule,
    promoter: sshsig.Signer | None,
) -> signatures.Tally:
    checked = await _verify(statement, given, rule)
    return signatures.tally(checked, promoter=promoter, forbid_promoter=rule.forbid_promoter)


async def _collect_signatures(
    context: RunContext,
    stage: Stage,
    digest: str,
    bound_to: str,
    form: str,
    promoter: sshsig.Signer | None,
) -> str:
    """Pause until the stage's number of distinct signers have signed its statement (or anyone
    rejects, or the approval's time is up); record the approval with its signatures."""
    rule = stage.approval.signatures
    assert rule is not None
    app = context.app.name
    statement = signatures.approval_statement(app, stage.name, digest, bound_to)
    deadline = time.monotonic() + stage.approval.timeout
    given: list[str] = []
    checked: list[sshsig.Signer | sshsig.Refused] = []  # given's verifications, made once each
    tally = signatures.Tally((), ())
    unsigned: list[str] = []
    while True:
        status = _signature_status(app, stage.name, digest, bound_to, rule, tally, unsigned)
        remaining = max(1.0, deadline - time.monotonic())
        answer = await _ask(context, stage, digest, bound_to, f"{status}\n\n{form}", remaining)
        if not answer.approve:
            return await _record_answer(context, stage, digest, answer, bound_to)
        if not answer.signatures:
            unsigned.append(f"{answer.approver}'s answer carried no signature")
        if len(answer.signatures) > MAX_SIGNATURES_PER_ANSWER:
            unsigned.append(
                f"{answer.approver}'s answer carried {len(answer.signatures)} signatures; "
                f"only the first {MAX_SIGNATURES_PER_ANSWER} were checked"
            )
        new = answer.signatures[:MAX_SIGNATURES_PER_ANSWER]
        given += new
        checked += await _verify(statement, new, rule)
        tally = signatures.tally(checked, promoter=promoter, forbid_promoter=rule.forbid_promoter)
        if tally.enough(rule.required):
            break
        get_run_logger().warning(
            "%s: %d of %d signer(s) so far%s; waiting for more",
            stage.name,
            len(tally.counted),
            rule.required,
            f" ({'; '.join(tally.refused)})" if tally.refused else "",
        )
    records = tuple(
        state.ApprovalSignature(signer.principal, signer.fingerprint, given[position])
        for signer, position in zip(tally.counted, tally.positions, strict=True)
    )
    signed = ApprovalInput(approve=True, approver=tally.names(), reason=answer.reason)
    return await _record_answer(context, stage, digest, signed, bound_to, records)


def _signature_status(
    app: str,
    stage: str,
    digest: str,
    bound_to: str,
    rule: SignatureRule,
    tally: signatures.Tally,
    unsigned: list[str],
) -> str:
    """The top of a signed stage's form: how to sign, who has, and what did not count."""
    lines = [
        f"**Signed approval:** {rule.required} distinct signer(s) from "
        f"`{rule.allowed_signers.name}`"
        + (", not the promoter" if rule.forbid_promoter else "")
        + f". Signed so far: {tally.names() or 'nobody'}.",
        "",
        f"Sign with `conveyor approve {app} {stage} --digest {digest} --sign-with KEY`.",
        "",
        signatures.rendered_hash_line(bound_to),
    ]
    if tally.refused or unsigned:
        lines += ["", "Did not count: " + "; ".join((*tally.refused, *unsigned))]
    return "\n".join(lines)


async def _ask(
    context: RunContext,
    stage: Stage,
    digest: str,
    bound_to: str,
    description: str,
    timeout: float,
) -> ApprovalInput:
    """Pause the run until a person answers the form, or `timeout` seconds (which answers as a
    rejection)."""
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
            timeout=int(timeout),
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
    context: RunContext,
    stage: Stage,
    digest: str,
    answer: ApprovalInput,
    bound_to: str,
    signed: tuple[state.ApprovalSignature, ...] = (),
) -> str:
    """Record the answer (and the signatures that made it) as the stage's evidence and
    announce it; go on only when approved."""
    decision: state.Decision = "approved" if answer.approve else "rejected"
    if not answer.approver.strip():  # the schema refuses it; a hand-made input may not
        decision = "rejected"
        answer = ApprovalInput(approve=False, approver="conveyor", reason="no approver named")
    approval = state.Approval(
        decision, answer.approver, answer.reason, bound_to, datetime.now(UTC), signed
    )
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
