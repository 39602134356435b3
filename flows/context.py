"""The run context of a flow run: the configuration of the process that runs it, checked
against the configuration its deployment was served with (conveyor.config.binding)."""

from __future__ import annotations

import asyncio

from prefect.client.orchestration import get_client
from prefect.runtime import deployment

from conveyor.config.binding import check_binding
from conveyor.config.model import Config
from conveyor.promotion.context import (
    ClusterContext,
    RunContext,
    open_cluster_context,
    open_run_context,
)


async def run_context(app: str) -> RunContext:
    """Open the context for `app`; refuse (ConfigError) when this run's deployment was served
    with another configuration than the one this process reads now."""
    context = await asyncio.to_thread(open_run_context, app)
    await _check_served_with(context.config)
    return context


async def cluster_context(cluster: str) -> ClusterContext:
    """`run_context` for a control-loop run over one cluster."""
    context = await asyncio.to_thread(open_cluster_context, cluster)
    await _check_served_with(context.config)
    return context


async def _check_served_with(config: Config) -> None:
    if deployment.id:
        async with get_client() as client:
            served = await client.read_deployment(deployment.id)
        check_binding(config, list(served.tags), f"deployment {served.name}")
