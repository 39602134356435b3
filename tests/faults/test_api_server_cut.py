"""The Kubernetes API server goes away in the middle of an apply (its connections reset, new
ones refused) and comes back a few seconds later. The runs talk to it through a proxy the test
cuts, so the shared API server keeps serving other tests. Whatever the run managed, it must not
report success for what it did not do; afterwards reconcile and a re-run converge: git and the
cluster agree and no slot stays held."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tests.support.convergence import assert_git_and_cluster_agree, held_slots, task_state, wait_for
from tests.support.proxy import CuttableProxy, api_server_of, kubeconfig_through
from tests.support.world import World

CUT_SECONDS = 8.0


def _through(world: World, proxy: CuttableProxy) -> None:
    """The world's cluster is reached through `proxy` (a kubeconfig naming its port)."""
    path = kubeconfig_through(
        proxy, world.platform.kubernetes.kubeconfig, world.root / "kubeconfig-through-proxy"
    )
    config = yaml.safe_load(world.config_path.read_text())
    config["clusters"]["local"]["kubeconfig"] = str(path)
    world.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def _upstream(world: World) -> tuple[str, int]:
    return api_server_of(world.platform.kubernetes.kubeconfig)


def test_an_api_server_gone_mid_apply_leaves_git_and_cluster_agreeing_after_a_rerun(
    world: World, tmp_path: Path
) -> None:
    world.edit_pipeline(lambda p: p["stages"][0].update(autoPromote=False))
    with CuttableProxy(*_upstream(world)) as proxy:
        _through(world, proxy)
        code, output = world.run("release", app=world.app)
        assert code == 0, output
        first = world.desired("dev").digest  # type: ignore[union-attr]

        world.commit_change(
            "manifests/configmap.yaml", "log-level:", "version: two\n  log-level:", "v2"
        )
        proxy.delay = 0.4  # every answer slow: the apply takes seconds, long enough to cut
        release = world.start("release", app=world.app)
        wait_for(
            lambda: (
                task_state(world, f"release-{world.app}-configured", "apply-dev") == "RUNNING"
                or any(
                    task_state(world, name, "apply-dev") == "RUNNING"
                    for name in _release_names(world)
                )
            ),
            "the apply under way",
            120,
        )
        time.sleep(1.0)
        proxy.cut()
        cut_at = time.monotonic()
        time.sleep(CUT_SECONDS)
        proxy.delay = 0.0
        proxy.restore()
        code, output = world.finish(release, timeout=600)
        print(f"\nrelease during the cut exited {code} ({time.monotonic() - cut_at:.0f}s after)")
        desired = world.desired("dev")
        assert desired is not None
        if code != 0:
            assert desired.digest == first, "a failed run must not record its digest"
            assert "Traceback" not in output.split("Finished in state")[-1], output[-3000:]

        # The control loop puts the cluster where git says, then a re-run promotes v2.
        code, reconciled = world.run("reconcile", app=world.app, target="dev")
        assert code == 0, reconciled
        assert_git_and_cluster_agree(world, "dev")
        code, output = world.run("release", app=world.app)
        assert code == 0, output
        assert world.desired("dev").digest != first  # type: ignore[union-attr]
        assert_git_and_cluster_agree(world, "dev")
        assert held_slots(world, "dev") == 0
        print(f"converged {time.monotonic() - cut_at:.0f}s after the cut")


def _release_names(world: World) -> list[str]:
    runs = world.api.post(
        "/flow_runs/filter",
        {"flow_runs": {"name": {"like_": f"release-{world.app}-"}}, "sort": "START_TIME_DESC"},
    )
    return [run["name"] for run in runs]
