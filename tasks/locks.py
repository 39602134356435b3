"""One run at a time per target: Prefect global concurrency limits that Conveyor creates.

Each target has a limit of one slot, `conveyor-target-<app>.<target>` (app and target names are
DNS labels without dots, so the dot keeps app `a-b`/target `c` apart from app `a`/target `b-c`).
A promotion holds the slots of its stage's targets from before its approval pause until its last
record, so a second promotion to a busy target waits (and, past its patience, is refused naming
the run that holds the target). A run tags itself with the targets and budgets it holds, which is
how the holder is found.

A slot can outlive its holder: a Prefect server that keeps its leases in memory forgets them when
it restarts, and nothing then ever gives the slot back. A run waiting for a slot therefore watches
the limit: when its slots stay taken, unchanged, for a whole lease while no live flow run carries
the matching holder tag, nobody holds them, and the waiter sets the limit's count back to zero
(with a warning naming the limit) before asking again.

The slots are taken with a lease that a background task renews, the way Prefect's own
`concurrency()` does it, but the requests are made here, without the Prefect client's retry
policy: a SQLite-backed server answers "database is locked" (503) to a slot request whenever
another write lands mid-transaction, and the client's answer to that is to sleep 2 s, then 4 s.
Here requests follow Conveyor's one policy (conveyor.adapters.prefect_api.pause_before_retry): a
503 is asked again after a fraction of a second, and a busy slot (423) at least every second
(the server suggests up to its configured maximum wait).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, FlowRun, StateType
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import get_run_context
from prefect.exceptions import ObjectAlreadyExists

from conveyor.adapters.prefect_api import pause_before_retry
from conveyor.config.model import Budget
from conveyor.errors import ConveyorError

logger = logging.getLogger("conveyor.locks")

LEASE_SECONDS = 60
"""Renewed while the run lives; a killed run frees its targets after at most this long
(Prefect's minimum)."""
RENEW_EVERY = LEASE_SECONDS / 4
RELEASE_PATIENCE = 10.0
QUEUE_POLL_SECONDS = 1.0
"""How often a run that is not first in its target's queue looks again."""
ORPHAN_CHECK_EVERY = 5.0
"""How often a run waiting for a slot looks at who holds it."""
BUDGET_WAIT = 600.0
LIVE_STATES = (StateType.RUNNING, StateType.PAUSED, StateType.PENDING, StateType.SCHEDULED)
"""A flow run in one of these may still hold slots (a scheduled or pending run that has been
retried, a paused one waiting for its approval)."""


class TargetBusy(ConveyorError):
    """Another run holds a target this run needs."""


class SlotsLost(ConveyorError):
    """The lease on held slots could not be renewed; another run may now hold them."""


class BudgetBusy(ConveyorError):
    """A deployment budget stayed fully used for as long as a run would wait."""


@dataclass
class OrphanWatch:
    """Decides, from successive looks at one limit, when its taken slots belong to nobody: they
    stayed taken, with the limit unchanged (its `updated` stamp: every grant, release or reset
    changes it), and no live run carrying its holder tag, for `patience` seconds without a break.
    A look that sees a holder, free slots or a change starts the count again."""

    patience: float = LEASE_SECONDS
    since: float | None = None
    version: str | None = None

    def orphaned(self, now: float, *, active_slots: int, live_holders: int, version: str) -> bool:
        if active_slots == 0 or live_holders > 0 or version != self.version:
            self.since = None
        self.version = version
        if active_slots == 0 or live_holders > 0:
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.patience


async def _send_once(
    client: PrefectClient, method: str, path: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    """One request to the Prefect API on the client's connection pool and credentials, without
    its retry loop: that loop sleeps 2**n s after a 503 even when no retry is left (Prefect
    3.9.1, seen here with PREFECT_CLIENT_MAX_RETRIES=0)."""
    http = client._client
    request = http.build_request(method, path, json=body)
    response = await httpx.AsyncClient.send(http, request)
    response.raise_for_status()
    return response


async def _post_once(client: PrefectClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await _send_once(client, "POST", path, body)


async def send_soon_again(
    send: Callable[[], Awaitable[httpx.Response]], *, deadline: float, what: str
) -> httpx.Response:
    """Send a request, asking again after busy answers (503s, 423s...) and after a connection
    the server dropped (a pooled keep-alive connection it had just closed, say) until `deadline`
    (monotonic)."""
    busy = 0
    dropped = 0
    while True:
        try:
            return await send()
        except httpx.TransportError:
            pause = min(0.1 * 2**dropped, 2.0)
            dropped += 1
            if time.monotonic() + pause > deadline:
                raise
            await asyncio.sleep(pause)
        except httpx.HTTPStatusError as error:
            response = error.response
            pause = pause_before_retry(
                response.status_code, response.headers.get("Retry-After"), busy
            )
            busy += response.status_code != 423
            if pause is None:
                raise
            if time.monotonic() + pause > deadline:
                if response.status_code == 423:
                    raise TimeoutError(what) from error
                raise
            await asyncio.sleep(pause)


async def _upsert_limit(client: PrefectClient, name: str, slots: int) -> None:
    """Create a global concurrency limit, or give it `slots`; a concurrent creator is fine."""
    try:
        await client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=slots)
        )
    except ObjectAlreadyExists:  # it exists with another size, or another run just created it
        await client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=slots)
        )


