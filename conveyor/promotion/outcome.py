"""What deploying a digest to one target came to, and the records it becomes.

Why a module of its own: a stage deploys to several targets, decides once all of them are done,
then records every target in one commit and reports them in one artifact. The outcome of each
target is the value that travels from the deployment to that record and that report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from conveyor.bundles.render import Rendered
from conveyor.cluster import gates
from conveyor.records import state


@dataclass
class TargetOutcome:
    """One target's results (readiness, gates, soak, a rollback), what it ran before, and the
    desired state to record once the stage decides."""

    target: str
    rendered: Rendered
    results: list[gates.GateResult] = field(default_factory=list)
    previous: state.DesiredState | None = None
    desired: state.DesiredState | None = None
    rolled_back_to: str | None = None
    applied: bool = False
    """The apply began: undoing the stage must put this target back."""

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)


def desired_state(
    rendered: Rendered,
    *,
    stage: str,
    promoted_by: str,
    flow_run_id: str | None,
    approved_by: str | None,
    at: datetime,
    config: str | None = None,
) -> state.DesiredState:
    """The desired state a target gets once `rendered` passed there: the digest and the
    parameters it was rendered with, enough to reproduce its manifests, and the digest of the
    configuration that decided it."""
    return state.DesiredState(
        app=rendered.app,
        target=rendered.target,
        stage=stage,
        digest=rendered.digest,
        parameters=rendered.parameters,
        parameters_hash=rendered.parameters_hash,
        rendered_hash=rendered.rendered_hash,
        promoted_by=promoted_by,
        flow_run_id=flow_run_id,
        approved_by=approved_by,
        updated_at=at,
        config=config,
    )


def stage_evidence(
    app: str,
    digest: str,
    stage: str,
    verdict: state.StageVerdict,
    outcomes: Sequence[TargetOutcome],
    finished: datetime,
) -> state.Evidence:
    """What the stage proved about the digest: every target's results, and the verdict (an
    approval is recorded when it is given, and merged in by the state repository)."""
    return state.Evidence(
        app,
        digest,
        stage,
        verdict,
        {
            outcome.target: tuple(
                state.GateRecord(
                    r.name, "passed" if r.passed else "failed", r.reason, r.duration, finished
                )
                for r in outcome.results
            )
            for outcome in outcomes
        },
        None,
    )
