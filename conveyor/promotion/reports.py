"""What people read about a promotion, as markdown: the approval form and the promotion report.

Why a module of its own: the text is the part of a promotion people judge it by, so it is made by
pure functions of what the promotion found (renders, drift, outcomes), testable without Prefect
or a cluster; the flows only gather those values and publish the text. Nothing secret gets in:
sensitive parameters and Secret values show as short hashes, URLs without their user-info.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from conveyor.bundles.images import running_images
from conveyor.bundles.parameters import SENSITIVE_KEY, is_withheld, shown
from conveyor.bundles.render import Rendered
from conveyor.cluster.drift import ObjectDrift
from conveyor.config.model import Target
from conveyor.kit.absent import ABSENT
from conveyor.kit.redaction import value_hash, without_userinfo
from conveyor.promotion.outcome import TargetOutcome


@dataclass(frozen=True)
class Provenance:
    """Where a digest was built from: the source repository, the ref a release named (None when
    the digest was promoted by hand) and the commit it resolved to."""

    repository: str
    ref: str | None
    commit: str

    def describe(self) -> str:
        at = f"`{self.ref}` at commit `{self.commit}`" if self.ref else f"commit `{self.commit}`"
        return f"Built from `{without_userinfo(self.repository)}`, {at}"


REASON_WIDTH = 200
"""A gate's reason is cut to this many characters in the report's table."""


def approval_form(
    app: str,
    stage: str,
    digest: str,
    renders: Mapping[str, Rendered],
    *,
    baseline: Target | None,
    changes: Mapping[str, Sequence[ObjectDrift]],
    provenance: Provenance,
) -> str:
    """What the approver sees: the digest and where it was built from, and for each target the
    parameters that differ from `baseline` (the previous stage's first target, None for the first
    stage), the images it will run against those running now, and `changes`, the drift of the
    live objects from these manifests (what the promotion will change)."""
    lines = [
        f"## Promote `{app}` to **{stage}**",
        "",
        f"Digest: `{digest}`",
        "",
        provenance.describe(),
        "",
    ]
    for target, rendered in renders.items():
        lines.append(f"### {target} (namespace `{rendered.namespace}`)")
        if baseline is not None:
            lines.append(
                f"Parameters that differ from {baseline.name}: "
                + _differences(baseline.parameters, rendered.parameters)
            )
        lines.append("Images (pinned by the build; a tag moved since does not change them):")
        lines += _image_lines(rendered, changes[target])
        lines.append("Changes on the cluster (fields Conveyor sets):")
        lines += [
            f"- {d.describe()}".replace("deleted out of band", "will be created")
            for d in changes[target]
        ] or ["- none: the target already runs these manifests"]
        lines.append("")
    return "\n".join(lines)


def _image_lines(rendered: Rendered, drifts: Sequence[ObjectDrift]) -> list[str]:
    """Each image the target will run, where, and what runs there now (from the drift of the
    live objects): `old` → `new`, or that it runs already, or that it is new."""
    by_object = {(drift.ref.kind, drift.ref.name): drift for drift in drifts}
    lines = []
    for obj in rendered.objects:
        metadata = obj.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        drift = by_object.get((str(obj.get("kind")), str(name)))
        for place, image in running_images([obj]).items():
            _, _, path = place.partition(": ")
            lines.append(f"- {place}: {_image_change(image, drift, path)}")
    return lines or ["- none"]


def _image_change(image: str, drift: ObjectDrift | None, path: str) -> str:
    if drift is not None and drift.missing:
        return f"`{image}` (new)"
    for changed in drift.fields if drift else ():
        if changed.path == path:
            if changed.live is ABSENT:
                return f"`{image}` (new)"
            return f"`{changed.live}` → `{image}`"
        if path.startswith((f"{changed.path}.", f"{changed.path}[")):
            return f"`{image}` (its containers change: see the changes below)"
    return f"`{image}` (runs now)"


def _images(rendered: Rendered) -> str:
    running = sorted(set(running_images(rendered.objects).values()))
    return ", ".join(f"`{image}`" for image in running) or "none"


def _differences(base: Mapping[str, object], values: Mapping[str, object]) -> str:
    """Each parameter that differs, `name`: before → after; a sensitive one (withheld on either
    side) is compared by its hash and shown by its short hash."""
    hidden = {k for k in {*base, *values} if is_withheld(base.get(k)) or is_withheld(values.get(k))}

    def side(given: Mapping[str, object], key: str) -> object:
        value = given.get(key)
        if key not in hidden or value is None or is_withheld(value):
            return value
        return {SENSITIVE_KEY: value_hash(value)}

    changed = sorted(k for k in {*base, *values} if side(base, k) != side(values, k))
    return (
        ", ".join(f"`{k}`: {shown(side(base, k))!r} → {shown(side(values, k))!r}" for k in changed)
        or "none"
    )


def promotion_report(
    app: str,
    stage: str,
    digest: str,
    outcomes: Sequence[TargetOutcome],
    *,
    approved_by: str | None,
    passed: bool,
) -> str:
    """The stage's verdict, its approver, every target's results, and what each target was
    rendered with (parameters and rendered hashes, and the images it runs)."""
    lines = [
        f"# {app} → {stage}: {'passed' if passed else 'FAILED'}",
        "",
        f"Digest: `{digest}`",
        f"Approved by: {approved_by or 'not required'}",
        "",
        "| target | gate | verdict | seconds | reason |",
        "|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        for result in outcome.results:
            reason = result.reason.replace("|", "\\|").replace("\n", " ")[:REASON_WIDTH]
            lines.append(
                f"| {outcome.target} | {result.name} | "
                f"{'passed' if result.passed else 'FAILED'} | {result.duration:.1f} | "
                f"{reason} |"
            )
    lines += [
        "",
        "| target | namespace | parameters hash | rendered hash | images |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {o.target} | {o.rendered.namespace} | `{o.rendered.parameters_hash[:19]}` | "
        f"`{o.rendered.rendered_hash[:19]}` | {_images(o.rendered)} |"
        for o in outcomes
    ]
    return "\n".join(lines)
