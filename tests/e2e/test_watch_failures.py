"""A watch that cannot look is reported on its own run and starts nothing: a source repository
that is not there, a watched image registry that does not answer, no tag within the constraint.
Each cycle is a run of its own, so the next one looks again (the repaired watch then releases as
usual: tests/e2e/test_watch.py). The watch runs here as the CLI runs a flow without a served
deployment, so it needs no server of its own."""

from __future__ import annotations

import pytest

from tests.support.world import World

BAD_INPUT = 2
INFRASTRUCTURE = 4


@pytest.mark.parametrize(
    ("source", "named", "exit_code"),
    [
        pytest.param(
            {"repository": "/nonexistent/source.git"},
            "git repository /nonexistent/source.git: no such path",
            BAD_INPUT,
            id="no-repository",
        ),
        pytest.param(  # not in the platform's mirror either: the registry itself is asked
            {"images": [{"repository": "127.0.0.1:9/nobody/here", "semver": "^1"}]},
            "127.0.0.1:9",
            INFRASTRUCTURE,
            id="registry-down",
        ),
        pytest.param(
            {"images": [{"repository": "ghcr.io/launchpad/rocket", "semver": "^1"}]},
            "none of its 1 tags is within '^1'",
            BAD_INPUT,
            id="no-tag-within-the-constraint",
        ),
    ],
)
def test_a_watch_that_cannot_look_fails_its_run_naming_why_and_starts_nothing(
    world: World, source: dict[str, object], named: str, exit_code: int
) -> None:
    images = source.get("images")
    watch: dict[str, object] = {"refs": ["main"], "interval": "5s"}
    if images:
        watch["images"] = images
    fields: dict[str, object] = {"watch": watch}
    if "repository" in source:
        fields["repository"] = source["repository"]
    world.edit_source(**fields)

    code, output = world.run("watch-source", app=world.app, timeout=120)
    assert code == exit_code, output
    assert named in output.split("Finished in state")[-1], output[-3000:]
    assert world.desired("dev") is None, "no release started"
    started = world.api.post(
        "/flow_runs/filter", {"flow_runs": {"tags": {"all_": ["conveyor-watch"]}}}
    )
    assert not [run for run in started if world.app in run["name"]], started
