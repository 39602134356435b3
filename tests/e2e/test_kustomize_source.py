"""A Kustomize overlay as an app's source, end to end: built once into plain manifests by
`kubectl kustomize`, its image pinned, substituted per target and released dev -> prod."""

from __future__ import annotations

import shutil
from pathlib import Path

from conveyor.adapters.image_registry import ImageRegistries
from conveyor.platform.local import LocalPlatform
from tests.support.world import World

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kustomize-web"


def test_a_kustomize_overlay_is_released_from_dev_to_prod(
    world: World, platform: LocalPlatform
) -> None:
    shutil.rmtree(world.source / "web")
    shutil.copytree(FIXTURE, world.source / "web")
    world.git("add", "-A")
    world.git("commit", "-qm", "the app is a Kustomize overlay now")

    process = world.start("release", app=world.app)
    world.answer("prod", approve=True, approver="alice", reason="overlay checked")
    code, output = world.finish(process)
    assert code == 0, output

    pinned = ImageRegistries().digest(platform.registry.address, "web", "1.1.0")
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    for target, greeting in (("dev", "hello from dev"), ("prod-us", "hello from the Americas")):
        assert world.desired(target).digest == digest  # type: ignore[union-attr]
        deployment = world.live("Deployment", "web", target)
        assert deployment is not None
        assert deployment["metadata"]["labels"]["app.kubernetes.io/part-of"] == "shop"
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"registry.example/web:1.1.0@{pinned}"
        config_name = container["envFrom"][0]["configMapRef"]["name"]
        assert config_name.startswith("web-config-"), "the generator's hashed name"
        config = world.live("ConfigMap", config_name, target)
        assert config is not None and config["data"]["greeting"] == greeting
    assert world.live("Deployment", "web", "prod-eu")["spec"]["replicas"] == 3  # type: ignore[index]
