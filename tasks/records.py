"""Tasks that read and write the state repository (desired state and evidence in git)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from conveyor.adapters import gitrepo
from conveyor.config.model import Config
from conveyor.records import state

_lock = threading.Lock()
_repositories: dict[str, gitrepo.StateRepository] = {}


def state_repository(config: Config) -> gitrepo.StateRepository:
    """The configured state repository, opened (and created when missing) once per process."""
    with _lock:
        if config.state_repository not in _repositories:
            _repositories[config.state_repository] = gitrepo.open_state_repository(
                config.state_repository
            )
        return _repositories[config.state_repository]


@task(name="read-desired-state", cache_policy=NO_CACHE, task_run_name="read-desired-{target}")
async def read_desired_state(config: Config, app: str, target: str) -> state.DesiredState | None:
    return await asyncio.to_thread(state.read_desired, state_repository(config), app, target)


@task(name="read-evidence", cache_policy=NO_CACHE, task_run_name="read-evidence-{stage}")
async def read_evidence(config: Config, app: str, digest: str, stage: str) -> state.Evidence | None:
    return await asyncio.to_thread(
        state.read_evidence, state_repository(config), app, digest, stage
    )


@task(name="read-evidence-of", cache_policy=NO_CACHE, task_run_name="read-evidence-{app}")
async def read_evidence_of(
    config: Config, app: str, digest: str, stages: Sequence[str]
) -> dict[str, state.Evidence | None]:
    """What each stage proved about the digest so far (one read of the state repository)."""
    return await asyncio.to_thread(
        state.read_evidence_of, state_repository(config), app, digest, stages
    )


@task(name="record-state", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
async def record_state(
    config: Config,
    *,
    desired: state.DesiredState | Sequence[state.DesiredState] = (),
    evidence: state.Evidence | None = None,
    action: str = "promote",
    reason: str | None = None,
) -> str:
    """One commit with desired state (of one or several targets) and/or evidence; returns
    the commit."""
    return await asyncio.to_thread(
        state.record,
        state_repository(config),
        desired=desired,
        evidence=evidence,
        action=action,
        reason=reason,
    )


@task(name="read-history", cache_policy=NO_CACHE, task_run_name="history-{target}")
async def read_history(config: Config, app: str, target: str) -> list[state.HistoryEntry]:
    return await asyncio.to_thread(state.history, state_repository(config), app, target)
