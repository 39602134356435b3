"""`promote_stage(app, digest, stage)`: one digest into one stage, policy first."""

from __future__ import annotations

import asyncio

from prefect import flow

from conveyor.adapters.prefect_api import PROMOTE_STAGE
from conveyor.promotion.context import open_run_context
from flows.steps import promote_through_stage


@flow(name=PROMOTE_STAGE, flow_run_name="promote-{app}-{stage}-{digest}")
async def promote_stage(app: str, digest: str, stage: str, config_file: str | None = None) -> None:
    """Promote `digest` into `stage` if it passed the previous stage, no freeze window is
    active, and (where required) a person approves these exact manifests."""
    context = await asyncio.to_thread(open_run_context, config_file, app)
    await promote_through_stage(context, digest, stage)
