"""Releases end to end on the real platform: build once, promote the digest, gates, rollback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conveyor.config.binding import config_digest
from conveyor.config.reader import load_config
from tests.support.world import TARGETS, World

BLOCK_GATE = [
    sys.executable,
    "-c",
    "import os, sys; sys.exit('blocked by ' + os.environ['BLOCK_FILE'] "
    "if os.path.exists(os.environ['BLOCK_FILE']) else 0)",
]


def _release_approving(world: World, *, approver: str = "alice") -> tuple[int, str]:
    process = world.start("release", app=world.app, ref="HEAD")
    world.answer("prod", approve=True, approver=approver, reason="checked the diff")
    return world.finish(process)


def test_a_release_carries_one_digest_from_dev_to_prod(world: World) -> None:
    # The configured branch is released, not HEAD: main moves on after release/1 is cut.
    world.git("branch", "release/1")
    released = world.git("rev-parse", "release/1").strip()
    world.commit_change("manifests/service.yaml", "port: 80\n", "port: 8080\n", "main moves on")
    world.edit_source(ref="release/1", allowedRefs=["release/*"])
    process = world.start("release", app=world.app)
    waiting = world.waiting_run("prod")
    form = world.api.pause_description(waiting.id)
    assert f"`release/1` at commit `{released}`" in form, form
    world.answer("prod", approve=True, approver="alice", reason="checked the diff")
    code, output = world.finish(process)
    assert code == 0, output
    assert f"release/1 (commit {released})" in output, output
    service = world.live("Service", "web", "dev")
    assert service is not None and service["spec"]["ports"][0]["port"] == 80, "release/1's port"

    digest = world.desired("dev").digest  # type: ignore[union-attr]
    assert digest.startswith("sha256:")
    for target in TARGETS:
        desired = world.desired(target)
        assert desired is not None and desired.digest == digest, target
        assert world.live_digest(target) == digest, f"{target} runs the same digest"
    assert world.desired("prod-eu").approved_by == "alice"  # type: ignore[union-attr]
    served_with = config_digest(load_config(world.config_path))
    assert world.desired("prod-us").config == served_with, "the configuration is recorded"  # type: ignore[union-attr]
    for stage in ("dev", "test", "staging", "prod"):
        evidence = world.evidence(digest, stage)
        assert evidence is not None and evidence.verdict == "passed", stage
    prod = world.evidence(digest, "prod")
    assert prod is not None and prod.approval is not None
    assert (prod.approval.decision, prod.approval.approver) == ("approved", "alice")
    assert {g.name for g in prod.gates["prod-eu"]} == {"readiness", "tests", "soak"}
    deployment = world.live("Deployment", "web", "prod-us")
    assert deployment is not None and deployment["spec"]["replicas"] == 3, "prod parameters"
    dev = world.live("Deployment", "web", "dev")
    assert dev is not None and dev["spec"]["replicas"] == 1, "dev parameters"
    log = world.state_log()
    assert (
        f"{world.app}/prod-eu: promote {digest[:19]}… (prod gates passed; approved by alice)" in log
    )
    assert sum(f"{world.app}/dev: promote" in line for line in log) == 1

    shown = world.conveyor("status", world.app, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    rows = {row["target"]: row for row in json.loads(shown.stdout)}
    assert set(rows) == set(TARGETS)
    for row in rows.values():
        assert (row["digest"], row["health"], row["drift"]) == (digest, "healthy", "none"), row
        assert row["promoted"].endswith(f"release-{world.app}-release/1-{released[:12]}"), row

    refused = world.conveyor("release", world.app, "--ref", "main")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "'main' may not be released: source.allowedRefs lists release/*" in refused.stderr
    assert world.desired("dev").digest == digest  # type: ignore[union-attr]


def test_a_gate_failing_in_staging_rolls_staging_back_and_leaves_prod_alone(
    world: World, tmp_path: Path
) -> None:
    block = tmp_path / "block-staging"
    world.edit_pipeline(
        lambda p: p["stages"][2]["gates"].append(
            {
                "type": "command",
                "name": "not-blocked",
                "command": BLOCK_GATE,
                "env": {"BLOCK_FILE": str(block)},
                "timeout": "30s",
            }
        )
    )
    code, output = _release_approving(world)
    assert code == 0, output
    first = world.desired("staging").digest  # type: ignore[union-attr]

    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "release: two\n  log-level:", "web v2"
    )
    block.write_text("v2 must not pass staging")
    code, output = world.run("release", app=world.app, ref="HEAD")

    assert code != 0
    assert "blocked by" in output
    second = world.desired("dev").digest  # type: ignore[union-attr]
    assert second != first
    assert world.desired("test").digest == second  # type: ignore[union-attr]
    assert world.desired("staging").digest == first  # type: ignore[union-attr]
    assert world.live_digest("staging") == first, "staging was rolled back"
    for target in ("prod-eu", "prod-us"):
        assert world.desired(target).digest == first  # type: ignore[union-attr]
        assert world.live_digest(target) == first, f"{target} untouched"
    evidence = world.evidence(second, "staging")
    assert evidence is not None and evidence.verdict == "failed"
    results = {g.name: g for g in evidence.gates["staging"]}
    assert results["not-blocked"].verdict == "failed"
    assert results["rollback"].verdict == "passed"
    assert first[:19] in results["rollback"].reason
    assert world.evidence(second, "prod") is None


def test_a_promotion_that_skips_a_stage_is_refused_and_changes_nothing(world: World) -> None:
    world.edit_pipeline(lambda p: p["stages"][0].update(autoPromote=False))
    code, output = world.run("release", app=world.app, ref="HEAD")
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    assert world.desired("test") is None, "the release stopped after dev"
    log_before = world.state_log()

    refused = world.conveyor("promote", world.app, "prod", "--digest", digest)

    assert refused.returncode != 0
    assert "no evidence from stage 'staging'" in refused.stdout + refused.stderr
    assert world.desired("prod-eu") is None
    assert world.live("Deployment", "web", "prod-eu") is None
    assert world.state_log() == log_before
