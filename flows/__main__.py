"""`python -m flows FLOW '{"param": ...}'`: run one flow in this process (the CLI's fallback
when no Prefect server serves Conveyor's deployments). Its exit code is the one the flow's final
state stands for (conveyor.adapters.prefect_api.exit_code), as for a served run.

Only the module of the flow asked for is imported: each process runs one flow, and importing
the others (the control loop's, the watch's) would cost CPU time at every start for nothing.
For the same reason the plain console handler (flows.console) is named in the environment
before Prefect is imported: Prefect configures logging when it is imported, with that handler
then, and use_plain_console() has nothing left to do (it would configure logging again).
"""

from __future__ import annotations

import os

from conveyor.adapters.prefect_api import (
    DEPLOY_TARGET,
    HEARTBEAT_SECONDS,
    PLAIN_CONSOLE_ENVIRONMENT,
    PROMOTE_STAGE,
    RECONCILE,
    RECONCILE_CLUSTER,
    RELEASE,
    ROLLBACK,
    WATCH_SOURCE,
    exit_code,
)

if __name__ == "__main__":  # `python -m flows`, not an import of this module
    for name, value in PLAIN_CONSOLE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)

import asyncio
import importlib
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

from flows.console import use_plain_console

FLOWS: dict[str, tuple[str, str]] = {
    RELEASE: ("flows.release", "release"),
    PROMOTE_STAGE: ("flows.promote_stage", "promote_stage"),
    DEPLOY_TARGET: ("flows.deploy_target", "deploy_target"),
    RECONCILE: ("flows.reconcile", "reconcile"),
    ROLLBACK: ("flows.rollback", "rollback"),
    WATCH_SOURCE: ("flows.watch", "watch_source"),
    RECONCILE_CLUSTER: ("flows.reconcile_cluster", "reconcile_cluster"),
}
"""Each flow by its name: (module, attribute), imported only when that flow runs."""


def load_flow(name: str) -> Any:
    """The flow called `name` (a key of FLOWS), its module imported now."""
    module, attribute = FLOWS[name]
    return getattr(importlib.import_module(module), attribute)


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
    flow = load_flow(argv[0])
    use_plain_console()  # user text in the log is printed as written
    with heartbeats():
        state = asyncio.run(flow(**json.loads(argv[1]), return_state=True))
    return exit_code(state.type.value, state.message or "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
