"""`python -m flows FLOW '{"param": ...}'`: run one flow in this process (the CLI's fallback
when no Prefect server serves Conveyor's deployments). Its exit code is the one the flow's final
state stands for (conveyor.adapters.prefect_api.exit_code), as for a served run."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.settings import (
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)

from conveyor.adapters.prefect_api import HEARTBEAT_SECONDS, exit_code
from flows.console import use_plain_console
from flows.deploy_target import deploy_target
from flows.promote_stage import promote_stage
from flows.reconcile import reconcile
from flows.reconcile_cluster import reconcile_cluster
from flows.release import release
from flows.rollback import rollback
from flows.watch import watch_source

FLOWS: dict[str, Any] = {
    flow.name: flow
    for flow in (
        release,
        promote_stage,
        deploy_target,
        reconcile,
        rollback,
        watch_source,
        reconcile_cluster,
    )
}


@contextmanager
def heartbeats() -> Iterator[None]:
    """The run sends heartbeats (unless configured otherwise), so that Conveyor's crash
    automation marks it Crashed if this process dies."""
    if get_current_settings().flows.heartbeat_frequency is not None:
        yield
        return
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: HEARTBEAT_SECONDS}):
        yield


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in FLOWS:
        print(f"usage: python -m flows {{{','.join(FLOWS)}}} '<json parameters>'", file=sys.stderr)
        return 2
    use_plain_console()  # user text in the log is printed as written
    with heartbeats():
        state = asyncio.run(FLOWS[argv[0]](**json.loads(argv[1]), return_state=True))
    return exit_code(state.type.value, state.message or "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
