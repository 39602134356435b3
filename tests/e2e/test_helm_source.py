"""A Helm chart as an app's source, end to end: each target renders the same bundle with
`helm template` and its own parameters as values, images pinned at build, released dev -> prod
with the approval bound to what Helm rendered."""

from __future__ import annotations

import shutil
from pathlib import Path

from conveyor.adapters.image_registry import ImageRegistries
from conveyor.platform.local import LocalPlatform
from tests.support.world import World

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "helm-web"


def test_a_helm_chart_is_released_from_dev_to_prod(world: World, platform: LocalPlatform) -> None:
    shutil.rmtree(world.source / "web")
    shutil.copytree(FIXTURE, world.source / "web")
    world.git("add", "-A")
    world.git("commit", "-qm", "the app is a Helm chart now")

    process = world.start("release", app=world.app)
    world.answer("prod", approve=True, approver="alice", reason="chart checked")
    code, output = world.finish(process)
    assert code == 0, output

    pinned = ImageRegistries().digest(platform.registry.address, "web", "1.1.0")
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    hashes = set()
    for target, greeting, replicas in (
        ("dev", "hello from dev", 1),
        ("prod-eu", "hello from Europe", 3),
        ("prod-us", "hello from the Americas", 3),
    ):
        desired = world.desired(target)
        assert desired is not None and desired.digest == digest
        hashes.add(desired.rendered_hash)
        deployment = world.live("Deployment", "web", target)
        assert deployment is not None and deployment["spec"]["replicas"] == replicas
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"registry.example/web:1.1.0@{pinned}"
        namespace = deployment["metadata"]["namespace"]
        assert container["env"] == [{"name": "SERVED_FROM", "value": f"web.{namespace}"}]
        config = world.live("ConfigMap", "web-config", target)
        assert config is not None and config["data"]["greeting"] == greeting
    assert len(hashes) == 3, "each target renders its own objects"
    assert world.live("Pod", "web-test-connection", "dev") is None, "Helm's test hook left out"
