"""Who may enter a stage, table-driven: the path (previous stage's evidence), freeze windows,
a stopped line, a break glass; and the check made again right before each target's apply."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conveyor.config.model import FreezeWindow, Pipeline
from conveyor.config.reader import load_config
from conveyor.records import policy
from conveyor.records.halt import Halt
from conveyor.records.state import Evidence

REPO_ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "a" * 64
NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
HALT = Halt("dana", "incident 42", NOW - timedelta(minutes=5))
FREEZE = FreezeWindow("sale", NOW - timedelta(hours=1), NOW + timedelta(hours=1), None)


def _pipeline(frozen_staging: bool) -> Pipeline:
    pipeline = load_config(REPO_ROOT / "config" / "conveyor.yaml").app("web").pipeline
    if not frozen_staging:
        return pipeline
    stages = tuple(
        dataclasses.replace(s, freeze_windows=(FREEZE,)) if s.name == "staging" else s
        for s in pipeline.stages
    )
    return dataclasses.replace(pipeline, stages=stages)


def _evidence(stage: str, verdict: str = "passed", digest: str = DIGEST) -> Evidence:
    return Evidence("web", digest, stage, verdict, {}, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frozen", "previous", "halt", "break_glass", "reasons"),
    [
        (False, _evidence("test"), None, False, []),
        (False, None, None, False, ["has no evidence from stage 'test'"]),
        (False, _evidence("test", "failed"), None, False, ["did not pass stage 'test'"]),
        (False, _evidence("dev"), None, False, ["not sha256:aaaaaaaaaaaa in test"]),
        (True, _evidence("test"), None, False, ["stage 'staging' is frozen: sale"]),
        (True, _evidence("test"), None, True, []),
        (True, None, None, True, ["has no evidence from stage 'test'"]),
        (False, _evidence("test"), HALT, False, ["the line is stopped", "incident 42"]),
        (False, _evidence("test"), HALT, True, ["the line is stopped"]),
    ],
    ids=[
        "path-kept",
        "skipped-stage",
        "failed-previous",
        "evidence-of-another-stage",
        "frozen",
        "break-glass-passes-the-freeze",
        "break-glass-does-not-skip-a-stage",
        "line-stopped",
        "break-glass-does-not-lift-a-stopped-line",
    ],
)
def test_who_may_enter_staging(
    frozen: bool,
    previous: Evidence | None,
    halt: Halt | None,
    break_glass: bool,
    reasons: list[str],
) -> None:
    decision = policy.may_enter(
        _pipeline(frozen),
        "staging",
        DIGEST,
        previous_evidence=previous,
        now=NOW,
        halt=halt,
        break_glass=break_glass,
    )
    assert decision.allowed is (not reasons)
    for reason in reasons:
        assert reason in decision.explain()


@pytest.mark.parametrize(
    ("frozen", "halt", "break_glass", "expected"),
    [
        (False, None, False, None),
        (True, None, False, "stage 'staging' is frozen: sale (the window opened meanwhile)"),
        (True, None, True, None),
        (False, HALT, True, "the line is stopped since 2026-12-03 11:55 UTC by dana: incident 42"),
    ],
)
def test_right_before_an_apply(
    frozen: bool, halt: Halt | None, break_glass: bool, expected: str | None
) -> None:
    stage = _pipeline(frozen).stage("staging")
    refusal = policy.still_admitted(stage, halt=halt, now=NOW, break_glass=break_glass)
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None and expected in refusal
