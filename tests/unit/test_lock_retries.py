"""How Conveyor asks the Prefect server again (the target locks, and the CLI's client): soon
after a locked database (503), at most every BUSY_POLL_CAP seconds for a busy slot (423), never
for other answers."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from conveyor.adapters.prefect_api import (
    BUSY_POLL_CAP,
    LOCKED_FIRST_PAUSE,
    LOCKED_MAX_PAUSE,
    pause_before_retry,
)
from tasks.locks import send_soon_again


@pytest.mark.parametrize(
    ("status", "retry_after", "low", "high"),
    [
        (423, "0.4", 0.4, 0.4),
        (423, "17.2", BUSY_POLL_CAP, BUSY_POLL_CAP),
        (423, None, BUSY_POLL_CAP, BUSY_POLL_CAP),
        (423, "soon", BUSY_POLL_CAP, BUSY_POLL_CAP),
        (423, "0", 0.05, 0.05),
    ],
)
def test_pause_before_asking_again(
    status: int, retry_after: str | None, low: float, high: float
) -> None:
    pause = pause_before_retry(status, retry_after)
    assert pause is not None and low <= pause <= high


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        (0, LOCKED_FIRST_PAUSE),
        (1, 2 * LOCKED_FIRST_PAUSE),
        (3, 8 * LOCKED_FIRST_PAUSE),
        (5, LOCKED_MAX_PAUSE),
        (400, LOCKED_MAX_PAUSE),
    ],
)
def test_a_locked_database_is_asked_again_sooner_than_later(attempt: int, ceiling: float) -> None:
    pauses = [pause_before_retry(503, None, attempt) for _ in range(50)]
    assert all(p is not None and ceiling / 2 <= p <= ceiling for p in pauses), pauses


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 500])
def test_other_answers_are_not_asked_again(status: int) -> None:
    assert pause_before_retry(status, None) is None


def _answer(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:4200/api/v2/concurrency_limits/x")
    return httpx.Response(status, headers=headers, request=request)


async def _answers(statuses: list[int], deadline_in: float) -> tuple[int, int, float]:
    """Send through send_soon_again to a fake endpoint answering `statuses` in turn."""
    calls = 0

    async def send() -> httpx.Response:
        nonlocal calls
        response = _answer(statuses[calls], {"Retry-After": "30"})
        calls += 1
        response.raise_for_status()
        return response

    began = time.monotonic()
    response = await send_soon_again(send, deadline=began + deadline_in, what="x")
    return response.status_code, calls, time.monotonic() - began


def test_a_locked_database_is_asked_again_within_a_fraction_of_a_second() -> None:
    status, calls, took = asyncio.run(_answers([503, 503, 503, 200], 10))
    assert (status, calls) == (200, 4)
    # 10 + 20 + 40 ms at most; the Prefect client's own policy would sleep 2 + 4 + 8 s
    assert took < 7 * LOCKED_FIRST_PAUSE + 0.2


def test_a_busy_slot_is_asked_again_every_second_until_the_deadline() -> None:
    status, calls, took = asyncio.run(_answers([423, 423, 200], 10))
    assert (status, calls) == (200, 3)  # Retry-After 30 is capped at BUSY_POLL_CAP
    assert 2 * BUSY_POLL_CAP - 0.1 < took < 2 * BUSY_POLL_CAP + 0.5
    with pytest.raises(TimeoutError):
        asyncio.run(_answers([423] * 10, 1.5))


def test_other_errors_are_not_asked_again() -> None:
    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(_answers([422, 200], 10))


async def _dropped(times: int, deadline_in: float) -> tuple[int, int]:
    """A server that drops the connection `times` times, then answers 200."""
    calls = 0

    async def send() -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise httpx.ReadError("connection closed by the server")
        return _answer(200)

    response = await send_soon_again(send, deadline=time.monotonic() + deadline_in, what="x")
    return response.status_code, calls


def test_a_dropped_connection_is_asked_again_until_the_deadline() -> None:
    """Seen under load: a pooled keep-alive connection the server had just closed."""
    assert asyncio.run(_dropped(2, 10)) == (200, 3)
    with pytest.raises(httpx.ReadError):
        asyncio.run(_dropped(100, 0.5))
