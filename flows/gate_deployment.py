"""The gate that runs another Prefect deployment (a test suite, a load test): its final state
decides. It lives with the flows because only they may talk to Prefect."""

from __future__ import annotations

import time

from prefect.deployments import arun_deployment

from conveyor.cluster import gates
from conveyor.config.model import DeploymentGate
from conveyor.promotion import deploy


async def run_deployment_gate(
    gate: DeploymentGate, rendered: deploy.Rendered, stage: str
) -> gates.GateResult:
    started = time.monotonic()
    parameters = {**gate.parameters}
    try:
        run = await arun_deployment(
            gate.deployment,
            parameters=parameters,
            timeout=gate.timeout,
            as_subflow=False,
            tags=[f"conveyor-gate:{rendered.app}/{rendered.target}", f"conveyor-stage:{stage}"],
        )
    except Exception as error:  # an unknown deployment, an unreachable API: the gate fails
        return gates.GateResult(
            gate.name,
            False,
            f"could not run {gate.deployment}: {error}",
            time.monotonic() - started,
        )
    state = run.state
    passed = state is not None and state.is_completed()
    reason = f"{gate.deployment} run {run.name}: {state.name if state else 'no state'}"
    return gates.GateResult(gate.name, passed, reason, time.monotonic() - started)
