"""Tasks that read and write the state repository (desired state and evidence in git)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from conveyor.adapters.gitrepo import StateRepository
from conveyor.records import halt, state


@task(name="read-desired-state", cache_policy=NO_CACHE, task_run_name="read-desired-{target}")
async def read_desired_state(
    repo: StateRepository, app: str, target: str
) -> state.DesiredState | None:
    return await asyncio.to_thread(state.read_desired, repo, app, target)


@task(name="read-evidence", cache_policy=NO_CACHE, task_run_name="read-evidence-{stage}")
async def read_evidence(
    repo: StateRepository, app: str, digest: str, stage: str
) -> state.Evidence | None:
    return await asyncio.to_thread(state.read_evidence, repo, app, digest, stage)


@task(name="read-evidence-of", cache_policy=NO_CACHE, task_run_name="read-evidence-{app}")
async def read_evidence_of(
    repo: StateRepository, app: str, digest: str, stages: Sequence[str]
) -> dict[str, state.Evidence | None]:
    """What each stage proved about the digest so far (one read of the state repository)."""
    return await asyncio.to_thread(state.read_evidence_of, repo, app, digest, stages)


@task(name="record-state", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
async def record_state(
    repo: StateRepository,
    *,
    desired: state.DesiredState | Sequence[state.DesiredState] = (),
    evidence: state.Evidence | None = None,
    action: str = "promote",
    reason: str | None = None,
) -> str:
    """One commit with desired state (of one or several targets) and/or evidence; returns
    the commit."""
    return await asyncio.to_thread(
        state.record, repo, desired=desired, evidence=evidence, action=action, reason=reason
    )


@task(name="read-halt", cache_policy=NO_CACHE)
async def read_halt(repo: StateRepository) -> halt.Halt | None:
    """Whether the line is stopped (halt.yaml in the state repository)."""
    return await asyncio.to_thread(halt.read_halt, repo)


@task(name="read-history", cache_policy=NO_CACHE, task_run_name="history-{target}")
async def read_history(repo: StateRepository, app: str, target: str) -> list[state.HistoryEntry]:
    return await asyncio.to_thread(state.history, repo, app, target)
