"""Tasks that tell people and automations what happened: artifacts and events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event


@task(name="publish-report", cache_policy=NO_CACHE)
async def publish_report(key: str, markdown: str, description: str) -> None:
    """A markdown artifact, kept under `key` so the UI shows its history."""
    await acreate_markdown_artifact(markdown=markdown, key=key, description=description)


@task(name="publish-table", cache_policy=NO_CACHE)
async def publish_table(key: str, rows: Sequence[Mapping[str, Any]], description: str) -> None:
    await acreate_table_artifact(
        table=[dict(row) for row in rows], key=key, description=description
    )


def announce(
    event: str,
    *,
    app: str,
    target: str | None = None,
    stage: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> None:
    """Emit `conveyor.<event>` about an app (and target), for Prefect automations."""
    resource = {
        "prefect.resource.id": f"conveyor.app.{app}" + (f".{target}" if target else ""),
        "prefect.resource.name": f"{app}/{target}" if target else app,
        "conveyor.app": app,
    }
    if target:
        resource["conveyor.target"] = target
    if stage:
        resource["conveyor.stage"] = stage
    emit_event(event=f"conveyor.{event}", resource=resource, payload=dict(payload or {}))