async def _release(client: PrefectClient, lease_id: UUID) -> None:
    deadline = time.monotonic() + RELEASE_PATIENCE
    try:
        await send_soon_again(
            lambda: _post_once(
                client, "/v2/concurrency_limits/decrement-with-lease", {"lease_id": str(lease_id)}
            ),
            deadline=deadline,
            what="release",
        )
    except Exception as error:  # the lease expires by itself: say so, do not fail the run
        logger.warning(
            "could not release concurrency lease %s (%s); it frees itself within %ss",
            lease_id,
            error,
            LEASE_SECONDS,
        )


async def _live_holders(client: PrefectClient, tag: str) -> list[FlowRun]:
    return await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[tag]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(LIVE_STATES))),
        )
    )


async def _free_orphaned_slots(
    client: PrefectClient, holder_tags: Mapping[str, str], watches: dict[str, OrphanWatch]
) -> None:
    """Look at each limit once (see OrphanWatch); set the count of one whose slots nobody holds
    back to zero."""
    for name, tag in holder_tags.items():
        path = f"/v2/concurrency_limits/{quote(name, safe='')}"
        try:
            response = await send_soon_again(
                partial(_send_once, client, "GET", path),
                deadline=time.monotonic() + RELEASE_PATIENCE,
                what=f"read {name}",
            )
        except httpx.HTTPStatusError as error:
            if error.response.status_code == 404:  # created by the next request for a slot
                continue
            raise
        limit = response.json()
        active = int(limit["active_slots"])
        holders = len(await _live_holders(client, tag)) if active else 0
        watch = watches.setdefault(name, OrphanWatch())
        if watch.orphaned(
            time.monotonic(), active_slots=active, live_holders=holders, version=limit["updated"]
        ):
            logger.warning(
                "Prefect concurrency limit %s: %s slot(s) taken for %ss by no live flow run "
                "(no run tagged %s; a lease lost when the Prefect server restarted?): "
                "setting its count back to 0",
                name,
                active,
                LEASE_SECONDS,
                tag,
            )
            await send_soon_again(
                partial(_send_once, client, "PATCH", path, {"active_slots": 0}),
                deadline=time.monotonic() + RELEASE_PATIENCE,
                what=f"reset {name}",
            )
            watches.pop(name)


