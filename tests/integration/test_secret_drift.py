"""A Secret written with `stringData`, applied for real: drift compares it as the API server
stores it (`data`, base64) and never shows its values, only their short hashes."""

from __future__ import annotations

import base64
import subprocess
import uuid
from typing import Any

import pytest

from conveyor.adapters.kube import Kube
from conveyor.cluster import apply, drift
from conveyor.platform.local import LocalPlatform

DIGEST = "sha256:" + "cd" * 32


@pytest.fixture(scope="module")
def kube(platform: LocalPlatform) -> Kube:
    return Kube(platform.kubernetes.kubeconfig)


def _secret(password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-credentials"},
        "type": "Opaque",
        "data": {"user": base64.b64encode(b"admin").decode()},
        "stringData": {"password": password},
    }


def _everything_shown(drifts: list[drift.ObjectDrift]) -> str:
    return "\n".join(
        [d.describe() for d in drifts]
        + [str(row) for d in drifts for row in d.rows()]
        + [str(d.as_dict()) for d in drifts]
    )


def test_a_secret_with_string_data_shows_no_drift_and_never_its_value(
    platform: LocalPlatform, kube: Kube, namespace: str
) -> None:
    password = f"hunter2-{uuid.uuid4().hex[:8]}"
    placement = apply.Placement(app="web", target="dev", namespace=namespace)
    objects = [_secret(password)]
    apply.apply_bundle(kube, objects, placement, digest=DIGEST)
    desired = apply.prepare(kube, objects, placement, DIGEST)

    assert drift.detect(kube, desired, app="web", target="dev") == []

    changed = base64.b64encode(b"changed-out-of-band").decode()
    subprocess.run(
        [
            str(platform.kubernetes.kubectl()),
            "--kubeconfig",
            str(platform.kubernetes.kubeconfig),
            "-n",
            namespace,
            "patch",
            "secret/web-credentials",
            "-p",
            f'{{"data": {{"password": "{changed}"}}}}',
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    found = drift.detect(kube, desired, app="web", target="dev")

    assert [f.path for d in found for f in d.fields] == ["data.password"]
    shown = _everything_shown(found)
    for secret in (password, base64.b64encode(password.encode()).decode(), changed):
        assert secret not in shown
    assert shown.count("scrypt:") >= 2, shown
