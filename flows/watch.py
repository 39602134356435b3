"""`watch_source(app)`: a new commit on a watched branch or tag starts one release by itself.

Served as `watch-source/<app>` every `source.watch.interval`. Each cycle lists the branches and
tags of the app's source repository and, for each one `source.watch.refs` names and
`source.allowedRefs` lets a release build, asks Prefect for a run of `release/conveyor` of that
ref under the idempotency key `conveyor-watch/<app>/<ref>/<commit>`: the server creates that run
once, whichever watcher or cycle asks first, and answers every later request with the same run,
so a commit starts one release however many watchers see it. A run this cycle created is
announced as the Prefect event `conveyor.source.updated` (resource `conveyor.app.<app>`, with the
ref and commit) for automations of one's own, and tagged with its trigger in the UI.

A repository that cannot be read, or a watched ref a release may not build, is reported on the
watch's run (which then ends Failed, naming it); the schedule goes on and the next cycle tries
again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.deployments.flow_runs import arun_deployment

from conveyor.adapters import gitrepo
from conveyor.adapters.prefect_api import RELEASE, SERVED_DEPLOYMENT, WATCH_SOURCE
from conveyor.errors import ConfigError, ConveyorError
from flows.context import run_context
from tasks import reports


def idempotency_key(app: str, ref: str, commit: str) -> str:
    return f"conveyor-watch/{app}/{ref}/{commit}"


@flow(name=WATCH_SOURCE, flow_run_name="watch-{app}")
async def watch_source(app: str) -> list[str]:
    """Start one release for each watched ref whose commit has none yet; the names of the
    release runs this cycle started."""
    logger = get_run_logger()
    context = await run_context(app)
    source = context.app.source
    if source.watch is None:
        raise ConfigError(f"app {app}: source.watch is not configured; nothing to watch")
    began = datetime.now(UTC) - timedelta(seconds=1)
    heads = await asyncio.to_thread(gitrepo.branch_and_tag_heads, source.repository)
    started: list[str] = []
    refused: list[str] = []
    for ref, commit in sorted(heads.items()):
        if not source.watch.matches(ref):
            continue
        if not source.allows(ref):
            refused.append(f"{ref} (not among source.allowedRefs)")
            continue
        run = await arun_deployment(
            f"{RELEASE}/{SERVED_DEPLOYMENT}",
            parameters={"app": app, "ref": ref},
            timeout=0,
            as_subflow=False,
            idempotency_key=idempotency_key(app, ref, commit),
            tags=["conveyor", "conveyor-watch", f"trigger:{ref}@{commit[:12]}"],
        )
        if run.created is not None and run.created >= began:
            started.append(run.name)
            logger.info("%s: new commit %s on %s: started %s", app, commit[:12], ref, run.name)
            reports.announce(
                "source.updated",
                app=app,
                payload={"ref": ref, "commit": commit, "flow_run": str(run.id)},
            )
        else:
            logger.debug("%s: %s at %s already has its release, %s", app, ref, commit, run.name)
    if refused:
        raise ConveyorError(
            f"app {app}: watched refs a release may not build: {', '.join(refused)}",
            hint="add them to source.allowedRefs, or narrow source.watch.refs",
        )
    if not started:
        logger.info("%s: no new commit on %s", app, ", ".join(source.watch.refs))
    return started