async def _acquire(
    client: PrefectClient,
    limits: Mapping[str, int],
    *,
    holder: ConcurrencyLeaseHolder | None,
    holder_tags: Mapping[str, str],
    wait_seconds: float,
    my_turn: Callable[[], Awaitable[bool]] | None = None,
) -> UUID:
    """One slot of every limit in `limits` (name -> size), under one lease. Limits that are
    missing or sized differently are created or resized first (once), then asked again. While
    the slots are taken, every ORPHAN_CHECK_EVERY seconds, frees those that no live run holds
    (`holder_tags`: limit name -> the tag its holders carry). With `my_turn`, the slots are only
    asked for once it says so (the waiters' queue, see hold_targets)."""
    deadline = time.monotonic() + wait_seconds
    names = sorted(limits)
    request: dict[str, Any] = {
        "names": names,
        "slots": 1,
        "mode": "concurrency",
        "lease_duration": LEASE_SECONDS,
    }
    if holder is not None:
        request["holder"] = holder.model_dump(mode="json")
    shaped = False
    watches: dict[str, OrphanWatch] = {}
    while True:
        if my_turn is not None and not await my_turn():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{', '.join(names)}: older runs still waiting")
            await asyncio.sleep(min(QUEUE_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            continue
        look_again = time.monotonic() + ORPHAN_CHECK_EVERY
        try:
            response = await send_soon_again(
                lambda: _post_once(client, "/v2/concurrency_limits/increment-with-lease", request),
                deadline=min(deadline, look_again),
                what=", ".join(names),
            )
        except TimeoutError:  # the slots stayed taken all this round
            if look_again >= deadline:
                raise
            await _free_orphaned_slots(client, holder_tags, watches)
            continue
        except httpx.HTTPStatusError as error:  # a busy server as the round ended: next round
            status = error.response.status_code
            if look_again >= deadline or pause_before_retry(status, None) is None:
                raise
            continue
        granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
        sizes = {limit.name: limit.limit for limit in granted.limits}
        if sizes == dict(limits):
            return granted.lease_id
        await _release(client, granted.lease_id)
        if shaped:
            raise ConveyorError(
                f"Prefect concurrency limits {', '.join(names)} do not match what Conveyor "
                f"created (found {sizes or 'none'}, wanted {dict(limits)})",
                hint="check the global concurrency limits in the Prefect UI",
            )
        for name, slots in limits.items():
            if sizes.get(name) != slots:
                await _upsert_limit(client, name, slots)
        shaped = True


async def _renew(client: PrefectClient, lease_id: UUID, on_lost: Callable[[str], None]) -> None:
    """Renew the lease every RENEW_EVERY seconds until cancelled; report a lease that is gone."""
    while True:
        await asyncio.sleep(RENEW_EVERY)
        try:
            await send_soon_again(
                lambda: _post_once(
                    client,
                    f"/v2/concurrency_limits/leases/{lease_id}/renew",
                    {"lease_duration": LEASE_SECONDS},
                ),
                deadline=time.monotonic() + LEASE_SECONDS - RENEW_EVERY,
                what="renew",
            )
        except httpx.HTTPStatusError as error:
            if error.response.status_code in (404, 410):
                on_lost(f"the Prefect server no longer knows lease {lease_id}")
                return
            logger.warning("renewing concurrency lease %s failed: %s", lease_id, error)
        except httpx.TransportError as error:
            logger.warning("renewing concurrency lease %s failed: %s", lease_id, error)


@asynccontextmanager
async def hold_slots(
    limits: Mapping[str, int],
    *,
    holder_tags: Mapping[str, str],
    wait_seconds: float,
    my_turn: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[None]:
    """Hold one slot of each limit for the block, under a lease whose holder is the current
    flow run (which tags itself with `holder_tags`' tag for each limit it holds, see _acquire).
    Raises TimeoutError when they stay taken for `wait_seconds`, and SlotsLost (cancelling the
    block) if the lease cannot be kept."""
    run_id = _current_run_id()
    holder = ConcurrencyLeaseHolder(type="flow_run", id=run_id) if run_id else None
    async with get_client() as client:
        lease_id = await _acquire(
            client,
            limits,
            holder=holder,
            holder_tags=holder_tags,
            wait_seconds=wait_seconds,
            my_turn=my_turn,
        )
        lost: list[str] = []
        block = asyncio.current_task()

        def on_lost(reason: str) -> None:
            lost.append(reason)
            if block is not None:
                block.cancel()

        renewer = asyncio.create_task(_renew(client, lease_id, on_lost))
        try:
            yield
        except asyncio.CancelledError:
            if not lost or block is None:
                raise
            block.uncancel()
            raise SlotsLost(
                f"lost the concurrency slots {', '.join(sorted(limits))}: {lost[0]}",
                hint="another run may have started on these targets; check them, then run again",
            ) from None
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            if not lost:
                await _release(client, lease_id)


def limit_name(app: str, target: str) -> str:
    return f"conveyor-target-{app}.{target}"


def holder_tag(app: str, target: str) -> str:
    return f"conveyor-holds:{app}/{target}"


def queue_tag(app: str, target: str) -> str:
    """The tag of a run waiting for the target's slot."""
    return f"conveyor-waits:{app}/{target}"


async def _first_in_line(app: str, targets: Sequence[str]) -> bool:
    """Whether no live run requested before this one (its expected start time: when it was
    created, or scheduled) waits for any of `targets`."""
    me = _current_run_id()
    async with get_client() as client:
        for target in targets:
            waiting = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[queue_tag(app, target)]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(LIVE_STATES))),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=1,
            )
            if waiting and waiting[0].id != me:
                return False
    return True


