"""The control loop per cluster: one `reconcile-cluster` run checks every target of the cluster
with one LIST per kind, creates no task run when nothing drifted, and starts a reconcile only for
the targets that drifted; a target it cannot check is named, the others are still checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conveyor.records.state import desired_path
from tests.support.world import World

_RUN_ID = re.compile(r"flow-run/([0-9a-f-]{36})")


def _dev_and_test(pipeline: dict[str, Any]) -> None:
    pipeline["stages"] = pipeline["stages"][:2]
    pipeline["stages"][1]["autoPromote"] = False


def _sweep(world: World) -> tuple[int, str, str]:
    code, output = world.run("reconcile-cluster", cluster="local")
    found = _RUN_ID.findall(output)
    assert found, output
    return code, output, found[0]


def test_one_run_checks_every_target_and_reconciles_only_the_drifted(
    world: World, tmp_path: Path
) -> None:
    world.edit_pipeline(_dev_and_test)
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    digest = world.desired("test").digest  # type: ignore[union-attr]

    code, output, run_id = _sweep(world)
    assert code == 0, output
    assert "local: 2 target(s) with a desired state, 0 drifted, 0 could not be checked" in output
    requests = int(re.search(r"\((\d+) Kubernetes API request", output).group(1))  # type: ignore[union-attr]
    kinds = 4  # the example app: ConfigMap, Deployment, Service, and its namespace
    assert requests <= kinds + 8, f"one LIST per kind (plus discovery), not per target: {output}"
    assert world.api.task_run_records(run_id) == [], "an idle cycle runs no task"
    assert world.api.flow_run_record(run_id)["name"] == "reconcile-cluster-local"

    world.kubectl("test", "scale", "deployment/web", "--replicas=7")
    code, output, _ = _sweep(world)
    assert code == 0, output
    assert "2 target(s) with a desired state, 1 drifted" in output, output
    assert f"{world.app}/test drifted (Deployment/{world.namespace('test')}/web)" in output
    assert f"reconcile-{world.app}-test" in output, "a reconcile run for the drifted target only"
    assert f"reconcile-{world.app}-dev" not in output
    deployment = world.live("Deployment", "web", "test")
    assert deployment is not None and deployment["spec"]["replicas"] == 1, "corrected"
    assert world.live_digest("test") == digest

    # git says dev runs a digest the store does not hold: dev cannot be checked, test still is.
    clone = tmp_path / "state-clone"
    world.git("clone", "-q", world.state_repository, str(clone), cwd=tmp_path)
    recorded = clone / desired_path(world.app, "dev")
    recorded.write_text(recorded.read_text().replace(digest, "sha256:" + "0" * 64))
    world.git("commit", "-qam", "dev: a digest nobody built", cwd=clone)
    world.git("push", "-q", "origin", "HEAD:main", cwd=clone)
    code, output, _ = _sweep(world)
    assert code != 0, output
    assert "2 target(s) with a desired state, 0 drifted, 1 could not be checked" in output, output
    assert f"{world.app}/dev: not checked:" in output and "0000000000" in output, output
    assert world.live_digest("dev") == digest, "nothing applied"


def test_an_unknown_cluster_is_refused_naming_the_file_and_the_known_ones(world: World) -> None:
    refused = world.conveyor("reconcile-cluster", "locall")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = refused.stderr
    assert "conveyor.yaml: clusters: unknown cluster 'locall'; known: local" in message
    assert "add it under clusters:" in message, message
    named = {"flow_runs": {"name": {"any_": ["reconcile-cluster-locall"]}}}
    assert world.api.post("/flow_runs/filter", named) == [], "no run was started"
