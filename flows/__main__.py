"""`python -m flows FLOW '{"param": ...}'`: run one flow in this process (the CLI's fallback
when no Prefect server serves Conveyor's deployments)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from flows.deploy_target import deploy_target
from flows.promote_stage import promote_stage
from flows.reconcile import reconcile
from flows.release import release
from flows.rollback import rollback

FLOWS: dict[str, Any] = {
    "release": release,
    "promote-stage": promote_stage,
    "deploy-target": deploy_target,
    "reconcile": reconcile,
    "rollback": rollback,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in FLOWS:
        print(f"usage: python -m flows {{{','.join(FLOWS)}}} '<json parameters>'", file=sys.stderr)
        return 2
    state = asyncio.run(FLOWS[argv[0]](**json.loads(argv[1]), return_state=True))
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
