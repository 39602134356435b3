"""Tasks that build bundles and render them for targets."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from conveyor.adapters import oci
from conveyor.bundles import artifact
from conveyor.bundles.render import Rendered
from conveyor.config.model import App, Target
from conveyor.promotion import deploy
from conveyor.promotion.reports import Provenance


@task(name="build-bundle", cache_policy=NO_CACHE)
async def build_bundle(
    store: oci.BundleStore, app: App, ref: str, images: Mapping[str, str] | None = None
) -> artifact.Built:
    """The digest of the app's source at `ref`: reused when that source tree, with the image
    digests every target's parameters name, was built before."""
    built = await asyncio.to_thread(
        artifact.build,
        app.source.repository,
        ref,
        app.source.path,
        store,
        environment_names=app.pipeline.environment_names(),
        parameter_sets={
            f"target {target.name}'s parameters": target.parameters
            for target in app.pipeline.targets()
        },
        image_tags=images,
    )
    for reason in built.not_pinned_for:
        get_run_logger().warning("images not pinned for a target: %s", reason)
    return built


@task(name="read-provenance", cache_policy=NO_CACHE)
async def read_provenance(store: oci.BundleStore, digest: str) -> Provenance:
    """Where `digest` was built from, as its manifest's source and revision annotations say."""
    annotations = await asyncio.to_thread(store.annotations, digest)
    return Provenance(
        annotations.get(oci.ANNOTATION_SOURCE, "(not recorded)"),
        None,
        annotations.get(oci.ANNOTATION_REVISION, "(not recorded)"),
    )


@task(name="render-bundle", cache_policy=NO_CACHE, task_run_name="render-{target.name}")
async def render_bundle(
    store: oci.BundleStore,
    app: str,
    target: Target,
    digest: str,
    parameters: Mapping[str, Any] | None = None,
) -> Rendered:
    """Pull and verify the digest, then render it with the target's parameters (or, to
    reproduce a recorded state, with the recorded ones: a sensitive value, recorded as its hash
    only, comes from the target's configuration, which must still hash the same)."""
    return await asyncio.to_thread(
        lambda: deploy.render_for_target(artifact.load(store, digest), app, target, parameters)
    )
    return await asyncio.to_thread(
        deploy.render_target,
        store,
        digest,
        app=app,
        target=target.name,
        namespace=target.namespace,
        parameters=dict(target.parameters if parameters is None else parameters),
        namespaces=target.namespaces,
        cluster_scoped=target.cluster_scoped,
    )
