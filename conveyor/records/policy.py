"""Whether a digest may enter a stage: pure rules over configuration and recorded evidence.

A digest enters stage N only while the line runs (conveyor.records.halt), with passing evidence
from stage N-1 for that same digest, never while one of the stage's freeze windows is active
(unless it is a break-glass promotion, which needs an approval and says so in git), and, where
the stage requires approval, only with an approval given for this digest and for exactly the
manifests that will be applied (a changed parameter changes the rendered hash and voids the
approval).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from conveyor.config.model import Pipeline, Stage
from conveyor.kit.digests import sha256_digest
from conveyor.records.halt import Halt
from conveyor.records.state import Evidence


@dataclass(frozen=True)
class Admission:
    """Whether a digest may go on (enter a stage, count as approved), and the reasons why not
    (or, when it may, what allowed it)."""

    allowed: bool
    reasons: tuple[str, ...]

    def explain(self) -> str:
        return "; ".join(self.reasons)


def stage_rendered_hash(rendered_hashes: Mapping[str, str]) -> str:
    """One hash over every target's rendered hash: what an approval of a stage is bound to."""
    listing = "\n".join(f"{target}={value}" for target, value in sorted(rendered_hashes.items()))
    return sha256_digest(listing.encode())


def may_enter(
    pipeline: Pipeline,
    stage: str,
    digest: str,
    *,
    previous_evidence: Evidence | None,
    now: datetime,
    halt: Halt | None = None,
    break_glass: bool = False,
) -> Admission:
    """Policy before anything is applied: a stopped line, the path to production and the freeze
    windows (which a break-glass promotion, approved and recorded as such, may pass)."""
    reasons = [halt.explain()] if halt is not None else []
    current = pipeline.stage(stage)
    previous = pipeline.previous(stage)
    if previous is not None:
        if previous_evidence is None:
            reasons.append(
                f"{digest[:19]} has no evidence from stage {previous.name!r}: promote it "
                f"through {previous.name} first (stages may not be skipped)"
            )
        elif previous_evidence.digest != digest or previous_evidence.stage != previous.name:
            reasons.append(
                f"the evidence given is for {previous_evidence.digest[:19]} in "
                f"{previous_evidence.stage}, not {digest[:19]} in {previous.name}"
            )
        elif previous_evidence.verdict != "passed":
            reasons.append(
                f"{digest[:19]} did not pass stage {previous.name!r} "
                f"(verdict {previous_evidence.verdict})"
            )
    window = current.frozen(now)
    if window is not None and not break_glass:
        reasons.append(f"stage {stage!r} is frozen: {window.reason}")
    return Admission(not reasons, tuple(reasons))


def still_admitted(
    stage: Stage, *, halt: Halt | None, now: datetime, break_glass: bool
) -> str | None:
    """Asked again right before each target's apply (an approval or the target's slot may have
    kept the run waiting for an hour): why the stage may not be changed now, or None."""
    if halt is not None:
        return halt.explain()
    window = stage.frozen(now)
    if window is not None and not break_glass:
        return f"stage {stage.name!r} is frozen: {window.reason} (the window opened meanwhile)"
    return None


def approval_holds(evidence: Evidence | None, *, digest: str, rendered_hash: str) -> Admission:
    """Whether recorded evidence holds an approval still valid for these manifests."""
    if evidence is None or evidence.approval is None:
        return Admission(False, ("no approval recorded",))
    approval = evidence.approval
    if evidence.digest != digest:
        return Admission(False, (f"the approval is for {evidence.digest[:19]}",))
    if approval.decision != "approved":
        return Admission(False, (f"{approval.approver} rejected it: {approval.reason}",))
    if approval.rendered_hash != rendered_hash:
        return Admission(
            False,
            (
                f"{approval.approver}'s approval was given for other manifests "
                f"({approval.rendered_hash[:19]}, now {rendered_hash[:19]}): parameters changed, "
                "so it no longer counts",
            ),
        )
    return Admission(True, (f"approved by {approval.approver}",))
