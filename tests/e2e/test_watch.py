"""Releases that start themselves: `conveyor serve` serves `watch-source/<app>` on the source's
watch interval; a new commit on the watched branch, or a new tag of a watched image within its
constraint, starts exactly one release.

It runs on a Prefect server of its own: serving `release/conveyor` on the shared server would
take the runs other tests start through the CLI."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from conveyor.platform.local import LocalPlatform
from tests.support.convergence import wait_for
from tests.support.images import push_stand_in
from tests.support.world import TARGETS, World, start_serving, stop_process

# It serves release/conveyor, which other tests' CLI runs would find: on a Prefect server of its
# own. And it runs alone: a watch every 5 s is a flow run (a process) every 5 s, which on a busy
# machine would hold up both it and the tests that time queues of processes.
pytestmark = [pytest.mark.own_prefect, pytest.mark.serial]

INTERVAL = 5


def _releases_of(world: World, commit: str, *tags: str) -> list[dict[str, Any]]:
    wanted = ["conveyor-watch", f"trigger:main@{commit[:12]}", *tags]
    runs: list[dict[str, Any]] = world.api.post(
        "/flow_runs/filter", {"flow_runs": {"tags": {"all_": wanted}}}
    )
    return runs


def _completed(world: World, commit: str, *tags: str) -> bool:
    runs = _releases_of(world, commit, *tags)
    states = [run["state"]["type"] for run in runs]
    assert not {"FAILED", "CRASHED", "CANCELLED"} & set(states), runs
    return states == ["COMPLETED"]


def test_a_new_commit_or_image_tag_starts_exactly_one_release(
    world: World, platform: LocalPlatform
) -> None:
    repository = f"registry.example/watched-{world.app}"
    push_stand_in(platform, f"{repository}:1.0.0", "one")
    for target in TARGETS:
        world.set_parameter(target, "image", repository)
    conveyor = yaml.safe_load(world.config_path.read_text())
    conveyor["apps"][world.app]["source"].update(
        ref="main",
        watch={
            "refs": ["main", "release/*"],
            "interval": f"{INTERVAL}s",
            "images": [{"repository": repository, "semver": "^1.0"}],
        },
    )
    world.config_path.write_text(yaml.safe_dump(conveyor, sort_keys=False))

    def dev_only(pipeline: dict[str, Any]) -> None:
        pipeline["stages"] = pipeline["stages"][:1]

    world.edit_pipeline(dev_only)
    first = world.git("rev-parse", "main").strip()
    serving = start_serving(world, ["-m", "deployments.serve"])
    try:
        # The first look finds main with no release yet: it releases what main holds.
        wait_for(lambda: _completed(world, first), "the release of main's first commit", 180)
        assert first[:12] in world.desired("dev").promoted_by  # type: ignore[union-attr]

        world.commit_change(
            "manifests/configmap.yaml", "log-level:", "watched: two\n  log-level:", "v2"
        )
        second = world.git("rev-parse", "main").strip()
        committed = time.monotonic()
        wait_for(lambda: bool(_releases_of(world, second)), "a release of the new commit", 60)
        started = time.monotonic() - committed
        print(f"\nthe release of the new commit was created {started:.1f}s after the commit")
        assert started <= 2 * INTERVAL + 10, "within a watch interval (plus the runner's poll)"
        wait_for(lambda: _completed(world, second), "the release of the new commit", 180)
        time.sleep(2 * INTERVAL)  # more cycles see the same commit
        assert len(_releases_of(world, second)) == 1, "one release per commit, however often"
        assert len(_releases_of(world, first)) == 1
        assert second[:12] in world.desired("dev").promoted_by  # type: ignore[union-attr]
        config = world.live("ConfigMap", "web-config", "dev")
        assert config is not None and config["data"]["watched"] == "two"
        events = world.api.post(
            "/events/filter",
            {"filter": {"event": {"name": ["conveyor.source.updated"]}}, "limit": 50},
        )
        payloads = [event["payload"] for event in events["events"]]
        assert {"ref": "main", "commit": second} in [
            {"ref": p.get("ref"), "commit": p.get("commit")} for p in payloads
        ], payloads

        # A new tag within ^1.0 is new freight: one release, which pins the new digest. A tag
        # outside the constraint starts nothing.
        newer = push_stand_in(platform, f"{repository}:1.1.0", "one, a bit later")
        push_stand_in(platform, f"{repository}:2.0.0", "a major change nobody asked for")
        tagged = f"image:{repository}:1.1.0"
        wait_for(lambda: _completed(world, second, tagged), "the release of the new tag", 180)
        time.sleep(2 * INTERVAL)
        assert len(_releases_of(world, second)) == 2, "the commit's, then the new tag's"
        deployment = world.live("Deployment", "web", "dev")
        assert deployment is not None
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"{repository}:1.1.0@{newer}"
    finally:
        stop_process(serving)
