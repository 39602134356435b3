"""Secrets never reach the record: a Secret written with `stringData` and a parameter the schema
marks `writeOnly`, released to dev, are found nowhere in git, Prefect's logs, artifacts and
events, nor in the flow's output; the Secret shows no drift and the control loop re-renders the
recorded state with the configured secret."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import yaml

from tests.support.world import World

SECRET_MANIFEST = """\
apiVersion: v1
kind: Secret
metadata:
  name: web-credentials
type: Opaque
stringData:
  password: {password}
  apiToken: ${{apiToken}}
"""


def _give_the_app_secrets(world: World, password: str, token: str) -> None:
    bundle = world.source / "web" / "bundle.yaml"
    spec = yaml.safe_load(bundle.read_text())
    spec["allowPlaintextSecrets"] = True
    spec["parameters"]["properties"]["apiToken"] = {
        "type": "string",
        "writeOnly": True,
        "description": "The API token the app presents.",
    }
    bundle.write_text(yaml.safe_dump(spec, sort_keys=False))
    manifest = world.source / "web" / "manifests" / "secret.yaml"
    manifest.write_text(SECRET_MANIFEST.format(password=password))
    world.git("add", "-A")
    world.git("commit", "-qm", "web: credentials")
    world.set_parameter("dev", "apiToken", token)
    world.edit_pipeline(lambda p: p["stages"][0].update(autoPromote=False))


def _run_ids(world: World) -> list[str]:
    runs = world.api.post("/flow_runs/filter", {"flow_runs": {"name": {"like_": world.app}}})
    return [run["id"] for run in runs]


def _prefect_records(world: World, run_ids: list[str]) -> str:
    """Everything Prefect holds about the world's runs: logs, artifacts, runs and events."""
    logs = world.api.post("/logs/filter", {"logs": {"flow_run_id": {"any_": run_ids}}})
    artifacts = world.api.post(
        "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": run_ids}}}
    )
    runs = [world.api.flow_run_record(run_id) for run_id in run_ids]
    events = world.api.post(
        "/events/filter",
        {"filter": {"any_resource": {"id_prefix": [f"conveyor.app.{world.app}"]}}, "limit": 50},
    )
    assert logs and artifacts and events["events"], "the grep needs something to look in"
    return json.dumps([logs, artifacts, runs, events])


def test_secret_values_are_found_nowhere_and_do_not_drift(world: World) -> None:
    password = f"hunter2-{uuid.uuid4().hex[:10]}"
    token = f"tok-{uuid.uuid4().hex[:12]}"
    _give_the_app_secrets(world, password, token)

    code, output = world.run("release", app=world.app, ref="HEAD")

    assert code == 0, output
    live = world.live("Secret", "web-credentials", "dev")
    assert live is not None and set(live["data"]) == {"password", "apiToken"}
    recorded = world.desired("dev")
    assert recorded is not None and set(recorded.parameters["apiToken"]) == {"sensitive"}
    code, reconciled = world.run("reconcile", app=world.app, target="dev")
    state_history = subprocess.run(
        ["git", "-C", world.state_repository, "log", "-p", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = world.conveyor("status", world.app, "--output", "json")
    places = {
        "the state repository": state_history,
        "Prefect's logs, artifacts, runs and events": _prefect_records(world, _run_ids(world)),
        "the flows' output": output + reconciled,
        "conveyor status": status.stdout + status.stderr,
    }
    for value in (password, token):
        found = [place for place, text in places.items() if value in text]
        assert not found, f"{value} found in {', '.join(found)}"
    assert code == 0 and "live matches" in reconciled, reconciled
    assert status.returncode == 0, status.stderr
    rows: list[dict[str, Any]] = json.loads(status.stdout)
    assert [(row["target"], row["drift"]) for row in rows if row["digest"]] == [("dev", "none")]
