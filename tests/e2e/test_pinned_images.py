"""Images pinned by digest, end to end: a tag moved in the registry after the build changes no
stage, and a target's parameters cannot make a later stage run another image."""

from __future__ import annotations

from typing import Any

from conveyor.platform.local import LocalPlatform
from tests.support.images import push_stand_in
from tests.support.world import TARGETS, World


def _image_of(world: World, target: str) -> str:
    deployment = world.live("Deployment", "web", target)
    assert deployment is not None, f"no Deployment web in {target}"
    image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def _dev_only_by_itself(pipeline: dict[str, Any]) -> None:
    pipeline["stages"][0]["autoPromote"] = False


def test_a_tag_moved_after_the_build_changes_no_stage(
    world: World, platform: LocalPlatform
) -> None:
    repository = f"registry.example/pinned-{world.app}"
    built_from = push_stand_in(platform, f"{repository}:1.0.0", "what the gates test")
    for target in TARGETS:
        world.set_parameter(target, "image", repository)
    world.edit_pipeline(_dev_only_by_itself)
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    pinned = f"{repository}:1.0.0@{built_from}"
    assert _image_of(world, "dev") == pinned

    moved_to = push_stand_in(platform, f"{repository}:1.0.0", "something else entirely")
    assert moved_to != built_from
    for stage in ("test", "staging"):
        code, output = world.run("promote-stage", app=world.app, stage=stage, digest=digest)
        assert code == 0, output
        assert _image_of(world, stage) == pinned, f"{stage} runs what the build saw"
    process = world.start("promote-stage", app=world.app, stage="prod", digest=digest)
    form = world.api.pause_description(world.waiting_run("prod").id)
    place = "Deployment web: spec.template.spec.containers[0].image"
    assert f"- {place}: `{pinned}` (new)" in form, form  # prod runs nothing yet
    world.answer("prod", approve=True, approver="alice", reason="same image as staging")
    code, output = world.finish(process)
    assert code == 0, output
    for target in ("prod-eu", "prod-us"):
        assert _image_of(world, target) == pinned
    code, output = world.run("reconcile", app=world.app, target="prod-eu")
    assert code == 0, output
    assert _image_of(world, "prod-eu") == pinned, "the moved tag is not drift to correct"

    # A new build sees the moved tag: a new lock, so a new bundle, which starts in dev.
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    rebuilt = world.desired("dev").digest  # type: ignore[union-attr]
    assert rebuilt != digest
    assert _image_of(world, "dev") == f"{repository}:1.0.0@{moved_to}"
    assert _image_of(world, "test") == pinned


def test_a_later_stage_may_not_run_another_image_than_the_stage_before(
    world: World, platform: LocalPlatform
) -> None:
    repository = f"registry.example/pinned-{world.app}"
    one = push_stand_in(platform, f"{repository}:1.0.0", "one")
    two = push_stand_in(platform, f"{repository}:2.0.0", "two")
    for target in TARGETS:
        world.set_parameter(target, "image", repository)
    world.set_parameter("test", "version", "2.0.0")  # test would run other code than dev
    world.edit_pipeline(_dev_only_by_itself)
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]
    assert _image_of(world, "dev") == f"{repository}:1.0.0@{one}"

    code, output = world.run("promote-stage", app=world.app, stage="test", digest=digest)
    assert code != 0
    assert "a target's parameters change which image runs" in output, output
    assert f"{repository}:2.0.0@{two}" in output and f"{repository}:1.0.0@{one}" in output
    assert world.desired("test") is None, "nothing recorded"
    assert world.live("Deployment", "web", "test") is None, "nothing applied"


def test_a_release_that_chooses_an_image_tag_runs_it_in_every_stage(
    world: World, platform: LocalPlatform
) -> None:
    repository = f"registry.example/pinned-{world.app}"
    push_stand_in(platform, f"{repository}:1.0.0", "what the parameters name")
    chosen = push_stand_in(platform, f"{repository}:1.2.0", "what the release chose")
    for target in TARGETS:
        world.set_parameter(target, "image", repository)

    def dev_and_test(pipeline: dict[str, Any]) -> None:
        pipeline["stages"] = pipeline["stages"][:2]

    world.edit_pipeline(dev_and_test)
    code, output = world.run("release", app=world.app, images={repository: "1.2.0"})
    assert code == 0, output
    for target in ("dev", "test"):
        assert _image_of(world, target) == f"{repository}:1.2.0@{chosen}"
    assert world.desired("dev").digest == world.desired("test").digest  # type: ignore[union-attr]

    # A tag for a repository no manifest runs is bad input: nothing is built or changed.
    before = world.state_log()
    code, output = world.run("release", app=world.app, images={"registry.example/other": "1"})
    assert code == 2, output
    assert "a tag was chosen for registry.example/other, which no manifest runs" in output
    assert world.state_log() == before
