"""One process serving every Conveyor deployment: the embedded default of the local platform.

`python -m deployments.serve` (or `conveyor serve`) registers, on the Prefect server named by
PREFECT_API_URL, the deployments `release/conveyor`, `promote-stage/conveyor`,
`deploy-target/conveyor`, `rollback/conveyor` (run from the UI, the API or the CLI), one
`reconcile/<app>-<target>` per target on an interval, and one `watch-source/<app>` per app whose
source has a `watch`, then runs their flow runs in this process.
Its schedules are not paused when it stops, so a restart resumes the control loop as it was.
The runs read the configuration this process loaded (it sets $CONVEYOR_CONFIG for them), and
every deployment is tagged with that configuration's digest: a run refuses to start when the
files changed since (restart serve to serve the new configuration).
"""

from __future__ import annotations

import os
from typing import Any, cast

from prefect import serve
from prefect.deployments.runner import RunnerDeployment

from conveyor.adapters.prefect_api import HEARTBEAT_ENVIRONMENT, SERVED_DEPLOYMENT, PrefectAPI
from conveyor.config.binding import binding_tag
from conveyor.config.model import Config
from conveyor.config.reader import load_config
from flows.console import use_plain_console
from flows.deploy_target import deploy_target
from flows.promote_stage import promote_stage
from flows.reconcile import RECONCILE_INTERVAL, reconcile
from flows.release import release
from flows.rollback import rollback
from flows.watch import watch_source


def deployments(config: Config) -> list[RunnerDeployment]:
    """Every deployment, tagged with the digest of `config` (conveyor.config.binding): a run
    refuses to start when the configuration its process reads is not that one."""
    bound = binding_tag(config)
    served: list[Any] = [
        release.to_deployment(
            name=SERVED_DEPLOYMENT,
            tags=["conveyor", bound],
            description="Build an app's bundle and promote it stage by stage.",
        ),
        promote_stage.to_deployment(
            name=SERVED_DEPLOYMENT,
            tags=["conveyor", bound],
            description="Promote one digest into one stage.",
        ),
        deploy_target.to_deployment(
            name=SERVED_DEPLOYMENT,
            tags=["conveyor", bound],
            description="Deploy one digest to one target.",
        ),
        rollback.to_deployment(
            name=SERVED_DEPLOYMENT,
            tags=["conveyor", bound],
            description="Back to the previous (or a named) recorded digest.",
        ),
    ]
    for app in config.apps.values():
        if app.source.watch is not None:
            served.append(
                watch_source.to_deployment(
                    name=app.name,
                    interval=app.source.watch.interval,
                    parameters={"app": app.name},
                    tags=["conveyor", "watch", bound],
                    description=f"Release {app.name} when {', '.join(app.source.watch.refs)} "
                    "gets a new commit, or a watched image a new tag.",
                )
            )
        for target in app.pipeline.targets():
            served.append(
                reconcile.to_deployment(
                    name=f"{app.name}-{target.name}",
                    interval=RECONCILE_INTERVAL,
                    parameters={"app": app.name, "target": target.name},
                    tags=["conveyor", "reconcile", bound],
                    description=f"Keep {app.name}/{target.name} equal to its desired state in git.",
                )
            )
    return [cast(RunnerDeployment, deployment) for deployment in served]


def main() -> None:
    for name, value in HEARTBEAT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)  # the runs started from here send heartbeats
    use_plain_console()  # and print user text in their logs as written
    PrefectAPI().ensure_crash_automation()  # which mark them Crashed if they fall silent
    config = load_config()
    # The runs read the configuration this process loaded, whatever a caller passes them.
    os.environ["CONVEYOR_CONFIG"] = str(config.path)
    serve(*deployments(config), pause_on_shutdown=False)


if __name__ == "__main__":
    main()
