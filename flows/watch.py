"""`watch_source(app)`: a new commit on a watched branch or tag, or a new image tag within a
watched constraint, starts one release by itself.

Served as `watch-source/<app>` every `source.watch.interval`. Each cycle lists the branches and
tags of the app's source repository and the tags of each watched image repository (through the
mirrors the build uses). What a release would carry is the commit of a watched ref plus, for
each watched image, its highest tag within the constraint and that tag's digest: together, the
release's freight. For each watched ref that `source.allowedRefs` lets a release build, it asks
Prefect for a run of `release/conveyor` of that ref, with those image tags (`images`, which the
bundle pins for every stage), under an idempotency key made of the freight
(`conveyor-watch/<app>/<ref>/<commit>[/<images hash>]`): the server creates that run once,
whichever watcher or cycle asks first, and answers every later request with the same run. So a
new commit, a new matching tag, or a watched tag moved to another digest starts one release,
and nothing else does. A run this cycle created is announced as the Prefect event
`conveyor.source.updated` (resource `conveyor.app.<app>`; ref, commit, images) for automations of
one's own, and tagged with its trigger in the UI.

A repository that cannot be read, an image with no tag in its constraint, or a watched ref a
release may not build, is reported on the watch's run, which then ends Failed naming it; when an
image cannot be looked at, no release starts that cycle (it would run other images). The
schedule goes on and the next cycle tries again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from prefect import flow, get_run_logger
from prefect.deployments.flow_runs import arun_deployment

from conveyor.adapters import gitrepo
from conveyor.adapters.image_registry import ImageRegistries
from conveyor.adapters.prefect_api import RELEASE, SERVED_DEPLOYMENT, WATCH_SOURCE
from conveyor.bundles import artifact
from conveyor.bundles.images import parse_reference
from conveyor.config.model import ImageWatch
from conveyor.errors import ConfigError, ConveyorError, InputError
from flows.context import run_context
from tasks import reports

ImageChoice = tuple[str, str]
"""A watched image's highest tag within its constraint, and that tag's digest."""


def idempotency_key(app: str, ref: str, commit: str, images: Mapping[str, ImageChoice]) -> str:
    key = f"conveyor-watch/{app}/{ref}/{commit}"
    if images:
        chosen = sorted((repository, *choice) for repository, choice in images.items())
        key += "/" + hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16]
    return key


def newest_images(
    watches: Sequence[ImageWatch], registries: ImageRegistries
) -> dict[str, ImageChoice]:
    """For each watched repository, its highest tag within the constraint and the digest."""
    chosen: dict[str, ImageChoice] = {}
    for watch in watches:
        reference = parse_reference(watch.repository)
        tags = registries.tags(reference.registry, reference.path)
        tag = watch.constraint.highest(tags)
        if tag is None:
            raise InputError(
                f"image {watch.repository}: none of its {len(tags)} tags is within "
                f"{watch.constraint.text!r}",
                hint="push a tag within the constraint, or widen source.watch.images[].semver",
            )
        chosen[watch.repository] = (tag, registries.digest(reference.registry, reference.path, tag))
    return chosen


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
    registries = artifact.image_registries(context.store)  # as the build asks them
    images = await asyncio.to_thread(newest_images, source.watch.images, registries)
    image_tags = {repository: tag for repository, (tag, _) in images.items()}
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
            parameters={"app": app, "ref": ref, **({"images": image_tags} if images else {})},
            timeout=0,
            as_subflow=False,
            idempotency_key=idempotency_key(app, ref, commit, images),
            tags=[
                "conveyor",
                "conveyor-watch",
                f"trigger:{ref}@{commit[:12]}",
                *(f"image:{repository}:{tag}" for repository, tag in image_tags.items()),
            ],
        )
        if run.created is not None and run.created >= began:
            started.append(run.name)
            logger.info(
                "%s: %s at %s%s is new: started %s",
                app,
                ref,
                commit[:12],
                "".join(f", {r}:{t}" for r, t in image_tags.items()),
                run.name,
            )
            reports.announce(
                "source.updated",
                app=app,
                payload={
                    "ref": ref,
                    "commit": commit,
                    "images": {r: {"tag": t, "digest": d} for r, (t, d) in images.items()},
                    "flow_run": str(run.id),
                },
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
