"""Tasks that change or read a target's cluster: apply, wait, gates, soak, drift."""

from __future__ import annotations

import asyncio

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from conveyor.cluster import apply, drift, gates
from conveyor.config.model import BundleTestsGate, CommandGate, Gate, HttpGate, Target
from conveyor.promotion import deploy
from tasks.connections import kube_for


@task(name="apply-bundle", cache_policy=NO_CACHE, task_run_name="apply-{target.name}")
async def apply_bundle(rendered: deploy.Rendered, target: Target) -> apply.ApplyReport:
    """Server-side apply the rendered objects in order, then prune what the bundle dropped."""
    logger = get_run_logger()
    report = await asyncio.to_thread(
        deploy.apply_target,
        kube_for(target.cluster),
        rendered,
        force_conflicts=target.force_conflicts,
        progress=logger.info,
    )
    logger.info(
        "applied %d object(s), pruned %d, in %.2fs",
        len(report.applied),
        len(report.pruned),
        report.elapsed,
    )
    return report


@task(name="wait-for-readiness", cache_policy=NO_CACHE, task_run_name="wait-{target.name}")
async def wait_for_readiness(
    rendered: deploy.Rendered, target: Target, timeout: float
) -> gates.GateResult:
    """Watch until every applied object is ready (strict profile), or the deadline."""
    logger = get_run_logger()

    def progress(ready: int, total: int, waiting: list[str]) -> None:
        logger.info("ready %d/%d%s", ready, total, f"; waiting for {waiting[0]}" if waiting else "")

    result = await asyncio.to_thread(
        deploy.wait_target, kube_for(target.cluster), rendered, timeout=timeout, progress=progress
    )
    return gates.readiness(result)


@task(name="run-gate", cache_policy=NO_CACHE, task_run_name="gate-{gate.name}-{target.name}")
async def run_gate(
    rendered: deploy.Rendered, target: Target, stage: str, gate: Gate
) -> gates.GateResult:
    """One configured gate (tests, command, http) on one target; its verdict is evidence."""
    kube = kube_for(target.cluster)
    if isinstance(gate, BundleTestsGate):
        result = await asyncio.to_thread(
            gates.run_test_jobs,
            kube,
            rendered.tests,
            app=rendered.app,
            target=target.name,
            namespace=target.namespace,
            digest=rendered.digest,
            timeout=gate.timeout,
            name=gate.name,
        )
    elif isinstance(gate, CommandGate):
        environment = {
            **deploy.gate_environment(rendered, stage=stage, kubeconfig=target.cluster.kubeconfig),
            **gate.env,
        }
        result = await asyncio.to_thread(
            gates.run_command,
            gate.name,
            gate.command,
            environment=environment,
            timeout=gate.timeout,
        )
    elif isinstance(gate, HttpGate):
        result = await asyncio.to_thread(
            gates.run_http,
            gate.name,
            gate.url,
            expect_status=gate.expect_status,
            body_contains=gate.body_contains,
            retries=gate.retries,
            interval=gate.interval,
            timeout=gate.timeout,
        )
    else:
        raise TypeError(f"gate {gate.name!r} of type {gate.type!r} is run by the flow")
    log = get_run_logger()
    (log.info if result.passed else log.error)("gate %s: %s", gate.name, result.reason)
    return result


@task(name="soak-target", cache_policy=NO_CACHE, task_run_name="soak-{target.name}")
async def soak_target(
    rendered: deploy.Rendered, target: Target, seconds: float
) -> gates.GateResult:
    """Readiness must stay green for the stage's soak time."""
    return await asyncio.to_thread(deploy.soak, kube_for(target.cluster), rendered, seconds=seconds)


@task(name="detect-drift", cache_policy=NO_CACHE, task_run_name="drift-{target.name}")
async def detect_drift(rendered: deploy.Rendered, target: Target) -> list[drift.ObjectDrift]:
    """Fields Conveyor set whose live value differs, and objects deleted out of band."""
    kube = kube_for(target.cluster)
    spec = apply.Target(rendered.app, target.name, target.namespace)
    prepared = await asyncio.to_thread(apply.prepare, kube, rendered.objects, spec, rendered.digest)
    return await asyncio.to_thread(
        drift.detect, kube, prepared, app=rendered.app, target=target.name
    )
