"""One failure path per target: whatever fails after an apply began, the cluster ends where git
says (the previous digest, or nothing on a first deploy), the stage's siblings go back with it,
and the report is published only after the record, saying what really happened."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

from tests.support.convergence import assert_git_and_cluster_agree, held_slots
from tests.support.world import World

FAIL = [sys.executable, "-c", "import sys; sys.exit('refused by the test gate')"]
REGION_GATE = """
import os, pathlib, sys, time
flag = pathlib.Path(os.environ["EU_PASSED"])
if os.environ["CONVEYOR_TARGET"] == "prod-eu":
    flag.touch()
    sys.exit(0)
deadline = time.monotonic() + 60
while not flag.exists() and time.monotonic() < deadline:
    time.sleep(0.2)
sys.exit("us refuses")
"""


def _dev_only(pipeline: dict[str, Any]) -> None:
    pipeline["stages"][0]["autoPromote"] = False


def _latest_report(world: World, stage: str) -> str:
    found = world.api.post(
        "/artifacts/filter",
        {
            "artifacts": {"key": {"any_": [f"promotion-{world.app}-{stage}"]}},
            "sort": "CREATED_DESC",
        },
    )
    assert found, "no promotion report published"
    return str(found[0]["data"])


def test_a_failed_first_deploy_removes_what_it_created(world: World) -> None:
    def failing_dev(pipeline: dict[str, Any]) -> None:
        _dev_only(pipeline)
        pipeline["stages"][0]["gates"] = [{"type": "command", "name": "no", "command": FAIL}]

    world.edit_pipeline(failing_dev)
    code, output = world.run("release", app=world.app)
    assert code != 0, output
    assert "first deploy removed (3 object(s) deleted)" in output, output
    assert world.desired("dev") is None
    for kind, name in (("Deployment", "web"), ("Service", "web"), ("ConfigMap", "web-config")):
        assert world.live(kind, name, "dev") is None, f"{kind}/{name} left behind"
    assert world.kube.get("v1", "Namespace", world.namespace("dev")) is not None
    assert held_slots(world, "dev") == 0
    assert "FAILED" in _latest_report(world, "dev")


def test_one_failing_target_sends_its_passing_sibling_back_too(
    world: World, tmp_path: Path
) -> None:
    """prod-us fails its gate once prod-eu passed its own: both end on the previous digest."""

    def through_staging(pipeline: dict[str, Any]) -> None:
        for stage in pipeline["stages"]:
            stage["autoPromote"] = stage["name"] != "staging"
        prod = pipeline["stages"][3]
        prod.update(approval={"required": False}, soak="0s")

    world.edit_pipeline(through_staging)
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    first = world.desired("staging").digest  # type: ignore[union-attr]
    world.edit_pipeline(lambda p: p["stages"][2].update(autoPromote=True))
    code, output = world.run("promote-stage", app=world.app, stage="prod", digest=first)
    assert code == 0, output

    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
    )

    def prod_us_fails(pipeline: dict[str, Any]) -> None:
        prod = pipeline["stages"][3]
        prod["parallelism"] = 2
        prod["gates"] = [
            {
                "type": "command",
                "name": "region",
                "command": [sys.executable, "-c", REGION_GATE],
                "env": {"EU_PASSED": str(tmp_path / "eu-passed")},
            }
        ]

    world.edit_pipeline(prod_us_fails)
    code, output = world.run("release", app=world.app)
    assert code != 0, output
    second = world.desired("staging").digest  # type: ignore[union-attr]
    assert second != first
    for target in ("prod-eu", "prod-us"):
        assert world.desired(target).digest == first, target  # type: ignore[union-attr]
    assert_git_and_cluster_agree(world, "dev", "test", "staging", "prod-eu", "prod-us")
    evidence = world.evidence(second, "prod")
    assert evidence is not None and evidence.verdict == "failed"
    eu = {g.name: g.verdict for g in evidence.gates["prod-eu"]}
    assert (eu["region"], eu["rollback"]) == ("passed", "passed"), eu


def test_a_record_git_refuses_rolls_the_stage_back_and_never_reports_success(
    world: World,
) -> None:
    world.edit_pipeline(_dev_only)
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    first = world.desired("dev").digest  # type: ignore[union-attr]
    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
    )

    hook = Path(world.state_repository) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'frozen by the test' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    code, output = world.run("release", app=world.app)
    assert code != 0, output
    assert "could not be written" in output and "dev rolled back" in output, output
    assert world.desired("dev").digest == first  # type: ignore[union-attr]
    assert_git_and_cluster_agree(world, "dev")
    report = _latest_report(world, "dev")
    assert "FAILED" in report and "passed\n" not in report.split("\n", 1)[0], report

    hook.unlink()
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    assert world.desired("dev").digest != first  # type: ignore[union-attr]
    assert_git_and_cluster_agree(world, "dev")