@dataclass
class _RunTags:
    """A flow run's tags as this process last set them (they change only through
    tag_current_run while the run lives), and the lock that keeps two changes from racing (the
    holder tag is set in the background while the block may already tag an approval)."""

    tags: set[str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_run_tags: dict[UUID, _RunTags] = {}


async def tag_current_run(
    tags: Sequence[str], *, remove_prefix: str | None = None, remove: Sequence[str] = ()
) -> None:
    """Add tags to the running flow run (dropping those in `remove` and those starting with
    `remove_prefix`): one request, no read."""
    run = get_run_context().flow_run  # type: ignore[union-attr]
    assert run is not None
    known = _run_tags.setdefault(run.id, _RunTags(set(run.tags)))
    async with known.lock:
        wanted = {
            t
            for t in known.tags
            if t not in remove and not (remove_prefix and t.startswith(remove_prefix))
        }
        wanted.update(tags)
        if wanted == known.tags:
            return
        async with get_client() as client:
            await client.update_flow_run(run.id, tags=sorted(wanted))
        known.tags = wanted


def _current_run_id() -> UUID | None:
    try:
        run = get_run_context().flow_run  # type: ignore[union-attr]
    except Exception:  # outside a flow run
        return None
    return run.id if run is not None else None


async def _holders(app: str, targets: Sequence[str]) -> list[str]:
    me = _current_run_id()
    found = []
    async with get_client() as client:
        for target in targets:
            runs = await _live_holders(client, holder_tag(app, target))
            found += [
                f"{target}: flow run {r.name} ({r.id}, {r.state_name})" for r in runs if r.id != me
            ]
    return found


@asynccontextmanager
async def hold_targets(
    app: str, targets: Sequence[str], *, wait_seconds: float
) -> AsyncIterator[None]:
    """Hold every target's slot for the duration of the block; wait up to `wait_seconds`.

    Waiting runs take turns in the order they were requested: each tags itself as waiting and
    asks for the slots only when no live run requested earlier waits for one of its targets. So
    when several promotions of one target queue up, they are served oldest first and the newest
    one is what the target runs at the end (Prefect grants a free slot to whichever waiter asks
    first)."""
    acquired = False
    untagging: asyncio.Task[None] | None = None
    queued = [queue_tag(app, t) for t in targets]
    in_a_run = _current_run_id() is not None
    if in_a_run:
        await tag_current_run(queued)  # seen by the others before this run asks for a slot
    try:
        async with hold_slots(
            {limit_name(app, target): 1 for target in targets},
            holder_tags={limit_name(app, target): holder_tag(app, target) for target in targets},
            wait_seconds=wait_seconds,
            my_turn=partial(_first_in_line, app, targets) if in_a_run else None,
        ):
            acquired = True
            # The tag only serves to name the holder: it is set while the block starts its
            # work, and taken off while the slots are released.
            tagging = asyncio.create_task(
                tag_current_run([holder_tag(app, t) for t in targets], remove=queued)
            )
            try:
                yield
            finally:
                untagging = asyncio.create_task(_untag_after(tagging, app))
    except TimeoutError as error:
        if acquired:
            raise
        holders = await _holders(app, targets)
        raise TargetBusy(
            f"{app}: target(s) {', '.join(targets)} still busy after {wait_seconds:.0f}s; held by "
            + ("; ".join(holders) or "a run that has just finished"),
            hint="wait for that run to finish (or cancel it in the Prefect UI), then promote again",
        ) from error
    finally:
        if untagging is not None:
            await untagging
        elif in_a_run:
            await tag_current_run([], remove=queued)


async def _untag_after(tagging: asyncio.Task[None], app: str) -> None:
    await tagging
    await tag_current_run([], remove_prefix=f"conveyor-holds:{app}/")


def budget_name(budget: str) -> str:
    return f"conveyor-budget-{budget}"


def budget_holder_tag(budget: str) -> str:
    return f"conveyor-budget:{budget}"


_budget_slots: Counter[tuple[UUID, str]] = Counter()
"""Budget slots each flow run of this process holds, per budget: its tag comes off with the
last one (a run's targets deploy in parallel, each in a slot of the stage's budget)."""


@asynccontextmanager
async def hold_budget(
    budget: Budget | None, *, wait_seconds: float = BUDGET_WAIT
) -> AsyncIterator[None]:
    """One slot of a shared deployment budget (none configured: no wait); BudgetBusy when none
    frees up within `wait_seconds`."""
    if budget is None:
        yield
        return
    name, tag = budget_name(budget.name), budget_holder_tag(budget.name)
    run_id = _current_run_id()
    acquired = False
    try:
        async with hold_slots(
            {name: budget.limit}, holder_tags={name: tag}, wait_seconds=wait_seconds
        ):
            acquired = True
            if run_id is None:
                yield
                return
            _budget_slots[run_id, tag] += 1
            try:
                await tag_current_run([tag])
                yield
            finally:
                _budget_slots[run_id, tag] -= 1
                if not _budget_slots[run_id, tag]:
                    del _budget_slots[run_id, tag]
                    await tag_current_run([], remove=[tag])
    except TimeoutError as error:
        if acquired:
            raise
        raise BudgetBusy(
            f"deployment budget {budget.name} ({budget.limit} at once, Prefect concurrency "
            f"limit {name}) still fully used after {wait_seconds:.0f}s",
            hint=f"see the runs tagged {tag} in the Prefect UI; promote again once one is done",
        ) from error
