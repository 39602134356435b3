"""Lock names and holder tags: one per app and target, never shared by two of them; and when a
waiting run decides that a limit's taken slots belong to nobody."""

from __future__ import annotations

import itertools

import pytest

from tasks.locks import LEASE_SECONDS, OrphanWatch, budget_holder_tag, holder_tag, limit_name

PAIRS = [
    ("a-b", "c"),
    ("a", "b-c"),
    ("a", "b"),
    ("a-b-c", "d"),
    ("web", "prod-eu"),
    ("web-prod", "eu"),
]


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(PAIRS, 2)))
def test_two_app_and_target_pairs_never_share_a_limit_or_a_tag(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    assert limit_name(*first) != limit_name(*second)
    assert holder_tag(*first) != holder_tag(*second)


@pytest.mark.parametrize(
    ("app", "target", "limit", "tag"),
    [
        ("a-b", "c", "conveyor-target-a-b.c", "conveyor-holds:a-b/c"),
        ("a", "b-c", "conveyor-target-a.b-c", "conveyor-holds:a/b-c"),
    ],
)
def test_names_spelled(app: str, target: str, limit: str, tag: str) -> None:
    assert (limit_name(app, target), holder_tag(app, target)) == (limit, tag)


@pytest.mark.parametrize("app", ["budget", "conveyor-budget", "prod"])
def test_taking_an_apps_holder_tags_off_leaves_budget_tags(app: str) -> None:
    """hold_targets removes `conveyor-holds:<app>/...` by prefix."""
    assert not budget_holder_tag("prod").startswith(holder_tag(app, "x").split("/")[0])


# Each look: (seconds since the first look, active slots, live holders, the limit's version).
STALE = [(t, 1, 0, "v1") for t in range(0, LEASE_SECONDS + 1, 5)]


@pytest.mark.parametrize(
    ("looks", "freed_at"),
    [
        pytest.param(STALE, LEASE_SECONDS, id="taken-by-nobody-for-a-lease"),
        pytest.param(STALE[:-1], None, id="one-look-short-of-a-lease"),
        pytest.param(
            [(t, 1, 1 if t == 30 else 0, "v1") for t in range(0, LEASE_SECONDS + 1, 5)],
            None,
            id="a-holder-seen-midway-starts-again",
        ),
        pytest.param(
            [(t, 1, 0, "v2" if t >= 30 else "v1") for t in range(0, 95, 5)],
            90,
            id="granted-again-midway-starts-again",
        ),
        pytest.param(
            [(t, 0 if t == 20 else 1, 0, "v1") for t in range(0, LEASE_SECONDS + 1, 5)],
            None,
            id="free-midway-starts-again",
        ),
        pytest.param(
            [(t, 2, 1, "v1") for t in range(0, 200, 5)], None, id="a-live-holder-keeps-them"
        ),
    ],
)
def test_slots_are_freed_only_after_a_lease_with_nobody_holding_them(
    looks: list[tuple[int, int, int, str]], freed_at: int | None
) -> None:
    watch = OrphanWatch()
    verdicts = [
        (now, watch.orphaned(now, active_slots=active, live_holders=holders, version=version))
        for now, active, holders, version in looks
    ]
    assert next((now for now, orphaned in verdicts if orphaned), None) == freed_at
