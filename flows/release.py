"""`release(app, ref)`: build once, then carry the digest through every stage in order."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import get_run_context
from prefect.runtime import flow_run

from conveyor.adapters.prefect_api import RELEASE
from conveyor.config.model import App
from conveyor.promotion.reports import Provenance
from flows.context import run_context
from flows.steps import promote_through_stage
from tasks import bundles


def _run_name() -> str:
    """`release-APP-REF` until the build names the commit (`release-APP-REF-COMMIT`)."""
    parameters = flow_run.parameters
    return f"release-{parameters['app']}-{parameters.get('ref') or 'configured'}"


@flow(name=RELEASE, flow_run_name=_run_name, log_prints=False)
async def release(app: str, ref: str | None = None, images: dict[str, str] | None = None) -> str:
    """Build the app's bundle at `ref` (default: the app's `source.ref`; refused unless
    `source.allowedRefs` allows it), or reuse it, and promote it stage by stage. `images`
    (repository -> tag) chooses those images' tags for every stage: the bundle pins them
    (only repositories and tags `source.watch.images` allows, where the app watches images).

    Stops after a stage whose autoPromote is off (promote the next one with
    `conveyor promote`), and fails where a gate fails or an approval is refused.
    """
    logger = get_run_logger()
    context = await run_context(app)
    spec = context.app
    chosen = ref or spec.source.ref
    spec.source.check_ref(chosen)
    spec.source.check_image_tags(images or {})
    built = await bundles.build_bundle(context.store, spec, chosen, images)
    logger.info(
        "%s %s at %s (commit %s): %s",
        app,
        built.digest,
        chosen,
        built.commit,
        "reused" if built.reused else "built and pushed",
    )
    run = get_run_context().flow_run  # type: ignore[union-attr]
    if run is not None:
        run.name = f"release-{app}-{chosen}-{built.commit[:12]}"  # what records and the UI show
        async with get_client() as client:
            await client.update_flow_run(run.id, name=run.name)
    source = Provenance(spec.source.repository, chosen, built.commit)
    for stage in spec.pipeline.stages:
        await promote_through_stage(context, built.digest, stage.name, source)
        if not stage.auto_promote and stage is not spec.pipeline.stages[-1]:
            logger.info(
                "%s passed %s; autoPromote is off, so the release stops here: "
                "`conveyor promote %s %s --digest %s` continues it",
                built.digest[:19],
                stage.name,
                app,
                _next(spec, stage.name),
                built.digest,
            )
            break
    return built.digest


def _next(spec: App, stage: str) -> str:
    stages = [s.name for s in spec.pipeline.stages]
    return stages[stages.index(stage) + 1]
