"""Nobody walks around the path: a stopped line, a freeze window that opens while a promotion
waits for its approval, a recorded break glass, and approvals that name a person and a digest.
(The world's prod stage asks for an approval; see tests/e2e/conftest.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from conveyor.records.halt import HALT_PATH
from tests.support.world import World

REFUSED = 2


def _stage(pipeline: dict[str, Any], name: str) -> dict[str, Any]:
    return next(stage for stage in pipeline["stages"] if stage["name"] == name)


def _to_staging(world: World) -> str:
    """Release through staging (autoPromote off there); the digest that passed it."""
    world.edit_pipeline(lambda p: _stage(p, "staging").update(autoPromote=False))
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    return world.desired("staging").digest  # type: ignore[union-attr]


def _window(starts_in: float, reason: str) -> dict[str, str]:
    start = datetime.now(UTC) + timedelta(seconds=starts_in)
    end = start + timedelta(hours=1)
    return {
        "reason": reason,
        "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def test_a_stopped_line_halts_every_promotion_until_resumed(world: World) -> None:
    stopped = world.conveyor("stop-the-line", "--reason", "incident 42", "--by", "dana")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert HALT_PATH in world.git("show", "--stat", "HEAD", cwd=world.root / "state.git")

    code, output = world.run("release", app=world.app)
    assert code == REFUSED, output
    assert "the line is stopped" in output and "incident 42" in output
    assert world.desired("dev") is None and world.live_digest("dev") is None
    status = world.conveyor("status", world.app)
    assert "STOPPED" in status.stderr and "incident 42" in status.stderr, status.stderr

    resumed = world.conveyor("resume-the-line", "--reason", "fixed", "--by", "dana")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    world.edit_pipeline(lambda p: _stage(p, "dev").update(autoPromote=False))
    code, output = world.run("release", app=world.app)
    assert code == 0, output
    assert world.live_digest("dev") == world.desired("dev").digest  # type: ignore[union-attr]


def test_a_window_that_opens_during_the_approval_wait_keeps_prod_unchanged(
    world: World,
) -> None:
    digest = _to_staging(world)
    opens_in = 45.0  # after the admission, also on a busy machine; before the approval
    world.edit_pipeline(
        lambda p: _stage(p, "prod").update(freezeWindows=[_window(opens_in, "sale starts")])
    )
    started = time.monotonic()
    promotion = world.start("promote-stage", app=world.app, digest=digest, stage="prod")
    world.waiting_run("prod")
    time.sleep(max(0.0, opens_in + 2 - (time.monotonic() - started)))
    world.answer("prod", approve=True, approver="alice", reason="before the sale, I thought")
    code, output = world.finish(promotion)
    assert code == REFUSED, output
    assert "sale starts (the window opened meanwhile)" in output
    for target in ("prod-eu", "prod-us"):
        assert world.desired(target) is None and world.live_digest(target) is None, target

    # Break glass: the same window is passed, with an approval, and git says so.
    promotion = world.start(
        "promote-stage", app=world.app, digest=digest, stage="prod", break_glass="hotfix INC-7"
    )
    form = world.api.pause_description(world.waiting_run("prod").id)
    assert "BREAK GLASS:** hotfix INC-7" in form, "asked again, the reason on top of the form"
    world.answer("prod", approve=True, approver="alice", reason="INC-7 needs it now")
    code, output = world.finish(promotion)
    assert code == 0, output
    assert world.desired("prod-eu").digest == digest  # type: ignore[union-attr]
    log = world.state_log()
    assert any("BREAK GLASS approved by alice: hotfix INC-7" in line for line in log), log


def test_approvals_name_a_person_and_the_digest_and_show_true_differences(
    world: World,
) -> None:
    digest = _to_staging(world)
    promotion = world.start("promote-stage", app=world.app, digest=digest, stage="prod")
    waiting = world.waiting_run("prod")
    form = world.api.pause_description(waiting.id)
    assert f"Digest: `{digest}`" in form
    assert "None →" not in form, f"phantom differences (a default against None):\n{form}"

    empty = world.api.resume(waiting.id, {"approve": True, "approver": "", "reason": ""})
    assert empty.status == "REJECT", "Prefect refuses an approval that names nobody"
    blank = world.conveyor("approve", world.app, "prod", "--approver", " ")
    assert blank.returncode == REFUSED and "--approver is empty" in blank.stderr

    other = world.conveyor("approve", world.app, "prod", "--digest", "sha256:" + "0" * 64)
    assert other.returncode == REFUSED, other.stdout + other.stderr
    approved = world.conveyor("approve", world.app, "prod", "--digest", digest)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert f"Digest: `{digest}`" in approved.stdout, "the approver sees what they approve"
    code, output = world.finish(promotion)
    assert code == 0, output
