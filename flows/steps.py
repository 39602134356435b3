"""The steps every flow shares: deploy a digest to a target, promote it through a stage.

They are plain async functions composed of tasks, not subflows: a Prefect subflow costs about a
second and a half of bookkeeping, a task about ten milliseconds, and a release runs dozens of
steps. The flows in this package are thin entry points over these steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import get_run_logger, pause_flow_run
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.exceptions import FlowPauseTimeout
from prefect.input import RunInput
from prefect.states import Running

from conveyor.cluster import gates
from conveyor.config.model import App, Config, DeploymentGate, Gate, Stage, Target
from conveyor.errors import ConveyorError
from conveyor.promotion import deploy
from conveyor.records import policy, state
from tasks import bundles, cluster, records, reports
from tasks.locks import hold_budget, hold_targets, tag_current_run

READINESS_TIMEOUT = 300.0
LOCK_WAIT = 600.0
APPROVAL_POLL_SECONDS = 2


class PromotionRefused(ConveyorError):
    """Policy refused a digest at a stage (skipped stage, freeze window, rejected approval)."""

    exit_code = 2


class StageFailed(ConveyorError):
    """A gate failed on a target, or readiness slipped during the soak."""


class ApprovalInput(RunInput):
    """The form a person fills in, in the Prefect UI or through `conveyor approve|reject`."""

    approve: bool
    approver: str
    reason: str = ""


@dataclass
class TargetOutcome:
    target: str
    rendered: deploy.Rendered
    results: list[gates.GateResult] = field(default_factory=list)
    previous: state.DesiredState | None = None
    desired: state.DesiredState | None = None  # what to record once the stage decides
    rolled_back_to: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)


def now() -> datetime:
    return datetime.now(UTC)


def run_label() -> tuple[str, str | None]:
    """(who is acting, flow run id) for records: "flow-run <name>"."""
    run = get_run_context().flow_run  # type: ignore[union-attr]
    if run is None:
        return "conveyor", None
    return f"flow-run {run.name}", str(run.id)


def _evidence_gates(results: Sequence[gates.GateResult]) -> tuple[state.GateResult, ...]:
    finished = now()
    return tuple(
        state.GateResult(r.name, "passed" if r.passed else "failed", r.reason, r.duration, finished)
        for r in results
    )


async def deploy_to_target(
    config: Config,
    app: App,
    stage: Stage,
    target: Target,
    rendered: deploy.Rendered,
    *,
    approved_by: str | None = None,
) -> TargetOutcome:
    """Apply, wait, gate; on failure roll back to the previous digest. Nothing is recorded
    here: the caller records every target's outcome in one commit (record_outcomes)."""
    logger = get_run_logger()
    digest = rendered.digest
    outcome = TargetOutcome(target.name, rendered)
    outcome.previous = await records.read_desired_state(config, app.name, target.name)
    try:
        async with hold_budget(stage.budget):
            await cluster.apply_bundle(rendered, target)
            outcome.results.append(
                await cluster.wait_for_readiness(rendered, target, READINESS_TIMEOUT)
            )
            if outcome.passed:
                for gate in stage.gates:
                    outcome.results.append(await _run_gate(rendered, target, stage, gate))
    except ConveyorError as error:
        outcome.results.append(gates.GateResult("apply", False, error.message, 0.0))

    if outcome.passed:
        promoted_by, run_id = run_label()
        outcome.desired = state.DesiredState(
            app=app.name,
            target=target.name,
            stage=stage.name,
            digest=digest,
            parameters=rendered.parameters,
            parameters_hash=rendered.parameters_hash,
            rendered_hash=rendered.rendered_hash,
            promoted_by=promoted_by,
            flow_run_id=run_id,
            approved_by=approved_by,
            updated_at=now(),
        )
        logger.info("%s: %s is live and passed its gates", target.name, digest[:19])
        return outcome

    logger.error("%s: %s failed:\n%s", target.name, digest[:19], deploy.summary(outcome.results))
    if outcome.previous is not None:
        outcome.results.append(await roll_back(config, target, outcome.previous))
        outcome.rolled_back_to = outcome.previous.digest
    reports.announce(
        "promotion.failed",
        app=app.name,
        target=target.name,
        stage=stage.name,
        payload={"digest": digest, "rolledBackTo": outcome.rolled_back_to},
    )
    return outcome


