"""Governance end to end: approvals bound to content, one run per target, freeze windows."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.world import World, log_times

PROD = ("prod-eu", "prod-us")


def _stage(pipeline: dict[str, Any], name: str) -> dict[str, Any]:
    return next(stage for stage in pipeline["stages"] if stage["name"] == name)


def test_approvals_are_bound_to_the_digest_and_the_manifests(world: World) -> None:
    release = world.start("release", app=world.app, ref="HEAD")
    world.answer("prod", approve=False, approver="carol", reason="not during the sale")
    code, output = world.finish(release)

    assert code != 0, output
    assert "rejected by carol: not during the sale" in output
    digest = world.desired("staging").digest  # type: ignore[union-attr]
    for target in PROD:
        assert world.desired(target) is None, target
        assert world.live("Deployment", "web", target) is None, target
    rejected = world.evidence(digest, "prod")
    assert rejected is not None and rejected.approval is not None
    assert (rejected.approval.decision, rejected.approval.approver) == ("rejected", "carol")
    assert rejected.verdict == "failed"

    # A rejection is not an approval: promoting the same digest asks again.
    promotion = world.start("promote-stage", app=world.app, digest=digest, stage="prod")
    world.answer("prod", approve=True, approver="alice", reason="sale is over")
    code, output = world.finish(promotion)
    assert code == 0, output
    assert "earlier approval does not count: carol rejected it" in output
    for target in PROD:
        assert world.desired(target).digest == digest, target  # type: ignore[union-attr]
        assert world.live_digest(target) == digest, target
    assert world.desired("prod-eu").approved_by == "alice"  # type: ignore[union-attr]

    # A changed parameter changes the manifests: alice's approval no longer counts.
    world.set_parameter("prod-eu", "replicas", 4)
    promotion = world.start("promote-stage", app=world.app, digest=digest, stage="prod")
    waiting = world.waiting_run("prod")
    assert "promote" in waiting.name, waiting
    answered = world.conveyor("approve", world.app, "prod", "--approver", "bob", "--reason", "ok")
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert "approved prod" in answered.stdout
    code, output = world.finish(promotion)
    assert code == 0, output
    assert "alice's approval was given for other manifests" in output
    deployment = world.live("Deployment", "web", "prod-eu")
    assert deployment is not None and deployment["spec"]["replicas"] == 4
    desired = world.desired("prod-eu")
    assert desired is not None and desired.approved_by == "bob"
    assert desired.parameters["replicas"] == 4
    approved = world.evidence(digest, "prod")
    assert approved is not None and approved.approval is not None
    assert (approved.approval.decision, approved.approval.approver) == ("approved", "bob")
    assert approved.approval.reason == "ok" and approved.verdict == "passed"


def _held(output: str) -> tuple[float, float, float]:
    """(flow began, first `apply-dev` line, last `record-state-*` line), seconds of the day."""
    began = log_times(output, "Flow run")
    applies = log_times(output, "Task run 'apply-dev'")
    records = log_times(output, "Task run 'record-state-")
    assert began and applies and records, output
    return min(began), min(applies), max(records)


def test_two_promotions_to_one_target_take_turns(world: World) -> None:
    def slow_dev(pipeline: dict[str, Any]) -> None:
        dev = _stage(pipeline, "dev")
        dev["autoPromote"] = False
        dev["gates"] = [
            {
                "type": "command",
                "name": "slow",
                "command": [sys.executable, "-c", "import time; time.sleep(3)"],
            }
        ]

    world.edit_pipeline(slow_dev)
    code, output = world.run("release", app=world.app, ref="HEAD")
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]

    runs = [
        world.start("deploy-target", app=world.app, target="dev", digest=digest) for _ in range(2)
    ]
    outputs = []
    for run in runs:
        code, output = world.finish(run)
        assert code == 0, output
        outputs.append(output)

    first, second = sorted((_held(output) for output in outputs), key=lambda held: held[1])
    assert second[1] > first[2], f"both held dev at once: {first[1:]} and {second[1:]}"
    print(
        f"\nfirst run held dev {first[2] - first[1]:.1f}s; the second began "
        f"{second[0] - first[1]:+.1f}s from the first's apply and waited "
        f"{second[1] - second[0]:.1f}s before its own apply"
    )
    assert world.desired("dev").digest == digest  # type: ignore[union-attr]
    assert world.live_digest("dev") == digest


def test_a_freeze_window_keeps_a_digest_out_of_the_stage(world: World) -> None:
    now = datetime.now(UTC)
    window = {
        "reason": "change freeze for the test",
        "start": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    world.edit_pipeline(lambda p: _stage(p, "staging").update(freezeWindows=[window]))

    code, output = world.run("release", app=world.app, ref="HEAD")

    assert code != 0, output
    assert "stage 'staging' is frozen: change freeze for the test" in output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    assert world.desired("test").digest == digest, "test is not frozen"  # type: ignore[union-attr]
    assert world.desired("staging") is None
    assert world.live("Deployment", "web", "staging") is None
    assert world.evidence(digest, "staging") is None
    assert not any("/staging:" in line for line in world.state_log())


def test_a_shared_budget_limits_how_many_targets_deploy_at_once(world: World) -> None:
    def budget_of_one(pipeline: dict[str, Any]) -> None:
        prod = _stage(pipeline, "prod")
        prod["parallelism"] = 2
        prod["budget"] = {"name": f"b{world.prefix}", "limit": 1}
        prod["gates"] = [
            {
                "type": "command",
                "name": "slow",
                "command": [sys.executable, "-c", "import time; time.sleep(2)"],
            }
        ]

    world.edit_pipeline(budget_of_one)
    release = world.start("release", app=world.app, ref="HEAD")
    world.answer("prod", approve=True, reason="budget test")
    code, output = world.finish(release)
    assert code == 0, output

    spans = {}
    for target in ("prod-eu", "prod-us"):
        applies = log_times(output, f"Task run 'apply-{target}'")
        gates = log_times(output, f"Task run 'gate-slow-{target}'")
        assert applies and gates, output
        spans[target] = (min(applies), max(gates))
    first, second = sorted(spans.values())
    assert second[0] > first[1], f"both prod targets deployed at once: {spans}"
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    assert world.live_digest("prod-eu") == world.live_digest("prod-us") == digest


def test_options_that_need_a_served_deployment_are_refused_without_one(world: World) -> None:
    state_repository = Path(world.state_repository)
    assert not state_repository.exists(), "a new world has no state repository yet"
    world.env.pop("PREFECT_API_URL", None)  # no server: the flow would run in a child process
    for option in (["--approve-as", "bob"], ["--no-wait"], ["--output", "json"]):
        refused = world.conveyor("release", world.app, *option)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "only work through a served release/conveyor deployment" in refused.stderr
        assert "conveyor serve" in refused.stderr
    assert not state_repository.exists(), "nothing ran: not even the state repository exists"
    assert world.live_digest("dev") is None


def test_approve_finds_the_waiting_run_without_its_tags(world: World) -> None:
    """The waiting run is found by its paused state's key, not by a tag another request set."""
    release = world.start("release", app=world.app)
    waiting = world.waiting_run("prod")
    world.api.update_tags(waiting.id, [])
    assert not world.api.flow_run(waiting.id).tags
    approved = world.conveyor("approve", world.app, "prod", "--reason", "found by pause key")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    code, output = world.finish(release)
    assert code == 0, output
    assert world.desired("prod-eu").approved_by  # type: ignore[union-attr]
