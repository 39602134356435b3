"""What people read about a promotion: the approval form and the promotion report, as markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conveyor.bundles.render import Rendered
from conveyor.cluster.drift import FieldDrift, ObjectDrift
from conveyor.cluster.gates import GateResult
from conveyor.cluster.ordering import ObjectRef
from conveyor.config.model import Cluster, Target
from conveyor.promotion.outcome import TargetOutcome
from conveyor.promotion.reports import Provenance, approval_form, promotion_report

DIGEST = "sha256:" + "ab" * 32
DEPLOYMENT = ObjectRef("apps/v1", "Deployment", "web-prod", "web")
SERVICE = ObjectRef("v1", "Service", "web-prod", "web")


IMAGE = "registry.example/web:1.0.0@sha256:" + "e" * 64
OLD_IMAGE = "registry.example/web:0.9.0@sha256:" + "d" * 64
IMAGES_HEAD = "Images (pinned by the build; a tag moved since does not change them):"
PLACE = "Deployment web: spec.template.spec.containers[0].image"
RUNS_NOW = f"- {PLACE}: `{IMAGE}` (runs now)"
POD = {"containers": [{"name": "web", "image": IMAGE}]}


def rendered(target: str, **parameters: Any) -> Rendered:
    return Rendered(
        app="web",
        target=target,
        namespace=f"web-{target}",
        digest=DIGEST,
        parameters=parameters,
        parameters_hash="sha256:" + "1" * 64,
        rendered_hash="sha256:" + "2" * 64,
        objects=[
            {"kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {"spec": POD}}}
        ],
        tests=[],
    )


def staging(**parameters: Any) -> Target:
    return Target(
        name="staging",
        stage="staging",
        cluster=Cluster("local", None, None),
        namespace="web-staging",
        parameters_file=Path("config/environments/staging.yaml"),
        parameters=parameters,
        force_conflicts=False,
        self_heal=False,
    )


FORM_HEAD = [
    "## Promote `web` to **prod**",
    "",
    f"Digest: `{DIGEST}`",
    "",
    "Built from `https://git.example/web.git`, `release/2.4` at commit `" + "c" * 40 + "`",
    "",
]
PROVENANCE = Provenance("https://git.example/web.git", "release/2.4", "c" * 40)


@pytest.mark.parametrize(
    ("renders", "baseline", "changes", "body"),
    [
        pytest.param(
            {"prod": rendered("prod", replicas=2)},
            None,
            {"prod": []},
            [
                "### prod (namespace `web-prod`)",
                IMAGES_HEAD,
                RUNS_NOW,
                "Changes on the cluster (fields Conveyor sets):",
                "- none: the target already runs these manifests",
                "",
            ],
            id="first-stage-nothing-changes",
        ),
        pytest.param(
            {"prod": rendered("prod", replicas=4, tier="gold")},
            staging(replicas=2, debug=True, tier="gold"),
            {
                "prod": [
                    ObjectDrift(DEPLOYMENT, fields=(FieldDrift("spec.replicas", 4, 2),)),
                    ObjectDrift(SERVICE, missing=True),
                ]
            },
            [
                "### prod (namespace `web-prod`)",
                "Parameters that differ from staging: `debug`: True → None, `replicas`: 2 → 4",
                IMAGES_HEAD,
                RUNS_NOW,
                "Changes on the cluster (fields Conveyor sets):",
                "- Deployment/web-prod/web: spec.replicas: want 4, live 2",
                "- Service/web-prod/web: will be created",
                "",
            ],
            id="parameters-and-live-changes",
        ),
        pytest.param(
            {"prod-eu": rendered("prod-eu", replicas=2), "prod-us": rendered("prod-us")},
            staging(replicas=2),
            {"prod-eu": [], "prod-us": [ObjectDrift(SERVICE, missing=True)]},
            [
                "### prod-eu (namespace `web-prod-eu`)",
                "Parameters that differ from staging: none",
                IMAGES_HEAD,
                RUNS_NOW,
                "Changes on the cluster (fields Conveyor sets):",
                "- none: the target already runs these manifests",
                "",
                "### prod-us (namespace `web-prod-us`)",
                "Parameters that differ from staging: `replicas`: 2 → None",
                IMAGES_HEAD,
                RUNS_NOW,
                "Changes on the cluster (fields Conveyor sets):",
                "- Service/web-prod/web: will be created",
                "",
            ],
            id="every-target-of-the-stage",
        ),
        pytest.param(
            {"prod": rendered("prod")},
            None,
            {
                "prod": [
                    ObjectDrift(
                        DEPLOYMENT,
                        fields=(
                            FieldDrift("spec.template.spec.containers[0].image", IMAGE, OLD_IMAGE),
                        ),
                    )
                ]
            },
            [
                "### prod (namespace `web-prod`)",
                IMAGES_HEAD,
                f"- {PLACE}: `{OLD_IMAGE}` → `{IMAGE}`",
                "Changes on the cluster (fields Conveyor sets):",
                f"- Deployment/web-prod/web: spec.template.spec.containers[0].image: want "
                f"'{IMAGE}', live '{OLD_IMAGE}'",
                "",
            ],
            id="an-image-replaced",
        ),
        pytest.param(
            {"prod": rendered("prod")},
            None,
            {"prod": [ObjectDrift(DEPLOYMENT, missing=True)]},
            [
                "### prod (namespace `web-prod`)",
                IMAGES_HEAD,
                f"- {PLACE}: `{IMAGE}` (new)",
                "Changes on the cluster (fields Conveyor sets):",
                "- Deployment/web-prod/web: will be created",
                "",
            ],
            id="a-first-deploy",
        ),
        pytest.param(
            {"prod": rendered("prod")},
            None,
            {
                "prod": [
                    ObjectDrift(
                        DEPLOYMENT,
                        fields=(FieldDrift("spec.template.spec.containers", [], [{"name": "a"}]),),
                    )
                ]
            },
            [
                "### prod (namespace `web-prod`)",
                IMAGES_HEAD,
                f"- {PLACE}: `{IMAGE}` (its containers change: see the changes below)",
                "Changes on the cluster (fields Conveyor sets):",
                "- Deployment/web-prod/web: spec.template.spec.containers: want [], live "
                "[{'name': 'a'}]",
                "",
            ],
            id="a-container-list-replaced",
        ),
    ],
)
def test_the_approval_form_shows_parameters_and_live_changes_per_target(
    renders: dict[str, Rendered],
    baseline: Target | None,
    changes: dict[str, list[ObjectDrift]],
    body: list[str],
) -> None:
    form = approval_form(
        "web", "prod", DIGEST, renders, baseline=baseline, changes=changes, provenance=PROVENANCE
    )
    assert form.split("\n") == FORM_HEAD + body


def test_a_digest_promoted_by_hand_shows_its_commit_without_a_ref() -> None:
    by_hand = Provenance("/srv/git/web", None, "d" * 40)
    assert by_hand.describe() == "Built from `/srv/git/web`, commit `" + "d" * 40 + "`"


def outcome(target: str, *results: GateResult) -> TargetOutcome:
    return TargetOutcome(target, rendered(target), list(results))


TABLE_HEAD = ["| target | gate | verdict | seconds | reason |", "|---|---|---|---|---|"]
HASHES_HEAD = [
    "| target | namespace | parameters hash | rendered hash | images |",
    "|---|---|---|---|---|",
]


def hashes(target: str) -> str:
    return (
        f"| {target} | web-{target} | `sha256:111111111111` | `sha256:222222222222` | `{IMAGE}` |"
    )


@pytest.mark.parametrize(
    ("outcomes", "approved_by", "passed", "expected"),
    [
        pytest.param(
            [outcome("prod-eu", GateResult("readiness", True, "3/3 ready", 1.26))],
            "alice",
            True,
            [
                "# web → prod: passed",
                "",
                f"Digest: `{DIGEST}`",
                "Approved by: alice",
                "",
                *TABLE_HEAD,
                "| prod-eu | readiness | passed | 1.3 | 3/3 ready |",
                "",
                *HASHES_HEAD,
                hashes("prod-eu"),
            ],
            id="passed-and-approved",
        ),
        pytest.param(
            [
                outcome(
                    "prod-eu",
                    GateResult("readiness", True, "ready", 2.0),
                    GateResult("smoke", False, "exit 1 | stderr:\n" + "x" * 300, 0.04),
                ),
                outcome("prod-us"),
            ],
            None,
            False,
            [
                "# web → prod: FAILED",
                "",
                f"Digest: `{DIGEST}`",
                "Approved by: not required",
                "",
                *TABLE_HEAD,
                "| prod-eu | readiness | passed | 2.0 | ready |",
                "| prod-eu | smoke | FAILED | 0.0 | "
                + ("exit 1 \\| stderr: " + "x" * 300)[:200]
                + " |",
                "",
                *HASHES_HEAD,
                hashes("prod-eu"),
                hashes("prod-us"),
            ],
            id="failed-reasons-escaped-and-cut",
        ),
    ],
)
def test_the_promotion_report_lists_every_result_and_what_was_rendered(
    outcomes: list[TargetOutcome], approved_by: str | None, passed: bool, expected: list[str]
) -> None:
    report = promotion_report(
        "web", "prod", DIGEST, outcomes, approved_by=approved_by, passed=passed
    )
    assert report.split("\n") == expected