async def record_outcomes(
    config: Config,
    app: App,
    stage: Stage,
    digest: str,
    outcomes: Sequence[TargetOutcome],
    verdict: state.StageVerdict,
) -> None:
    """ONE commit for what the stage did: its evidence (every target's gate results, the
    verdict) and the desired state of each target that now runs the digest. Git never holds
    desired state without its evidence, a run killed before this point leaves no record (its
    re-run redoes the stage), and `git revert` of the commit undoes the promotion cleanly."""
    await records.record_state(
        config,
        desired=[o.desired for o in outcomes if o.desired is not None],
        evidence=state.Evidence(
            app.name,
            digest,
            stage.name,
            verdict,
            {o.target: _evidence_gates(o.results) for o in outcomes},
            None,
        ),
        reason=f"{stage.name} gates passed",
    )


async def _run_gate(
    rendered: deploy.Rendered, target: Target, stage: Stage, gate: Gate
) -> gates.GateResult:
    if isinstance(gate, DeploymentGate):
        from flows.gate_deployment import run_deployment_gate

        return await run_deployment_gate(gate, rendered, stage.name)
    return await cluster.run_gate(rendered, target, stage.name, gate)


async def roll_back(
    config: Config, target: Target, previous: state.DesiredState
) -> gates.GateResult:
    """Put the previous desired digest back on the target and wait until it is ready."""
    started = now()
    rendered = await bundles.render_bundle(
        config, previous.app, target, previous.digest, previous.parameters
    )
    await cluster.apply_bundle(rendered, target)
    ready = await cluster.wait_for_readiness(rendered, target, READINESS_TIMEOUT)
    seconds = (now() - started).total_seconds()
    verdict = "healthy" if ready.passed else f"NOT healthy: {ready.reason}"
    return gates.GateResult(
        "rollback", ready.passed, f"rolled back to {previous.digest[:19]}, {verdict}", seconds
    )


