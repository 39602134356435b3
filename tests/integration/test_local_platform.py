"""The local platform's parts are real: scheduler and controllers, a registry, a Prefect server."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from kubernetes import client, watch

from conveyor.adapters.kube import Kube
from conveyor.adapters.prefect_api import CRASH_AUTOMATION, SILENCE_SECONDS
from conveyor.errors import InfrastructureError
from conveyor.platform.local import LocalPlatform
from tests.support.prefect import PrefectREST


def _deployment(name: str, replicas: int, node_selector: dict[str, str] | None = None) -> Any:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            progress_deadline_seconds=600,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="example.invalid/app:1")],
                    node_selector=node_selector,
                ),
            ),
        ),
    )


def _watch_deployment(kube_api: Any, namespace: str, name: str, until: Any, timeout: int) -> Any:
    """Return the Deployment once `until(deployment)` holds; read first, then watch from there."""
    apps = client.AppsV1Api(kube_api)
    current = apps.read_namespaced_deployment(name, namespace)
    if until(current):
        return current
    stream = watch.Watch().stream(
        apps.list_namespaced_deployment,
        namespace,
        field_selector=f"metadata.name={name}",
        resource_version=current.metadata.resource_version,
        timeout_seconds=timeout,
    )
    for event in stream:
        if until(event["object"]):
            return event["object"]
    raise AssertionError(f"deployment {namespace}/{name} did not reach the condition in {timeout}s")


def test_deployment_rolls_out_on_simulated_nodes(
    platform: LocalPlatform, kube_api: Any, namespace: str
) -> None:
    client.AppsV1Api(kube_api).create_namespaced_deployment(namespace, _deployment("web", 3))

    ready = _watch_deployment(
        kube_api, namespace, "web", lambda d: (d.status.available_replicas or 0) == 3, timeout=90
    )
    assert ready.status.ready_replicas == 3

    rollout = subprocess.run(
        [
            str(platform.kubernetes.kubectl()),
            "--kubeconfig",
            str(platform.kubernetes.kubeconfig),
            "-n",
            namespace,
            "rollout",
            "status",
            "deployment/web",
            "--timeout=60s",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert rollout.returncode == 0, rollout.stderr
    assert "successfully rolled out" in rollout.stdout
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector="app=web")
    assert len(pods.items) == 3
    assert all(pod.spec.node_name for pod in pods.items), "every pod is bound to a node"


def test_unschedulable_deployment_stays_unavailable(kube_api: Any, namespace: str) -> None:
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(
        namespace, _deployment("stuck", 2, node_selector={"conveyor.test/no-such-node": "true"})
    )
    core = client.CoreV1Api(kube_api)
    deadline = time.monotonic() + 60
    unschedulable: list[str] = []
    while time.monotonic() < deadline and len(unschedulable) < 2:
        pods = core.list_namespaced_pod(namespace, label_selector="app=stuck").items
        unschedulable = [
            pod.metadata.name
            for pod in pods
            for cond in pod.status.conditions or []
            if cond.type == "PodScheduled"
            and cond.status == "False"
            and cond.reason == "Unschedulable"
        ]
        time.sleep(0.5)
    assert len(unschedulable) == 2, "the scheduler reports both pods Unschedulable"
    status = apps.read_namespaced_deployment("stuck", namespace).status
    assert not status.available_replicas
    assert all(pod.status.phase == "Pending" for pod in core.list_namespaced_pod(namespace).items)


def test_registry_returns_a_pushed_blob_by_digest(registry_repo: str) -> None:
    address, repository = registry_repo.split("/", 1)
    blob = os.urandom(64 * 1024)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()

    start = urllib.request.Request(
        f"http://{address}/v2/{repository}/blobs/uploads/", method="POST"
    )
    with urllib.request.urlopen(start, timeout=10) as response:
        assert response.status == 202
        location = response.headers["Location"]
    upload_url = location if location.startswith("http") else f"http://{address}{location}"
    separator = "&" if "?" in upload_url else "?"
    put = urllib.request.Request(
        f"{upload_url}{separator}digest={digest}",
        data=blob,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(put, timeout=10) as response:
        assert response.status == 201
        assert response.headers["Docker-Content-Digest"] == digest

    with urllib.request.urlopen(
        f"http://{address}/v2/{repository}/blobs/{digest}", timeout=10
    ) as r:
        assert r.read() == blob


def test_flow_run_completes_on_the_prefect_server(platform: LocalPlatform, tmp_path: Any) -> None:
    marker = uuid.uuid4().hex
    script = tmp_path / "flow.py"
    script.write_text(
        textwrap.dedent(f"""
        from prefect import flow, task

        @task
        def double(x: int) -> int:
            return 2 * x

        @flow(name="platform-check", flow_run_name="check-{marker}")
        def check() -> int:
            return double(21)

        assert check() == 42
    """)
    )
    environment = dict(os.environ, **platform.prefect.environment())
    run = subprocess.run(
        [sys.executable, str(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]

    runs = PrefectREST(platform.prefect.api_url, auth_string=platform.prefect.auth_string()).post(
        "/flow_runs/filter", {"flow_runs": {"name": {"any_": [f"check-{marker}"]}}}
    )
    assert [r["state_type"] for r in runs] == ["COMPLETED"]


def test_the_prefect_server_has_conveyors_crash_automation_once(platform: LocalPlatform) -> None:
    platform.prefect.up()  # again: the automation is brought back to shape, not duplicated
    api = PrefectREST(platform.prefect.api_url, auth_string=platform.prefect.auth_string())
    found = api.post("/automations/filter", {"automations": {"name": {"any_": [CRASH_AUTOMATION]}}})
    assert len(found) == 1
    trigger = found[0]["trigger"]
    assert (trigger["posture"], trigger["within"]) == ("Proactive", SILENCE_SECONDS)
    assert trigger["after"] == ["prefect.flow-run.heartbeat"]
    assert found[0]["actions"][0]["state"] == "CRASHED"


def test_the_prefect_api_answers_only_with_the_platforms_credential(
    platform: LocalPlatform,
) -> None:
    """Anyone on the machine could otherwise create a run of any deployment (a promotion to
    prod) through the local Prefect API. The health probe stays open."""
    prefect = platform.prefect
    assert stat.S_IMODE(prefect.auth_file.stat().st_mode) == 0o600
    url = f"{prefect.api_url}/flow_runs/filter"
    anonymous = urllib.request.Request(url, data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(anonymous, timeout=10)
    assert refused.value.code == 401
    wrong = PrefectREST(prefect.api_url, auth_string="conveyor:guessed")
    with pytest.raises(InfrastructureError, match="401"):
        wrong.post("/flow_runs/filter", {"limit": 1})
    assert isinstance(prefect.api().flow_runs(tags=["none"], states=["RUNNING"]), list)
    with urllib.request.urlopen(f"{prefect.api_url}/health", timeout=10) as health:
        assert health.status == 200


def test_the_platform_runs_two_separate_clusters(platform: LocalPlatform) -> None:
    first, second = platform.clusters
    healths = [cluster.health() for cluster in (first, second)]
    assert all(health.healthy for health in healths), healths
    assert (first.name, second.name) == ("kubernetes", "kubernetes-2")
    assert first.server() != second.server()
    assert platform.environment()["CONVEYOR_KUBECONFIG_2"] == str(second.kubeconfig)
    name = f"only-on-two-{uuid.uuid4().hex[:6]}"
    only_second, only_first = Kube(second.kubeconfig), Kube(first.kubeconfig)
    only_second.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        assert only_second.get("v1", "Namespace", name) is not None
        assert only_first.get("v1", "Namespace", name) is None, "its own etcd and API server"
        nodes, _ = only_second.list("v1", "Node")
        assert len(nodes) == 2, "simulated nodes of its own"
    finally:
        only_second.delete("v1", "Namespace", name)
