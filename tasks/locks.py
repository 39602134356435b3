"""One run at a time per target: Prefect global concurrency limits that Conveyor creates.

Each target has a limit of one slot, `conveyor-target-<app>-<target>`. A promotion holds the
slots of its stage's targets from before its approval pause until its last record, so a second
promotion to a busy target waits (and, past its patience, is refused naming the run that holds
the target). A run tags itself with the targets it holds, which is how the holder is found.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.concurrency.asyncio import concurrency
from prefect.context import get_run_context
from prefect.exceptions import ObjectAlreadyExists

from conveyor.config import Budget
from conveyor.errors import ConveyorError

LEASE_SECONDS = 60
"""Renewed while the run lives; a killed run frees its targets after at most this long
(Prefect's minimum)."""


class TargetBusy(ConveyorError):
    """Another run holds a target this run needs."""


async def _ensure_limit(name: str, slots: int) -> None:
    """Create (or resize) a global concurrency limit; another run creating it first is fine."""
    async with get_client() as client:
        try:
            await client.upsert_global_concurrency_limit_by_name(name, slots)
        except ObjectAlreadyExists:  # upsert is read-then-create: a concurrent run won the race
            await client.upsert_global_concurrency_limit_by_name(name, slots)


def limit_name(app: str, target: str) -> str:
    return f"conveyor-target-{app}-{target}"


def holder_tag(app: str, target: str) -> str:
    return f"conveyor-holds:{app}/{target}"


async def tag_current_run(tags: Sequence[str], *, remove_prefix: str | None = None) -> None:
    """Add tags to the running flow run (dropping those starting with `remove_prefix`)."""
    run = get_run_context().flow_run  # type: ignore[union-attr]
    assert run is not None
    async with get_client() as client:
        current = (await client.read_flow_run(run.id)).tags
        kept = [t for t in current if not (remove_prefix and t.startswith(remove_prefix))]
        await client.update_flow_run(run.id, tags=sorted({*kept, *tags}))


async def _holders(app: str, targets: Sequence[str]) -> list[str]:
    me = get_run_context().flow_run  # type: ignore[union-attr]
    found = []
    async with get_client() as client:
        for target in targets:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[holder_tag(app, target)]),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PAUSED])
                    ),
                )
            )
            found += [
                f"{target}: flow run {r.name} ({r.id}, {r.state_name})"
                for r in runs
                if me is None or r.id != me.id
            ]
    return found


@asynccontextmanager
async def hold_targets(
    app: str, targets: Sequence[str], *, wait_seconds: float
) -> AsyncIterator[None]:
    """Hold every target's slot for the duration of the block; wait up to `wait_seconds`."""
    names = [limit_name(app, target) for target in targets]
    for name in names:
        await _ensure_limit(name, 1)
    acquired = False
    try:
        async with concurrency(
            names,
            occupy=1,
            timeout_seconds=wait_seconds,
            strict=True,
            lease_duration=LEASE_SECONDS,
        ):
            acquired = True
            await tag_current_run([holder_tag(app, t) for t in targets])
            try:
                yield
            finally:
                await tag_current_run([], remove_prefix=f"conveyor-holds:{app}/")
    except TimeoutError as error:
        if acquired:
            raise
        holders = await _holders(app, targets)
        raise TargetBusy(
            f"{app}: target(s) {', '.join(targets)} still busy after {wait_seconds:.0f}s; held by "
            + ("; ".join(holders) or "a run that has just finished"),
            hint="wait for that run to finish (or cancel it in the Prefect UI), then promote again",
        ) from error


def budget_name(budget: str) -> str:
    return f"conveyor-budget-{budget}"


@asynccontextmanager
async def hold_budget(budget: Budget | None) -> AsyncIterator[None]:
    """One slot of a shared deployment budget (none configured: no wait)."""
    if budget is None:
        yield
        return
    name = budget_name(budget.name)
    await _ensure_limit(name, budget.limit)
    async with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS):
        yield
