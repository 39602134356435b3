"""`reconcile_cluster(cluster)`: the control loop for every target of one cluster, one run a cycle.

Served on a schedule per cluster (deployments/serve.py), instead of one scheduled reconcile per
target: an idle cycle is this one flow run, with no task run, one read of the state repository
and one labelled LIST per kind for the whole cluster (conveyor.promotion.sweep). A target that
drifted gets a `reconcile` run of its own, started from here as a subflow, which reports and
corrects it under the target's slot after reading git again, exactly as an on-demand
`conveyor reconcile APP TARGET` does.
"""

from __future__ import annotations

import asyncio

from prefect import flow, get_run_logger

from conveyor.adapters.prefect_api import RECONCILE_CLUSTER
from conveyor.errors import ConveyorError
from conveyor.promotion import sweep
from conveyor.records import state
from flows.context import cluster_context
from flows.reconcile import reconcile

CORRECTIONS_AT_ONCE = 4
"""Drifted targets reconciled at the same time by one cycle."""


@flow(name=RECONCILE_CLUSTER, flow_run_name="reconcile-cluster-{cluster}")
async def reconcile_cluster(cluster: str) -> int:
    """Check every target on `cluster` against its desired state in git; reconcile those that
    drifted. Return the number of targets that drifted. Fails (after reconciling the others)
    when a target could not be checked or a reconcile failed, naming each."""
    logger = get_run_logger()
    context = await cluster_context(cluster)
    targets = context.targets()
    kube = context.kube
    before = kube.requests
    recorded = await asyncio.to_thread(
        state.read_desired_many, context.state, [(app.name, t.name) for app, t in targets]
    )
    to_check = [
        sweep.TargetToCheck(app.name, target, desired, context.store(app))
        for app, target in targets
        if (desired := recorded[(app.name, target.name)]) is not None
    ]
    checked = await asyncio.to_thread(sweep.check_cluster, kube, to_check)
    drifted = [verdict for verdict in checked if verdict.needs_reconcile]
    unchecked = [verdict for verdict in checked if verdict.problem]
    logger.info(
        "%s: %d target(s) with a desired state, %d drifted, %d could not be checked "
        "(%d Kubernetes API request(s))",
        cluster,
        len(checked),
        len(drifted),
        len(unchecked),
        kube.requests - before,
    )
    failures = [f"{v.app}/{v.target}: not checked: {v.problem}" for v in unchecked]
    slots = asyncio.Semaphore(CORRECTIONS_AT_ONCE)

    async def correct(verdict: sweep.Checked) -> None:
        async with slots:
            logger.info(
                "%s/%s drifted (%s): reconciling it",
                verdict.app,
                verdict.target,
                ", ".join(verdict.drifted[:5]) + (" ..." if len(verdict.drifted) > 5 else ""),
            )
            try:
                await reconcile(verdict.app, verdict.target)
            except Exception as error:
                message = error.message if isinstance(error, ConveyorError) else repr(error)
                failures.append(f"{verdict.app}/{verdict.target}: reconcile failed: {message}")

    await asyncio.gather(*(correct(verdict) for verdict in drifted))
    if failures:
        raise ConveyorError(
            f"{cluster}: {len(failures)} target(s) need a look:\n  " + "\n  ".join(failures)
        )
    return len(drifted)
