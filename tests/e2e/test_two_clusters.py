"""Two clusters, as the example configuration has them: prod-us on the platform's second
cluster. A release crosses both; each cluster's control loop checks only its own targets; a
cluster that does not answer fails its own targets with an error naming it, while the other
cluster's keep working and nothing is recorded for what was not done."""

from __future__ import annotations

import json

import pytest
import yaml

from conveyor.platform.local import LocalPlatform
from tests.support.convergence import held_slots
from tests.support.proxy import CuttableProxy, api_server_of, kubeconfig_through
from tests.support.world import World

pytestmark = pytest.mark.two_clusters

INFRASTRUCTURE = 4


def _second_cluster_through(world: World, platform: LocalPlatform, proxy: CuttableProxy) -> None:
    path = kubeconfig_through(
        proxy, platform.clusters[1].kubeconfig, world.root / "kubeconfig-2-through-proxy"
    )
    config = yaml.safe_load(world.config_path.read_text())
    config["clusters"]["local-2"]["kubeconfig"] = str(path)
    world.config_path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_release_crosses_two_clusters_and_one_that_does_not_answer_fails_only_its_own(
    world: World, platform: LocalPlatform
) -> None:
    with CuttableProxy(*api_server_of(platform.clusters[1].kubeconfig)) as proxy:
        _second_cluster_through(world, platform, proxy)
        proxy.cut()
        code, output = world.run("release", app=world.app)
        assert code == INFRASTRUCTURE, output
        assert f"127.0.0.1:{proxy.port}" in output, output[-3000:]
        digest = world.desired("staging").digest  # type: ignore[union-attr]
        assert world.live_digest("staging") == digest, "the first cluster's stages went on"
        assert world.desired("prod-eu") is None and world.desired("prod-us") is None
        assert world.live_digest("prod-eu") is None, "nothing applied to prod"
        assert held_slots(world, "prod-eu") == held_slots(world, "prod-us") == 0
        code, output = world.run("reconcile-cluster", cluster="local")
        assert code == 0, output
        assert "local: 3 target(s) with a desired state, 0 drifted" in output, output

        proxy.restore()
        process = world.start("promote-stage", app=world.app, stage="prod", digest=digest)
        world.answer("prod", approve=True, approver="alice", reason="the cluster is back")
        code, output = world.finish(process)
        assert code == 0, output
        assert world.desired("prod-us").digest == digest  # type: ignore[union-attr]
        assert world.live_digest("prod-us") == digest == world.live_digest("prod-eu")
        assert world.second_kube is not None
        us, eu = world.namespace("prod-us"), world.namespace("prod-eu")
        assert world.kube.get("apps/v1", "Deployment", "web", us) is None, "not on local"
        assert world.second_kube.get("apps/v1", "Deployment", "web", eu) is None
        shown = world.conveyor("status", world.app, "--output", "json")
        rows = {row["target"]: row for row in json.loads(shown.stdout)}
        assert (rows["prod-us"]["cluster"], rows["prod-us"]["drift"]) == ("local-2", "none")
        assert (rows["prod-eu"]["cluster"], rows["prod-eu"]["drift"]) == ("local", "none")
        for cluster, targets in (("local-2", 1), ("local", 4)):
            code, output = world.run("reconcile-cluster", cluster=cluster)
            assert code == 0, output
            assert f"{cluster}: {targets} target(s) with a desired state, 0 drifted" in output

        proxy.cut()
        code, output = world.run("reconcile-cluster", cluster="local-2")
        assert code == INFRASTRUCTURE, output
        assert f"127.0.0.1:{proxy.port}" in output, output[-3000:]
        code, output = world.run("reconcile-cluster", cluster="local")
        assert code == 0, output
