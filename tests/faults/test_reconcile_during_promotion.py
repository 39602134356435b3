"""Reconcile fires while a promotion holds the target (its gate is running): the promotion's
digest must win. Before the fix, reconcile rendered git's old digest before taking the lock and
applied it once the promotion had recorded the new one: an unrecorded rollback."""

from __future__ import annotations

from pathlib import Path

from tests.support.convergence import (
    assert_git_and_cluster_agree,
    hold_the_dev_gate,
    task_state,
    wait_for,
)
from tests.support.world import World


def test_a_reconcile_during_a_promotion_does_not_put_the_old_digest_back(
    world: World, tmp_path: Path
) -> None:
    world.edit_pipeline(hold_the_dev_gate(tmp_path))
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    first = world.desired("dev").digest  # type: ignore[union-attr]

    world.commit_change(
        "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
    )
    (tmp_path / "entered").unlink()
    (tmp_path / "hold").touch()
    release = world.start("release", app=world.app)
    wait_for((tmp_path / "entered").exists, "gate started")
    assert world.desired("dev").digest == first  # type: ignore[union-attr]

    reconcile = world.start("reconcile", app=world.app, target="dev")
    # The reconcile has seen the old digest in git and the new one live: now let the gate pass.
    wait_for(
        lambda: task_state(world, f"reconcile-{world.app}-dev", "drift-dev") == "COMPLETED",
        "drift detected",
    )
    (tmp_path / "hold").unlink()
    code, output = world.finish(release)
    assert code == 0, output
    code, reconciled = world.finish(reconcile)
    assert code == 0, reconciled

    second = world.desired("dev").digest  # type: ignore[union-attr]
    assert second != first
    config = world.live("ConfigMap", "web-config", "dev")
    assert config is not None and config["data"].get("version") == "two", config
    assert_git_and_cluster_agree(world, "dev")
    assert "changed while this run waited" in reconciled, reconciled

    # A re-run finds nothing to do.
    code, again = world.run("reconcile", app=world.app, target="dev")
    assert code == 0 and "live matches" in again, again
    assert_git_and_cluster_agree(world, "dev")
