"""Readiness of custom resources through the real apply and wait, on the local cluster.

A CRD and a custom resource of it that no controller ever writes a status for must be ready as
soon as they are applied (they used to wait the whole 300 s timeout, then fail); a custom
resource whose status says Ready=False with a failure reason fails at once with its message; a
CEL health rule decides a kind that reports neither conditions nor a phase.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.adapters.kube import Kube
from conveyor.bundles.render import Rendered
from conveyor.cluster.health import State
from conveyor.cluster.health_rules import HealthRule, HealthRules
from conveyor.cluster.wait import describe_failure
from conveyor.platform.local import LocalPlatform
from conveyor.promotion import deploy

pytestmark = pytest.mark.platform

CRD_API = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


@pytest.fixture(scope="module")
def kube(platform: LocalPlatform) -> Kube:
    return Kube(platform.kubernetes.kubeconfig)


@pytest.fixture
def group(kube: Kube) -> Iterator[str]:
    """An API group no other test uses; the CRDs made in it are deleted afterwards."""
    name = f"r{uuid.uuid4().hex[:8]}.example.com"
    yield name
    for crd in kube.list(*CRD_API, None)[0]:
        if crd["spec"]["group"] == name:
            kube.delete(*CRD_API, crd["metadata"]["name"])


def _crd(group: str, kind: str) -> dict[str, Any]:
    """A namespaced CRD with a status subresource, its fields left open."""
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def _resource(group: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _rendered(namespace: str, objects: list[dict[str, Any]]) -> Rendered:
    return Rendered(
        app="readiness",
        target="dev",
        namespace=namespace,
        digest="sha256:" + "cd" * 32,
        parameters={},
        parameters_hash="",
        rendered_hash="",
        objects=objects,
        tests=[],
    )


def _set_status(
    kube_api: Any, group: str, kind: str, namespace: str, name: str, status: dict[str, Any]
) -> None:
    from kubernetes import client

    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        group, "v1", namespace, f"{kind.lower()}s", name, {"status": status}
    )


def test_a_custom_resource_without_status_is_ready_within_a_second_of_apply(
    kube: Kube, namespace: str, group: str
) -> None:
    monitor = _resource(group, "Monitor", "web", {"endpoints": [{"port": "http"}]})
    rendered = _rendered(namespace, [_crd(group, "Monitor"), monitor])

    applying = time.monotonic()
    deploy.apply_target(kube, rendered)
    applied = time.monotonic()
    result = deploy.wait_target(kube, rendered, timeout=30)
    ready_after = time.monotonic() - applied

    assert result.ready, describe_failure(result)
    assert result.states[f"Monitor/{namespace}/web"].reason == "Monitor has no status to wait for"
    assert ready_after < 1.0, f"ready {ready_after:.3f} s after apply, not within 1 s"
    print(
        f"\ncustom resource without status: apply {applied - applying:.3f} s, "
        f"apply-to-ready {ready_after:.3f} s (wait_ready {result.elapsed:.3f} s)"
    )


def test_a_custom_resource_reporting_ready_false_fails_with_its_message(
    kube: Kube, kube_api: Any, namespace: str, group: str
) -> None:
    rendered = _rendered(
        namespace, [_crd(group, "Database"), _resource(group, "Database", "orders", {})]
    )
    deploy.apply_target(kube, rendered)
    failing = {
        "type": "Ready",
        "status": "False",
        "reason": "ProvisioningFailed",
        "message": "quota exceeded: 0 of 10Gi left",
        "lastTransitionTime": "2026-12-02T20:00:00Z",
    }
    _set_status(kube_api, group, "Database", namespace, "orders", {"conditions": [failing]})

    result = deploy.wait_target(kube, rendered, timeout=30)

    verdict = result.states[f"Database/{namespace}/orders"]
    assert (verdict.state, verdict.reason) == (State.FAILED, "Ready=False: ProvisioningFailed")
    assert result.elapsed < 5, "failed at once, not at the 30 s deadline"
    assert (
        f"Database/{namespace}/orders: Ready=False: ProvisioningFailed "
        "(quota exceeded: 0 of 10Gi left)" in describe_failure(result)
    )


def test_a_cel_rule_decides_a_kind_without_conditions_or_phase(
    kube: Kube, kube_api: Any, namespace: str, group: str
) -> None:
    index = _resource(group, "Index", "products", {"shards": 3})
    rendered = _rendered(namespace, [_crd(group, "Index"), index])
    rules = HealthRules((HealthRule(f"{group}/v1", "Index", "status.readyShards == spec.shards"),))
    deploy.apply_target(kube, rendered)
    key = f"Index/{namespace}/products"

    no_status = deploy.wait_target(kube, rendered, timeout=1.5, rules=rules)
    _set_status(kube_api, group, "Index", namespace, "products", {"readyShards": 1})
    short = deploy.wait_target(kube, rendered, timeout=1.5, rules=rules)
    _set_status(kube_api, group, "Index", namespace, "products", {"readyShards": 3})
    ready = deploy.wait_target(kube, rendered, timeout=30, rules=rules)

    assert no_status.states[key].reason == "health check current: status not found yet"
    assert short.states[key].reason == (
        "health check current is not true yet: status.readyShards == spec.shards"
    )
    assert ready.ready, describe_failure(ready)
    assert ready.states[key].reason == (
        "health check current is true: status.readyShards == spec.shards"
    )
    without_rules = deploy.wait_target(kube, rendered, timeout=30)
    assert without_rules.states[key].reason == "Index reports no conditions to wait for"
