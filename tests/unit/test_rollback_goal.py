"""What a rollback returns to (state.previous_desired), from a target's history, newest first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.records import state
from conveyor.records.state import DesiredState, HistoryEntry

WHEN = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def digest(n: int) -> str:
    """A digest whose every hex digit is n (1 to 15): prefixes tell them apart."""
    return "sha256:" + f"{n:x}" * 64


def version(n: int | None, commit: str = "c") -> HistoryEntry:
    """A commit of the target's file: holding digest(n), or unreadable (None)."""
    desired = None
    if n is not None:
        desired = DesiredState(
            app="web",
            target="prod-eu",
            stage="prod",
            digest=digest(n),
            parameters={"replicas": n},
            parameters_hash="sha256:" + "1" * 64,
            rendered_hash="sha256:" + "2" * 64,
            promoted_by="flow-run release-web-3f2a1c",
            flow_run_id=None,
            approved_by=None,
            updated_at=WHEN,
        )
    return HistoryEntry(commit, "Conveyor", WHEN, "promote", desired, None if n else "broken")


@pytest.mark.parametrize(
    ("numbers", "to", "goal"),
    [
        pytest.param([3, 2, 1], None, 2, id="the-one-before"),
        pytest.param([3, 3, 1], None, 1, id="same-digest-again-is-skipped"),
        pytest.param([3, None, 1], None, 1, id="unreadable-versions-are-skipped"),
        pytest.param([3, 3], None, None, id="only-one-digest-ever"),
        pytest.param([3], None, None, id="only-one-version"),
        pytest.param([3, 2, 1], digest(1), 1, id="a-named-digest"),
        pytest.param([3, 2, 1], digest(1)[:19], 1, id="a-named-prefix"),
        pytest.param([3, 2, 1], digest(3), 3, id="the-current-one-by-name"),
        pytest.param([3, 2], digest(7), None, id="never-recorded"),
    ],
)
def test_what_a_rollback_returns_to(
    numbers: list[int | None], to: str | None, goal: int | None
) -> None:
    entries = [version(n, commit=f"c{i}") for i, n in enumerate(numbers)]
    current = entries[0].desired
    assert current is not None
    found = state.previous_desired(current, entries, to)
    assert (found.digest if found else None) == (digest(goal) if goal else None)
    assert found is None or found.parameters == {"replicas": goal}
