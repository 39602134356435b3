"""The lint corpus built as users build it: `conveyor bundle build` from git into an OCI layout.

tests/fixtures/corpus holds real-world manifests (no finding expected), true findings, and a
bundle that accepts findings in bundle.yaml. Each is committed to a git repository and built by
the real command line, so lint runs with the environment names given on it, as in a pipeline
with targets dev, test, staging, prod-eu and prod-us; `bundle inspect` then shows what was
accepted, with its reason, verbatim.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.platform.local import LocalPlatform
from tests.support.git import git

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
CLI = [sys.executable, "-c", "from conveyor.cli import main; main()"]
ENVIRONMENTS = ("dev", "test", "staging", "prod", "prod-eu", "prod-us")


def conveyor(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; a wide terminal, so that table rows are not wrapped."""
    env = {key: value for key, value in os.environ.items() if key != "CONVEYOR_STORE"}
    env["COLUMNS"] = "300"
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def build(repo: Path, folder: str, store: str) -> subprocess.CompletedProcess[str]:
    names = [argument for name in ENVIRONMENTS for argument in ("--env-name", name)]
    return conveyor(
        "bundle", "build", str(repo), "--path", folder, "--store", store, *names, "-o", "json"
    )


def succeeded(run: subprocess.CompletedProcess[str]) -> Any:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    return json.loads(run.stdout) if run.stdout.startswith("{") else run.stdout


@pytest.fixture
def repo(tmp_path: Path, platform: LocalPlatform) -> Path:
    """A git repository holding each corpus folder under its own name (its builds pin the
    images the fixtures name through the platform's registry)."""
    root = tmp_path / "repo"
    shutil.copytree(CORPUS, root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "corpus")
    return root


def test_the_real_world_corpus_builds_with_no_finding(repo: Path, tmp_path: Path) -> None:
    store = f"oci:{tmp_path / 'layout'}"

    built = succeeded(build(repo, "real-world", store))

    assert built["reused"] is False and built["name"] == "rocket"
    shown = succeeded(conveyor("bundle", "inspect", built["digest"], "-s", store, "-o", "json"))
    assert shown["accepted_findings"] == []


def test_true_findings_stop_the_build_naming_file_line_and_path(repo: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"

    refused = build(repo, "true-findings", f"oci:{layout}")

    assert refused.returncode == 2, refused.stderr
    assert refused.stdout == ""
    assert "3 lint finding(s)" in refused.stderr
    for line in (
        "manifests/deployment.yaml:5: metadata.namespace: 'prod' hard-codes",
        "manifests/deployment.yaml:20: spec.template.spec.containers[0].env[0].value: 'prod'",
        "manifests/ingress.yaml:10: spec.rules[0].host: 'api.staging.example.com' hard-codes",
    ):
        assert line in refused.stderr
    assert "lint.accept" in refused.stderr, "the hint says how to accept a finding"
    assert not layout.exists() or not list(layout.rglob("blobs/sha256/*"))


def test_accepted_findings_build_and_inspect_lists_them_with_their_reasons(
    repo: Path, tmp_path: Path
) -> None:
    store = f"oci:{tmp_path / 'layout'}"

    built = succeeded(build(repo, "accepted", store))

    shown = succeeded(conveyor("bundle", "inspect", built["digest"], "-s", store, "-o", "json"))
    assert [(a["rule"], a["file"], a["path"]) for a in shown["accepted_findings"]] == [
        ("environment-name", "manifests/helm-ledger-tests.yaml", "metadata.name"),
        (
            "environment-name",
            "manifests/helm-ledger-tests.yaml",
            'metadata.annotations["helm.sh/hook"]',
        ),
        ("environment-name", "manifests/issuer.yaml", "spec.acme.server"),
    ]
    assert shown["accepted_findings"][1]["reason"] == "Helm's hook type, not an environment"
    table = succeeded(conveyor("bundle", "inspect", built["digest"], "-s", store))
    assert 'metadata.annotations["helm.sh/hook"]' in table
    assert "Helm's hook type, not an environment" in table


def test_an_acceptance_that_no_longer_matches_stops_the_build(repo: Path, tmp_path: Path) -> None:
    issuer = repo / "accepted" / "manifests" / "issuer.yaml"
    issuer.write_text(issuer.read_text().replace("acme-staging-v02", "acme-v02"))
    git(repo, "commit", "-qam", "use the production CA")

    refused = build(repo, "accepted", f"oci:{tmp_path / 'layout'}")

    assert refused.returncode == 2, refused.stderr
    assert (
        "accepted/bundle.yaml:14: lint.accept[2]: matches no environment-name finding in "
        "manifests/issuer.yaml at spec.acme.server" in refused.stderr
    )
    assert "[unused-accept]" in refused.stderr
