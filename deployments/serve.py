"""One process serving every Conveyor deployment: the embedded default of the local platform.

`python -m deployments.serve` (or `conveyor serve`) registers, on the Prefect server named by
PREFECT_API_URL, the deployments `release/conveyor`, `promote-stage/conveyor`,
`deploy-target/conveyor`, `rollback/conveyor`, `reconcile/conveyor` (run from the UI, the API or
the CLI), one `reconcile-cluster/<cluster>` per cluster the apps' targets use, on an interval
(the control loop: flows/reconcile_cluster.py), and one `watch-source/<app>` per app whose
source has a `watch`, then runs their flow runs in this process.
Its schedules are not paused when it stops, so a restart resumes the control loop as it was.
The runs read the configuration this process loaded (it sets $CONVEYOR_CONFIG for them), and
every deployment is tagged with that configuration's digest: a run refuses to start when the
files changed since (restart serve to serve the new configuration).
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Interval

from conveyor.adapters.prefect_api import HEARTBEAT_ENVIRONMENT, SERVED_DEPLOYMENT, PrefectAPI
from conveyor.config.binding import binding_tag
from conveyor.config.model import Config
from conveyor.config.reader import load_config
from flows.console import use_plain_console
from flows.deploy_target import deploy_target
from flows.promote_stage import promote_stage
from flows.reconcile import RECONCILE_INTERVAL, reconcile
from flows.reconcile_cluster import reconcile_cluster
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
        reconcile.to_deployment(
            name=SERVED_DEPLOYMENT,
            tags=["conveyor", bound],
            description="Compare one target with its desired state in git now; correct drift "
            "if self-heal is on (what `conveyor reconcile APP TARGET` runs).",
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
    used = {
        target.cluster.name for app in config.apps.values() for target in app.pipeline.targets()
    }
    for cluster in sorted(used):
        served.append(
            reconcile_cluster.to_deployment(
                name=cluster,
                schedule=Interval(RECONCILE_INTERVAL, anchor_date=jittered_anchor(cluster)),
                parameters={"cluster": cluster},
                tags=["conveyor", "reconcile", bound],
                description=f"Keep every target on cluster {cluster} equal to its desired state "
                "in git: one check of them all, a reconcile for each that drifted.",
            )
        )
    return [cast(RunnerDeployment, deployment) for deployment in served]


def jittered_anchor(cluster: str) -> datetime:
    """When the cluster's reconcile schedule is anchored: an offset within one interval drawn
    from its name, so clusters' cycles spread over the interval instead of firing together, and
    stay where they were across restarts."""
    offset = int(hashlib.sha256(cluster.encode()).hexdigest(), 16) % int(RECONCILE_INTERVAL)
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)


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
