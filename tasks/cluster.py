"""Tasks that change or read a target's cluster: apply, wait, soak, drift."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from conveyor.adapters.kube import Kube
from conveyor.bundles.render import Rendered
from conveyor.cluster import apply, drift, gates
from conveyor.cluster.ordering import ObjectRef
from conveyor.config.model import Target
from conveyor.promotion import deploy


@task(name="apply-bundle", cache_policy=NO_CACHE, task_run_name="apply-{target.name}")
async def apply_bundle(kube: Kube, rendered: Rendered, target: Target) -> apply.ApplyReport:
    """Server-side apply the rendered objects in order, then prune what the bundle dropped."""
    logger = get_run_logger()
    report = await asyncio.to_thread(
        deploy.apply_target,
        kube,
        rendered,
        force_conflicts=target.force_conflicts,
        prune_definitions=target.prune_custom_resource_definitions,
        progress=logger.info,
    )
    logger.info(
        "applied %d object(s), pruned %d, in %.2fs",
        len(report.applied),
        len(report.pruned),
        report.elapsed,
    )
    for note in report.notes:
        logger.warning("%s", note)
    for kept in report.kept:
        logger.info("kept %s: the bundle dropped it, but it is shared or protected", kept)
    return report


@task(name="remove-bundle", cache_policy=NO_CACHE, task_run_name="remove-{target.name}")
async def remove_bundle(kube: Kube, rendered: Rendered, target: Target) -> list[ObjectRef]:
    """Delete what a failed first deploy created on the target (its inventory's objects)."""
    removed = await asyncio.to_thread(deploy.remove_target, kube, rendered)
    get_run_logger().info(
        "%s: removed %d object(s) of a failed first deploy", target.name, len(removed)
    )
    return removed


@task(name="wait-for-readiness", cache_policy=NO_CACHE, task_run_name="wait-{target.name}")
async def wait_for_readiness(
    kube: Kube, rendered: Rendered, target: Target, timeout: float
) -> gates.GateResult:
    """Watch until every applied object is ready (strict profile), or the deadline."""
    logger = get_run_logger()

    def progress(ready: int, total: int, waiting: list[str]) -> None:
        logger.info("ready %d/%d%s", ready, total, f"; waiting for {waiting[0]}" if waiting else "")

    result = await asyncio.to_thread(
        deploy.wait_target,
        kube,
        rendered,
        timeout=timeout,
        rules=target.health_checks,
        progress=progress,
    )
    return gates.readiness(result)


@task(name="soak-target", cache_policy=NO_CACHE, task_run_name="soak-{target.name}")
async def soak_target(
    kube: Kube, rendered: Rendered, target: Target, seconds: float
) -> gates.GateResult:
    """Readiness must stay green for the stage's soak time."""
    return await asyncio.to_thread(
        deploy.soak, kube, rendered, seconds=seconds, rules=target.health_checks
    )


@task(name="detect-drift", cache_policy=NO_CACHE, task_run_name="drift-{target.name}")
async def detect_drift(kube: Kube, rendered: Rendered, target: Target) -> list[drift.ObjectDrift]:
    """Fields Conveyor set whose live value differs, and objects deleted out of band."""
    return await asyncio.to_thread(deploy.drift_target, kube, rendered)
