"""`promote_stage(app, digest, stage)`: one digest into one stage, policy first."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from conveyor.config.reader import load_config
from flows.steps import promote_through_stage


@flow(name="promote-stage", flow_run_name="promote-{app}-{stage}-{digest}")
async def promote_stage(app: str, digest: str, stage: str, config_file: str | None = None) -> None:
    """Promote `digest` into `stage` if it passed the previous stage, no freeze window is
    active, and (where required) a person approves these exact manifests."""
    config = load_config(Path(config_file) if config_file else None)
    await promote_through_stage(config, config.app(app), digest, stage)
