"""The one place a stage's gate is run on a target, whatever its type.

Tests, commands and HTTP checks are the core's (conveyor.cluster.gates). A gate that runs another
Prefect deployment (a test suite, a load test) is run here, since only the layers above the core
talk to Prefect: that run's final state decides. Either way the verdict is a GateResult, which
becomes evidence, and a gate that cannot run fails with the reason instead of raising.
"""

from __future__ import annotations

import asyncio
import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import arun_deployment

from conveyor.adapters.kube import Kube
from conveyor.bundles.render import Rendered
from conveyor.cluster import gates
from conveyor.config.model import (
    BundleTestsGate,
    CommandGate,
    DeploymentGate,
    Gate,
    HttpGate,
    Target,
)
from conveyor.promotion import deploy


@task(name="run-gate", cache_policy=NO_CACHE, task_run_name="gate-{gate.name}-{target.name}")
async def run_gate(
    kube: Kube, rendered: Rendered, target: Target, stage: str, gate: Gate
) -> gates.GateResult:
    """One configured gate on one target; its verdict is evidence."""
    if isinstance(gate, DeploymentGate):
        result = await _run_deployment(gate, rendered, stage)
    else:
        result = await asyncio.to_thread(_run_check, kube, rendered, target, stage, gate)
    log = get_run_logger()
    (log.info if result.passed else log.error)("gate %s: %s", gate.name, result.reason)
    return result


def _run_check(
    kube: Kube, rendered: Rendered, target: Target, stage: str, gate: Gate
) -> gates.GateResult:
    """A gate the core runs: the bundle's tests, a command, an HTTP check."""
    if isinstance(gate, BundleTestsGate):
        return gates.run_test_jobs(
            kube,
            rendered.tests,
            app=rendered.app,
            target=target.name,
            namespace=target.namespace,
            digest=rendered.digest,
            timeout=gate.timeout,
            name=gate.name,
        )
    if isinstance(gate, CommandGate):
        environment = {
            **deploy.gate_environment(rendered, stage=stage, kubeconfig=target.cluster.kubeconfig),
            **gate.env,
        }
        return gates.run_command(
            gate.name, gate.command, environment=environment, timeout=gate.timeout
        )
    if isinstance(gate, HttpGate):
        return gates.run_http(
            gate.name,
            gate.url,
            expect_status=gate.expect_status,
            body_contains=gate.body_contains,
            retries=gate.retries,
            interval=gate.interval,
            timeout=gate.timeout,
        )
    raise TypeError(f"gate {gate.name!r}: no way to run a gate of type {gate.type!r}")


async def _run_deployment(gate: DeploymentGate, rendered: Rendered, stage: str) -> gates.GateResult:
    """Run the gate's deployment and wait for its final state: completed passes."""
    started = time.monotonic()
    try:
        run = await arun_deployment(
            gate.deployment,
            parameters={**gate.parameters},
            timeout=gate.timeout,
            as_subflow=False,
            tags=[f"conveyor-gate:{rendered.app}/{rendered.target}", f"conveyor-stage:{stage}"],
        )
    except Exception as error:  # an unknown deployment, an unreachable API: the gate fails
        return gates.GateResult(
            gate.name, False, f"could not run {gate.deployment}: {error}", _since(started)
        )
    state = run.state
    passed = state is not None and state.is_completed()
    reason = f"{gate.deployment} run {run.name}: {state.name if state else 'no state'}"
    return gates.GateResult(gate.name, passed, reason, _since(started))


def _since(started: float) -> float:
    return time.monotonic() - started
