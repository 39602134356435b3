"""`promote_stage(app, digest, stage)`: one digest into one stage, policy first."""

from __future__ import annotations

from prefect import flow

from conveyor.adapters.prefect_api import PROMOTE_STAGE
from flows.context import run_context
from flows.steps import promote_through_stage


@flow(name=PROMOTE_STAGE, flow_run_name="promote-{app}-{stage}-{digest}")
async def promote_stage(
    app: str,
    digest: str,
    stage: str,
    break_glass: str | None = None,
    request_signature: str | None = None,
) -> None:
    """Promote `digest` into `stage` if it passed the previous stage, no freeze window is
    active, and (where required) a person approves these exact manifests. `break_glass`, a
    reason, passes the freeze windows with an approval, recorded in git as a break glass.
    `request_signature`, the promoter's SSH signature of the request (`conveyor promote
    --sign-with`), says who asked, for stages whose signed approvals may not come from them."""
    context = await run_context(app)
    await promote_through_stage(
        context, digest, stage, break_glass=break_glass, request_signature=request_signature
    )