async def obtain_approval(
    config: Config,
    app: App,
    stage: Stage,
    digest: str,
    renders: dict[str, deploy.Rendered],
) -> str:
    """An approval bound to this digest and these manifests: recorded, or asked for now."""
    logger = get_run_logger()
    bound_to = policy.stage_rendered_hash({t: r.rendered_hash for t, r in renders.items()})
    evidence = await records.read_evidence(config, app.name, digest, stage.name)
    held = policy.approval_holds(evidence, digest=digest, rendered_hash=bound_to)
    if held.allowed and evidence is not None and evidence.approval is not None:
        logger.info("%s: %s", stage.name, held.explain())
        return evidence.approval.approver
    if evidence is not None and evidence.approval is not None:
        logger.warning("%s: earlier approval does not count: %s", stage.name, held.explain())
    description = await approval_form(config, app, stage, digest, renders)
    await tag_current_run([f"conveyor-awaiting:{app.name}/{stage.name}"])
    reports.announce(
        "approval.requested",
        app=app.name,
        stage=stage.name,
        payload={"digest": digest, "renderedHash": bound_to},
    )
    try:
        answer = await pause_flow_run(  # type: ignore[misc]
            wait_for_input=ApprovalInput.with_initial_data(
                description=description, approve=False, approver=""
            ),
            timeout=int(stage.approval.timeout),
            poll_interval=APPROVAL_POLL_SECONDS,
        )
    except FlowPauseTimeout:
        await _end_expired_pause()
        answer = ApprovalInput(
            approve=False,
            approver="conveyor",
            reason=f"no answer within {stage.approval.timeout:.0f}s",
        )
    finally:
        await tag_current_run([], remove_prefix=f"conveyor-awaiting:{app.name}/")
    decision: state.Decision = "approved" if answer.approve else "rejected"
    approval = state.Approval(
        decision, answer.approver or "unknown", answer.reason, bound_to, now()
    )
    await records.record_state(
        config,
        evidence=state.Evidence(
            app.name, digest, stage.name, "pending" if answer.approve else "failed", {}, approval
        ),
    )
    reports.announce(
        f"approval.{decision}",
        app=app.name,
        stage=stage.name,
        payload={"digest": digest, "approver": approval.approver, "reason": approval.reason},
    )
    if not answer.approve:
        raise PromotionRefused(
            f"{app.name}: {stage.name} of {digest[:19]} {decision} by {approval.approver}"
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


async def approval_form(
    config: Config,
    app: App,
    stage: Stage,
    digest: str,
    renders: dict[str, deploy.Rendered],
) -> str:
    """What the approver sees: the digest, parameter differences, and what will change live."""
    lines = [f"## Promote `{app.name}` to **{stage.name}**", "", f"Digest: `{digest}`", ""]
    previous = app.pipeline.previous(stage.name)
    baseline = previous.targets[0] if previous else None
    for target_name, rendered in renders.items():
        lines.append(f"### {target_name} (namespace `{rendered.namespace}`)")
        if baseline is not None:
            base = dict(baseline.parameters)
            changed = sorted(
                k
                for k in {*base, *rendered.parameters}
                if base.get(k) != rendered.parameters.get(k)
            )
            lines.append(
                f"Parameters that differ from {baseline.name}: "
                + (
                    ", ".join(
                        f"`{k}`: {base.get(k)!r} → {rendered.parameters.get(k)!r}" for k in changed
                    )
                    or "none"
                )
            )
        target = app.pipeline.target(target_name)
        drifts = await cluster.detect_drift(rendered, target)
        lines.append("Changes on the cluster (fields Conveyor sets):")
        lines += [
            f"- {d.describe()}".replace("deleted out of band", "will be created") for d in drifts
        ] or ["- none: the target already runs these manifests"]
        lines.append("")
    return "\n".join(lines)


async def promote_through_stage(
    config: Config, app: App, digest: str, stage_name: str
) -> list[TargetOutcome]:
    """Policy, lock, approval, the stage's targets within its budget, soak, evidence, report."""
    logger = get_run_logger()
    pipeline = app.pipeline
    stage = pipeline.stage(stage_name)
    previous = pipeline.previous(stage_name)
    evidence = await records.read_evidence_of(
        config, app.name, digest, [previous.name, stage_name] if previous else [stage_name]
    )
    previous_evidence = evidence[previous.name] if previous else None
    decision = policy.may_enter(
        pipeline, stage_name, digest, previous_evidence=previous_evidence, now=now()
    )
    if not decision.allowed:
        reports.announce(
            "promotion.refused",
            app=app.name,
            stage=stage_name,
            payload={"digest": digest, "reasons": list(decision.reasons)},
        )
        raise PromotionRefused(
            f"{app.name}: {digest[:19]} may not enter {stage_name}: " + decision.explain()
        )

    # Rendered once per target (each render pulls and verifies the bundle), for every step below.
    renders = await render_stage(config, app, stage, digest)
    if await already_there(config, app, stage, digest, renders, evidence[stage_name]):
        logger.info(
            "%s: every target already runs %s with these parameters, no drift, and the "
            "stage passed: nothing to do",
            stage_name,
            digest[:19],
        )
        return []
    targets = [t.name for t in stage.targets]
    async with hold_targets(app.name, targets, wait_seconds=LOCK_WAIT):
        approved_by = None
        if stage.approval.required:
            approved_by = await obtain_approval(config, app, stage, digest, renders)
        reports.announce(
            "promotion.started",
            app=app.name,
            stage=stage_name,
            payload={"digest": digest, "targets": targets},
        )
        outcomes: list[TargetOutcome] = []
        for start in range(0, len(stage.targets), stage.parallelism):
            batch = stage.targets[start : start + stage.parallelism]
            outcomes += await asyncio.gather(
                *(
                    deploy_to_target(
                        config, app, stage, t, renders[t.name], approved_by=approved_by
                    )
                    for t in batch
                )
            )
            if not all(o.passed for o in outcomes):
                break
        if stage.soak > 0 and all(o.passed for o in outcomes):
            logger.info("%s: soaking for %.0fs", stage_name, stage.soak)
            soaks = await asyncio.gather(
                *(
                    cluster.soak_target(o.rendered, pipeline.target(o.target), stage.soak)
                    for o in outcomes
                )
            )
            for outcome, soak in zip(outcomes, soaks, strict=True):
                outcome.results.append(soak)
            if not all(s.passed for s in soaks):
                await _undo_stage(config, app, outcomes)
        passed = all(o.passed for o in outcomes) and len(outcomes) == len(stage.targets)
        verdict: state.StageVerdict = "passed" if passed else "failed"
        await asyncio.gather(
            record_outcomes(config, app, stage, digest, outcomes, verdict),
            publish_promotion_report(app, stage, digest, outcomes, approved_by, passed),
        )
    reports.announce(
        "promotion.succeeded" if passed else "promotion.failed",
        app=app.name,
        stage=stage_name,
        payload={"digest": digest},
    )
    if not passed:
        raise StageFailed(
            f"{app.name}: {digest[:19]} failed in {stage_name}:\n"
            + "\n".join(f"{o.target}:\n{deploy.summary(o.results)}" for o in outcomes)
        )
    return outcomes


async def render_stage(
    config: Config, app: App, stage: Stage, digest: str
) -> dict[str, deploy.Rendered]:
    """The digest rendered for each of the stage's targets, by target name."""
    rendered = await asyncio.gather(
        *(bundles.render_bundle(config, app.name, target, digest) for target in stage.targets)
    )
    return {target.name: r for target, r in zip(stage.targets, rendered, strict=True)}


async def already_there(
    config: Config,
    app: App,
    stage: Stage,
    digest: str,
    renders: dict[str, deploy.Rendered],
    evidence: state.Evidence | None,
) -> bool:
    """True when the stage passed this digest and every target still runs exactly it."""
    if evidence is None or evidence.verdict != "passed":
        return False
    for target in stage.targets:
        desired = await records.read_desired_state(config, app.name, target.name)
        if desired is None or desired.digest != digest:
            return False
        rendered = renders[target.name]
        if rendered.rendered_hash != desired.rendered_hash:
            return False
        if await cluster.detect_drift(rendered, target):
            return False
    return True


async def _undo_stage(config: Config, app: App, outcomes: Sequence[TargetOutcome]) -> None:
    """The soak failed: every target of the stage goes back to its previous desired digest
    (which git still holds: the stage records nothing before its verdict)."""
    for outcome in outcomes:
        if outcome.previous is None:
            continue
        target = app.pipeline.target(outcome.target)
        outcome.results.append(await roll_back(config, target, outcome.previous))
        outcome.rolled_back_to = outcome.previous.digest
        outcome.desired = None


async def publish_promotion_report(
    app: App,
    stage: Stage,
    digest: str,
    outcomes: Sequence[TargetOutcome],
    approved_by: str | None,
    passed: bool,
) -> None:
    verdict = "passed" if passed else "FAILED"
    lines = [
        f"# {app.name} → {stage.name}: {verdict}",
        "",
        f"Digest: `{digest}`",
        f"Approved by: {approved_by or 'not required'}",
        "",
        "| target | gate | verdict | seconds | reason |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        for result in outcome.results:
            reason = result.reason.replace("|", "\\|").replace("\n", " ")[:200]
            lines.append(
                f"| {outcome.target} | {result.name} | "
                f"{'passed' if result.passed else 'FAILED'} | {result.duration:.1f} | "
                f"{reason} |"
            )
    lines += ["", "| target | namespace | parameters hash | rendered hash |", "|---|---|---|---|"]
    lines += [
        f"| {o.target} | {o.rendered.namespace} | `{o.rendered.parameters_hash[:19]}` | "
        f"`{o.rendered.rendered_hash[:19]}` |"
        for o in outcomes
    ]
    await reports.publish_report(
        f"promotion-{app.name}-{stage.name}",
        "\n".join(lines),
        f"{app.name} {digest[:19]} in {stage.name}: {verdict}",
    )
