"""The steps every flow shares: deploy a digest to a target, promote it through a stage.

They are plain async functions composed of tasks, not subflows: a Prefect subflow costs about a
second and a half of bookkeeping, a task about ten milliseconds, and a release runs dozens of
steps. The flows in this package are thin entry points over these steps; the approval pause is
in flows/approval.py, and what the steps decide and report is the core's (conveyor.promotion).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.context import get_run_context

from conveyor.bundles import images
from conveyor.bundles.render import Rendered
from conveyor.cluster import gates
from conveyor.config.binding import config_digest
from conveyor.config.model import Stage, Target
from conveyor.errors import ConveyorError, PromotionRefused, StageFailed, StateError
from conveyor.promotion import deploy
from conveyor.promotion.context import RunContext
from conveyor.promotion.outcome import TargetOutcome, desired_state, stage_evidence
from conveyor.promotion.reports import Provenance, promotion_report
from conveyor.records import policy, state
from flows.approval import obtain_approval
from tasks import bundles, cluster, records, reports
from tasks.gates import run_gate
from tasks.locks import hold_budget, hold_targets

READINESS_TIMEOUT = 300.0
LOCK_WAIT = 600.0


def now() -> datetime:
    return datetime.now(UTC)


def run_label() -> tuple[str, str | None]:
    """(who is acting, flow run id) for records: "flow-run <name>"."""
    run = get_run_context().flow_run  # type: ignore[union-attr]
    if run is None:
        return "conveyor", None
    return f"flow-run {run.name}", str(run.id)


async def deploy_to_target(
    context: RunContext,
    stage: Stage,
    target: Target,
    rendered: Rendered,
    *,
    approved_by: str | None = None,
    stop: asyncio.Event | None = None,
) -> TargetOutcome:
    """Apply, wait, gate. A failure is not undone here: the caller undoes every target of the
    stage together (undo_targets) and records every outcome in one commit (record_outcomes).
    `stop`, once set (a sibling target failed), skips the steps not yet begun."""
    logger = get_run_logger()
    outcome = TargetOutcome(target.name, rendered)
    outcome.previous = await records.read_desired_state(
        context.state, context.app.name, target.name
    )
    await _apply_and_gate(context, stage, target, outcome, stop or asyncio.Event())
    if outcome.passed:
        promoted_by, run_id = run_label()
        outcome.desired = desired_state(
            rendered,
            stage=stage.name,
            promoted_by=promoted_by,
            flow_run_id=run_id,
            approved_by=approved_by,
            at=now(),
            config=config_digest(context.config),
        )
        logger.info("%s: %s is live and passed its gates", target.name, rendered.digest[:19])
    else:
        logger.error(
            "%s: %s failed:\n%s",
            target.name,
            rendered.digest[:19],
            deploy.summary(outcome.results),
        )
    return outcome


async def _apply_and_gate(
    context: RunContext, stage: Stage, target: Target, outcome: TargetOutcome, stop: asyncio.Event
) -> None:
    """Within the stage's budget: apply, wait for readiness, then run the stage's gates; every
    result, or whatever stopped them (an error of any kind, or `stop`), goes into the outcome."""
    kube = context.kube(target)
    rendered = outcome.rendered
    step = "apply"
    try:
        async with hold_budget(stage.budget):
            _check_stop(stop)
            outcome.applied = True  # from here on, an undo must put the target back
            await cluster.apply_bundle(kube, rendered, target)
            step = "readiness"
            _check_stop(stop)
            outcome.results.append(
                await cluster.wait_for_readiness(kube, rendered, target, READINESS_TIMEOUT)
            )
            for gate in stage.gates if outcome.passed else ():
                step = gate.name
                _check_stop(stop)
                outcome.results.append(await run_gate(kube, rendered, target, stage.name, gate))
    except _Stopped:
        outcome.results.append(
            gates.GateResult(step, False, "not run: another target of the stage failed", 0.0)
        )
    except ConveyorError as error:
        outcome.results.append(gates.GateResult(step, False, error.message, 0.0))
    except Exception as error:
        outcome.results.append(
            gates.GateResult(step, False, f"unexpected {type(error).__name__}: {error}", 0.0)
        )


class _Stopped(Exception):
    """A sibling target failed: the steps of this one not yet begun are skipped."""


def _check_stop(stop: asyncio.Event) -> None:
    if stop.is_set():
        raise _Stopped


async def deploy_targets(
    context: RunContext,
    stage: Stage,
    renders: Mapping[str, Rendered],
    approved_by: str | None,
    *,
    break_glass: str | None = None,
) -> list[TargetOutcome]:
    """The given targets of the stage, `parallelism` at a time. The first failure stops the
    siblings' remaining steps and every target this run changed goes back together (undo_targets),
    so a failed stage leaves nothing of its digest running; then the soak, undone the same way.

    Right before each batch, the stopped line and the freeze windows are looked at again (the
    run may have waited an hour for its approval): before the first batch that is a refusal
    (PromotionRefused, nothing changed), later it fails the stage like any other failure."""
    targets = [t for t in stage.targets if t.name in renders]
    outcomes: list[TargetOutcome] = []
    stop = asyncio.Event()

    async def watched(target: Target) -> TargetOutcome:
        outcome = await deploy_to_target(
            context, stage, target, renders[target.name], approved_by=approved_by, stop=stop
        )
        if not outcome.passed:
            stop.set()
        return outcome

    for start in range(0, len(targets), stage.parallelism):
        batch = targets[start : start + stage.parallelism]
        halt = await records.read_halt(context.state)
        refusal = policy.still_admitted(stage, halt=halt, now=now(), break_glass=bool(break_glass))
        if refusal is not None:
            if not outcomes:
                _announce_refusal(context, stage, renders, refusal)
                raise PromotionRefused(
                    f"{context.app.name}: not applied to {stage.name}: {refusal}"
                )
            for target in batch:
                outcome = TargetOutcome(target.name, renders[target.name])
                outcome.results.append(gates.GateResult("admission", False, refusal, 0.0))
                outcomes.append(outcome)
            await undo_targets(context, stage, outcomes)
            return outcomes
        outcomes += await asyncio.gather(*(watched(t) for t in batch))
        if stop.is_set():
            await undo_targets(context, stage, outcomes)
            return outcomes
    if stage.soak > 0:
        get_run_logger().info("%s: soaking for %.0fs", stage.name, stage.soak)
        soaks = await asyncio.gather(*(_soak(context, o, stage.soak) for o in outcomes))
        if not all(s.passed for s in soaks):
            await undo_targets(context, stage, outcomes)
    return outcomes


async def undo_targets(
    context: RunContext, stage: Stage, outcomes: Sequence[TargetOutcome]
) -> None:
    """Every target this run changed goes back to its previous desired digest, or, where it had
    none (a first deploy), loses the objects this run created; none keeps a desired state to
    record. An undo that fails is a result of its own: the others still run."""
    await asyncio.gather(*(_undo_target(context, stage, o) for o in outcomes if o.applied))


async def _undo_target(context: RunContext, stage: Stage, outcome: TargetOutcome) -> None:
    target = context.app.pipeline.target(outcome.target)
    outcome.desired = None
    try:
        if outcome.previous is not None:
            outcome.results.append(await roll_back(context, target, outcome.previous))
            outcome.rolled_back_to = outcome.previous.digest
        else:
            outcome.results.append(await _remove(context, target, outcome.rendered))
    except Exception as error:
        reason = error.message if isinstance(error, ConveyorError) else repr(error)
        outcome.results.append(gates.GateResult("rollback", False, reason, 0.0))
    reports.announce(
        "promotion.failed",
        app=context.app.name,
        target=target.name,
        stage=stage.name,
        payload={"digest": outcome.rendered.digest, "rolledBackTo": outcome.rolled_back_to},
    )


async def _remove(context: RunContext, target: Target, rendered: Rendered) -> gates.GateResult:
    """A first deploy that failed: delete what it created (not the namespace)."""
    started = now()
    removed = await cluster.remove_bundle(context.kube(target), rendered, target)
    seconds = (now() - started).total_seconds()
    return gates.GateResult(
        "rollback", True, f"first deploy removed ({len(removed)} object(s) deleted)", seconds
    )


async def record_outcomes(
    context: RunContext,
    stage: Stage,
    digest: str,
    outcomes: Sequence[TargetOutcome],
    verdict: state.StageVerdict,
    *,
    note: str | None = None,
) -> None:
    """ONE commit for what the stage did (`note`, a break glass say, goes into its message):
    its evidence (every target's gate results, the
    verdict) and the desired state of each target that now runs the digest. Git never holds
    desired state without its evidence, a run killed before this point leaves no record (its
    re-run redoes the stage), and `git revert` of the commit undoes the promotion cleanly.

    When the commit cannot be written, the targets that would have been recorded go back (the
    cluster must not run what git does not hold) and StateError says so."""
    try:
        await records.record_state(
            context.state,
            desired=[o.desired for o in outcomes if o.desired is not None],
            evidence=stage_evidence(context.app.name, digest, stage.name, verdict, outcomes, now()),
            reason=f"{stage.name} gates passed" + (f"; {note}" if note else ""),
        )
    except Exception as error:
        changed = [o for o in outcomes if o.desired is not None]
        await undo_targets(context, stage, changed)
        reason = error.message if isinstance(error, ConveyorError) else repr(error)
        raise StateError(
            f"{context.app.name}: the record of {digest[:19]} in {stage.name} could not be "
            f"written ({reason}); "
            + (
                f"{', '.join(o.target for o in changed)} rolled back"
                if changed
                else "no target needed a rollback"
            ),
            hint="fix the state repository (see the error), then promote again",
        ) from error


async def roll_back(
    context: RunContext, target: Target, previous: state.DesiredState
) -> gates.GateResult:
    """Put the previous desired digest back on the target and wait until it is ready."""
    started = now()
    kube = context.kube(target)
    rendered = await bundles.render_bundle(
        context.store, previous.app, target, previous.digest, previous.parameters
    )
    await cluster.apply_bundle(kube, rendered, target)
    ready = await cluster.wait_for_readiness(kube, rendered, target, READINESS_TIMEOUT)
    seconds = (now() - started).total_seconds()
    verdict = "healthy" if ready.passed else f"NOT healthy: {ready.reason}"
    return gates.GateResult(
        "rollback", ready.passed, f"rolled back to {previous.digest[:19]}, {verdict}", seconds
    )


def _announce_refusal(
    context: RunContext, stage: Stage, renders: Mapping[str, Rendered], reason: str
) -> None:
    digests = {r.digest for r in renders.values()}
    reports.announce(
        "promotion.refused",
        app=context.app.name,
        stage=stage.name,
        payload={"digest": ", ".join(sorted(digests)), "reasons": [reason]},
    )


async def promote_through_stage(
    context: RunContext,
    digest: str,
    stage_name: str,
    provenance: Provenance | None = None,
    *,
    break_glass: str | None = None,
    request_signature: str | None = None,
) -> list[TargetOutcome]:
    """Policy, lock, approval, the stage's targets within its budget, soak, evidence, report.
    `provenance` (a release's ref and commit) is shown to approvers; without it, the bundle's
    own source and commit annotations are. `break_glass` (a reason) lets the digest pass the
    stage's freeze windows, and only that: it needs an approval even where the stage asks for
    none, and git records it as such. `request_signature` names the promoter to a stage whose
    signed approvals may not come from them (flows/approval.py)."""
    logger = get_run_logger()
    app = context.app
    stage = app.pipeline.stage(stage_name)
    evidence = await _admit(context, stage, digest, break_glass=bool(break_glass))

    # Rendered once per target (each render pulls and verifies the bundle), for every step below.
    renders = await render_stage(context, stage, digest)
    await _refuse_other_images(context, stage, digest, renders)
    if await already_there(context, stage, digest, renders, evidence):
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
        if stage.approval.required or break_glass:
            approved_by = await obtain_approval(
                context,
                stage,
                digest,
                renders,
                provenance,
                break_glass=break_glass,
                request_signature=request_signature,
            )
        reports.announce(
            "promotion.started",
            app=app.name,
            stage=stage_name,
            payload={"digest": digest, "targets": targets},
        )
        outcomes = await deploy_targets(
            context, stage, renders, approved_by, break_glass=break_glass
        )
        passed = all(o.passed for o in outcomes) and len(outcomes) == len(stage.targets)
        try:
            await record_outcomes(
                context,
                stage,
                digest,
                outcomes,
                "passed" if passed else "failed",
                note=f"BREAK GLASS approved by {approved_by}: {break_glass}"
                if break_glass
                else None,
            )
        except StateError:
            # The report is published only once the record is in git: here, a failed one.
            await publish_promotion_report(context, stage, digest, outcomes, approved_by, False)
            raise
        await publish_promotion_report(context, stage, digest, outcomes, approved_by, passed)
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


async def _admit(
    context: RunContext, stage: Stage, digest: str, *, break_glass: bool
) -> state.Evidence | None:
    """Refuse the digest unless policy lets it enter the stage; return what the stage itself
    already proved about it (None when nothing)."""
    pipeline = context.app.pipeline
    previous = pipeline.previous(stage.name)
    evidence = await records.read_evidence_of(
        context.state,
        context.app.name,
        digest,
        [previous.name, stage.name] if previous else [stage.name],
    )
    decision = policy.may_enter(
        pipeline,
        stage.name,
        digest,
        previous_evidence=evidence[previous.name] if previous else None,
        now=now(),
        halt=await records.read_halt(context.state),
        break_glass=break_glass,
    )
    if not decision.allowed:
        reports.announce(
            "promotion.refused",
            app=context.app.name,
            stage=stage.name,
            payload={"digest": digest, "reasons": list(decision.reasons)},
        )
        raise PromotionRefused(
            f"{context.app.name}: {digest[:19]} may not enter {stage.name}: " + decision.explain()
        )
    return evidence[stage.name]


async def _refuse_other_images(
    context: RunContext, stage: Stage, digest: str, renders: Mapping[str, Rendered]
) -> None:
    """Refuse the digest when a target's parameters would run other images than the previous
    stage runs with it: the gates there passed that code, not this."""
    previous = context.app.pipeline.previous(stage.name)
    if previous is None:
        return
    before = await render_stage(context, previous, digest)
    changes = images.changed_images(
        {name: r.objects for name, r in before.items()},
        {name: r.objects for name, r in renders.items()},
    )
    if changes:
        reports.announce(
            "promotion.refused",
            app=context.app.name,
            stage=stage.name,
            payload={"digest": digest, "reasons": changes},
        )
        raise PromotionRefused(
            f"{context.app.name}: {digest[:19]} may not enter {stage.name}: a target's "
            f"parameters change which image runs:\n  " + "\n  ".join(changes),
            hint="give every stage's targets the same image parameters; a different image is "
            "a different release, built and promoted from the first stage",
        )


async def _soak(context: RunContext, outcome: TargetOutcome, seconds: float) -> gates.GateResult:
    target = context.app.pipeline.target(outcome.target)
    soak = await cluster.soak_target(context.kube(target), outcome.rendered, target, seconds)
    outcome.results.append(soak)
    return soak


async def render_stage(context: RunContext, stage: Stage, digest: str) -> dict[str, Rendered]:
    """The digest rendered for each of the stage's targets, by target name (once per run)."""
    key = (stage.name, digest)
    if key not in context.renders:
        rendered = await asyncio.gather(
            *(
                bundles.render_bundle(context.store, context.app.name, target, digest)
                for target in stage.targets
            )
        )
        context.renders[key] = dict(zip((t.name for t in stage.targets), rendered, strict=True))
    return context.renders[key]


async def already_there(
    context: RunContext,
    stage: Stage,
    digest: str,
    renders: dict[str, Rendered],
    evidence: state.Evidence | None,
) -> bool:
    """True when the stage passed this digest and every target still runs exactly it."""
    if evidence is None or evidence.verdict != "passed":
        return False
    for target in stage.targets:
        desired = await records.read_desired_state(context.state, context.app.name, target.name)
        if desired is None or desired.digest != digest:
            return False
        rendered = renders[target.name]
        if rendered.rendered_hash != desired.rendered_hash:
            return False
        if await cluster.detect_drift(context.kube(target), rendered, target):
            return False
    return True


async def publish_promotion_report(
    context: RunContext,
    stage: Stage,
    digest: str,
    outcomes: Sequence[TargetOutcome],
    approved_by: str | None,
    passed: bool,
) -> None:
    app = context.app.name
    await reports.publish_report(
        f"promotion-{app}-{stage.name}",
        promotion_report(app, stage.name, digest, outcomes, approved_by=approved_by, passed=passed),
        f"{app} {digest[:19]} in {stage.name}: {'passed' if passed else 'FAILED'}",
    )
