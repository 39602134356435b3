"""Tasks that build bundles and render them for targets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from conveyor.bundles import artifact
from conveyor.config.model import Config, Target
from conveyor.promotion import deploy
from tasks.connections import store_for


@task(name="build-bundle", cache_policy=NO_CACHE)
async def build_bundle(config: Config, app: str, ref: str) -> artifact.Built:
    """The digest of the app's source at `ref`: reused when that source tree was built before."""
    spec = config.app(app)
    return await asyncio.to_thread(
        artifact.build,
        spec.source.repository,
        ref,
        spec.source.path,
        store_for(config, app),
        environment_names=spec.pipeline.environment_names(),
    )


@task(name="render-bundle", cache_policy=NO_CACHE, task_run_name="render-{target.name}")
async def render_bundle(
    config: Config,
    app: str,
    target: Target,
    digest: str,
    parameters: Mapping[str, Any] | None = None,
) -> deploy.Rendered:
    """Pull and verify the digest, then render it with the target's parameters (or, to
    reproduce a recorded state, with the recorded ones)."""
    return await asyncio.to_thread(
        deploy.render_target,
        store_for(config, app),
        digest,
        app=app,
        target=target.name,
        namespace=target.namespace,
        parameters=dict(target.parameters if parameters is None else parameters),
    )
