"""The parallel pass's order (tests/support/ordering.py): the long modules head the workers'
shares, longest first and balanced, and every test is still there once."""

from __future__ import annotations

import pytest

from tests.support.ordering import longest_modules_first, share_sizes

SECONDS = {"restart": 300.0, "governance": 200.0, "killed": 150.0, "trust": 140.0, "e2e": 25.0}


def _tests(counts: dict[str, int]) -> list[str]:
    return [f"{module}::{n}" for module, count in counts.items() for n in range(count)]


def _order(tests: list[str], workers: int) -> list[str]:
    return longest_modules_first(
        tests, lambda test: test.split("::")[0], workers, lambda m: SECONDS.get(m, 0.0)
    )


@pytest.mark.parametrize(
    ("total", "workers", "sizes"),
    [(10, 4, [2, 2, 3, 3]), (8, 4, [2, 2, 2, 2]), (3, 4, [0, 1, 1, 1]), (5, 1, [5])],
)
def test_shares_are_sized_as_worksteal_sizes_them(
    total: int, workers: int, sizes: list[int]
) -> None:
    assert share_sizes(total, workers) == sizes


def test_the_long_modules_head_the_shares_longest_first_on_the_least_loaded() -> None:
    tests = _tests({"unit": 30, "e2e": 2, "trust": 2, "killed": 1, "governance": 3, "restart": 2})
    ordered = _order(tests, 4)
    assert sorted(ordered) == sorted(tests)
    shares = [ordered[0:10], ordered[10:20], ordered[20:30], ordered[30:40]]
    assert shares[0][:2] == ["restart::0", "restart::1"]
    assert shares[1][:3] == ["governance::0", "governance::1", "governance::2"]
    assert shares[2][:1] == ["killed::0"]
    assert shares[3][:2] == ["trust::0", "trust::1"]
    assert shares[3][2:4] == ["e2e::0", "e2e::1"], "the next long module joins the lightest"
    assert all(test.startswith("unit::") for share in shares for test in share[4:])


def test_a_module_that_fits_no_share_keeps_its_tests_in_the_filler() -> None:
    tests = _tests({"restart": 5, "unit": 3})
    ordered = _order(tests, 4)
    assert sorted(ordered) == sorted(tests)
    assert ordered == tests, "nothing long could be dealt: the collection's order stays"


def test_one_worker_gets_the_longest_first() -> None:
    tests = _tests({"unit": 2, "trust": 1, "restart": 1})
    assert _order(tests, 1) == ["restart::0", "trust::0", "unit::0", "unit::1"]
