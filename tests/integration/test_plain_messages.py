"""User text is printed as written: no Rich markup, no emoji codes, in the CLI and in flow logs.

A folder named `ledger` shows up as `...:ledger: ...` in messages, which Rich turns into an emoji
by default; `[bold]` would be read as a style. These tests put such text through the two places
people read it: a flow run's log (its console output and its records on the Prefect server) and
the `conveyor` command's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from conveyor.platform.local import LocalPlatform
from tests.support.git import init_repository
from tests.support.prefect import PrefectREST

REPO_ROOT = Path(__file__).resolve().parents[2]

EMOJI = ("📒", "🚀", "❌")


def test_a_flow_runs_log_keeps_emoji_codes_and_brackets(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    folder = tmp_path / ":ledger:" / "[bold]team[/bold] :x:"
    folder.mkdir(parents=True)
    config = folder / "conveyor.yaml"  # missing on purpose: the run fails naming this path
    app = f"rocket-{uuid.uuid4().hex[:6]}"
    environment = {
        **os.environ,
        **platform.prefect.environment(),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "CONVEYOR_CONFIG": str(config),
    }
    parameters = {"app": app, "ref": "main"}
    finished = subprocess.run(
        [sys.executable, "-m", "flows", "release", json.dumps(parameters)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode != 0, finished.stderr
    console = finished.stdout + finished.stderr
    assert str(config) in console, console
    assert not any(emoji in console for emoji in EMOJI), console

    api = PrefectREST(platform.prefect.api_url, auth_string=platform.prefect.auth_string())
    runs = api.post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [f"release-{app}-main"]}}})
    assert len(runs) == 1, runs
    messages = "\n".join(entry["message"] for entry in api.logs(runs[0]["id"], 0))
    assert str(config) in messages, messages
    assert not any(emoji in messages for emoji in EMOJI), messages


def test_the_cli_prints_emoji_codes_and_brackets_as_written(
    platform: LocalPlatform, tmp_path: Path
) -> None:  # the platform's registry serves the example's images the build pins
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "examples" / "web", repo / "ledger")
    bundle = repo / "ledger" / "bundle.yaml"
    bundle.write_text(
        bundle.read_text().replace("Pods of the web Deployment.", "'[bold]pods[/bold] :x:'")
    )
    init_repository(repo, "ledger v1")
    store = f"oci:{tmp_path / ':rocket:'}"

    built = _conveyor("bundle", "build", str(repo), "--path", "ledger", "--store", store)
    assert built.returncode == 0, built.stderr
    assert f"{tmp_path / ':rocket:'}\n" in built.stdout, built.stdout
    digest = built.stdout.split()[1]

    inspected = _conveyor("bundle", "inspect", digest, "--store", store)
    assert inspected.returncode == 0, inspected.stderr
    assert "[bold]pods[/bold] :x:" in inspected.stdout, inspected.stdout
    for output in (built.stdout, built.stderr, inspected.stdout):
        assert not any(emoji in output for emoji in EMOJI), output


def _conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "CONVEYOR_STORE"}
    return subprocess.run(
        [sys.executable, "-c", "from conveyor.cli import main; main()", *args],
        env={**environment, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_platform_status_shows_health_as_words_not_markup(platform: LocalPlatform) -> None:
    shown = _conveyor("platform", "status")
    assert shown.returncode == 0, shown.stderr
    assert "[green]" not in shown.stdout and "[/]" not in shown.stdout, shown.stdout
    assert shown.stdout.count("healthy") == len(platform.components), shown.stdout
