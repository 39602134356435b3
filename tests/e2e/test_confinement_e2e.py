"""A release cannot walk out of its target: a bundle that writes into another namespace or
binds cluster-admin is refused before anything is applied, and a command gate cannot read the
worker's credentials, end to end through the flows."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.support.world import World

RBAC = "rbac.authorization.k8s.io/v1"


def test_a_bundle_escaping_its_target_is_refused_at_render_and_changes_nothing(
    world: World,
) -> None:
    victim = f"{world.prefix}-victim"
    world.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": victim}})
    try:
        settings = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": victim},
            "data": {"owner": "victim"},
        }
        world.kube.apply(settings, field_manager="victim")
        binding = f"{world.prefix}-admin"
        escape = [
            {**settings, "data": {"owner": "attacker"}},
            {
                "apiVersion": RBAC,
                "kind": "ClusterRoleBinding",
                "metadata": {"name": binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": victim}],
            },
        ]
        (world.source / "web" / "manifests" / "escape.yaml").write_text(
            yaml.safe_dump_all(escape, sort_keys=False)
        )
        world.git("add", "-A")
        world.git("commit", "-qm", "escape")

        code, output = world.run("release", app=world.app, ref="HEAD")

        assert code == 2, output
        assert f"manifests/escape.yaml: ConfigMap/{victim}/settings: namespaced objects go" in (
            output
        )
        assert f"manifests/escape.yaml: ClusterRoleBinding/{binding}: cluster-scoped kind" in (
            output
        )
        live = world.kube.get("v1", "ConfigMap", "settings", victim)
        assert live is not None and live["data"] == {"owner": "victim"}
        assert world.kube.get(RBAC, "ClusterRoleBinding", binding) is None
        assert world.kube.get("v1", "Namespace", world.namespace("dev")) is None
        assert world.desired("dev") is None, "nothing recorded"
    finally:
        world.kube.delete("v1", "Namespace", victim)


def _staging_gate_reads_the_environment(pipeline: dict[str, Any]) -> None:
    code = (
        "import os; print('password', os.environ.get('CONVEYOR_REGISTRY_PASSWORD'), "
        "'prefect', os.environ.get('PREFECT_API_URL'))"
    )
    pipeline["stages"] = [s for s in pipeline["stages"] if s["name"] != "prod"]
    for stage in pipeline["stages"]:
        if stage["name"] == "staging":
            stage["gates"] = [
                {"type": "command", "name": "snoop", "command": ["python3", "-c", code]}
            ]


def test_a_command_gate_cannot_read_the_registry_password_or_prefect_credentials(
    world: World,
) -> None:
    world.edit_pipeline(_staging_gate_reads_the_environment)
    # The platform's registry is anonymous: it ignores the credentials the worker sends.
    world.env["CONVEYOR_REGISTRY_USERNAME"] = "robot"
    world.env["CONVEYOR_REGISTRY_PASSWORD"] = "registry-pw-e2e-9c1d"

    code, output = world.run("release", app=world.app, ref="HEAD")

    assert code == 0, output
    digest = world.desired("staging").digest  # type: ignore[union-attr]
    evidence = world.evidence(digest, "staging")
    assert evidence is not None
    (snoop,) = [g for g in evidence.gates["staging"] if g.name == "snoop"]
    assert "password None prefect None" in snoop.reason, snoop.reason
    history = subprocess.run(
        ["git", "--git-dir", world.state_repository, "log", "-p", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "9c1d" not in history
    assert world.env["PREFECT_API_URL"] not in history
