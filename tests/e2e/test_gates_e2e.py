"""Gates and approvals end to end: a gate that runs another Prefect deployment, and an approval
nobody answers (a timeout rejects)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from tests.support.world import World

SMOKE_FLOW = "smoke-suite"
SMOKE_MODULE = """\
from prefect import flow


@flow(name="smoke-suite")
def smoke(should_pass: bool = True) -> str:
    if not should_pass:
        raise RuntimeError("smoke suite failed: 2 of 5 checks red")
    return "5 of 5 checks green"
"""


def _stage(pipeline: dict[str, Any], name: str) -> dict[str, Any]:
    return next(stage for stage in pipeline["stages"] if stage["name"] == name)


def _deployment_status(world: World, deployment: str) -> str | None:
    found = world.api.deployment_record(SMOKE_FLOW, deployment)
    return None if found is None else str(found.get("status"))


def _delete_deployment(world: World, deployment: str) -> None:
    """Served deployments outlive their runner; this test's should not outlive the test."""
    found = world.api.deployment(SMOKE_FLOW, deployment)
    assert world.api.delete(f"/deployments/{found['id']}")
    assert _deployment_status(world, deployment) is None


@contextlib.contextmanager
def _served_smoke_suite(world: World, deployment: str) -> Iterator[None]:
    """The smoke-suite flow served as `smoke-suite/<deployment>` by a child process, until the
    block ends; waits until Prefect reports the deployment READY."""
    (world.root / "smoke.py").write_text(SMOKE_MODULE)
    log = (world.root / "smoke-serve.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from smoke import smoke; smoke.serve(name={deployment!r})",
        ],
        cwd=world.root,
        env={**world.env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _deployment_status(world, deployment) != "READY":
            assert server.poll() is None, (world.root / "smoke-serve.log").read_text()
            assert time.monotonic() < deadline, "the smoke suite was not READY within 60 s"
            time.sleep(0.5)
        yield
    finally:
        if server.poll() is None:  # not reaped yet, so its process group is still its own
            os.killpg(server.pid, signal.SIGTERM)  # the runner and the flow runs it started
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()
        _delete_deployment(world, deployment)


def test_a_deployment_gate_passes_or_fails_a_stage_by_its_runs_final_state(world: World) -> None:
    deployment = f"conveyor-smoke-{world.prefix}"
    gate = {
        "type": "deployment",
        "name": "smoke-suite",
        "deployment": f"{SMOKE_FLOW}/{deployment}",
        "parameters": {"should_pass": True},
        "timeout": "90s",
    }

    def staging_runs_the_smoke_suite(pipeline: dict[str, Any]) -> None:
        staging = _stage(pipeline, "staging")
        staging["gates"].append(gate)
        staging["autoPromote"] = False  # the release stops after staging: prod is not the point

    world.edit_pipeline(staging_runs_the_smoke_suite)
    gate_tag = f"conveyor-gate:{world.app}/staging"

    with _served_smoke_suite(world, deployment):
        code, output = world.run("release", app=world.app, ref="HEAD")
        assert code == 0, output
        first = world.desired("staging").digest  # type: ignore[union-attr]
        evidence = world.evidence(first, "staging")
        assert evidence is not None and evidence.verdict == "passed"
        results = {g.name: g for g in evidence.gates["staging"]}
        assert results["smoke-suite"].verdict == "passed", results["smoke-suite"]
        runs = world.api.flow_runs(tags=[gate_tag], states=["COMPLETED"])
        assert len(runs) == 1, runs
        assert results["smoke-suite"].reason == (
            f"{SMOKE_FLOW}/{deployment} run {runs[0].name}: Completed"
        )
        assert world.desired("prod-eu") is None, "autoPromote is off after staging"

        gate["parameters"] = {"should_pass": False}
        world.edit_pipeline(lambda p: _stage(p, "staging")["gates"].__setitem__(-1, gate))
        world.commit_change(
            "manifests/configmap.yaml", "log-level:", "release: two\n  log-level:", "web v2"
        )
        code, output = world.run("release", app=world.app, ref="HEAD")

    assert code != 0, output
    second = world.desired("test").digest  # type: ignore[union-attr]
    assert second != first
    assert "failed in staging" in output, output
    assert world.desired("staging").digest == first  # type: ignore[union-attr]
    assert world.live_digest("staging") == first, "staging was rolled back"
    evidence = world.evidence(second, "staging")
    assert evidence is not None and evidence.verdict == "failed"
    results = {g.name: g for g in evidence.gates["staging"]}
    failed = world.api.flow_runs(tags=[gate_tag], states=["FAILED"])
    assert len(failed) == 1, failed
    assert results["smoke-suite"].verdict == "failed"
    assert results["smoke-suite"].reason == (
        f"{SMOKE_FLOW}/{deployment} run {failed[0].name}: Failed"
    )
    assert results["rollback"].verdict == "passed"
    assert first[:19] in results["rollback"].reason


def test_an_approval_nobody_answers_is_rejected_at_its_timeout(world: World) -> None:
    world.edit_pipeline(
        lambda p: _stage(p, "prod").update(approval={"required": True, "timeout": "3s"})
    )

    release = world.start("release", app=world.app, ref="HEAD")
    paused = world.waiting_run("prod")
    waited_from = time.monotonic()
    code, output = world.finish(release)
    waited = time.monotonic() - waited_from

    assert code != 0, output
    assert "no answer within 3s" in output, output
    assert waited < 15, f"the 3 s timeout ended the run {waited:.0f}s after the pause"
    digest = world.desired("staging").digest  # type: ignore[union-attr]
    for target in ("prod-eu", "prod-us"):
        assert world.desired(target) is None, target
        assert world.live("Deployment", "web", target) is None, target
    evidence = world.evidence(digest, "prod")
    assert evidence is not None and evidence.approval is not None
    assert evidence.approval.decision == "rejected"
    assert evidence.approval.approver == "conveyor"
    assert evidence.approval.reason == "no answer within 3s"
    assert evidence.verdict == "failed"
    final = world.api.flow_run(paused.id)
    assert final.state_type == "FAILED", final
    assert "no answer within 3s" in final.message, final
    assert not world.api.flow_runs(tags=[f"conveyor-awaiting:{world.app}/prod"], states=["PAUSED"])
