"""Server-side apply, ordering, inventory and prune, drift, conflicts, on the real cluster."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.kube import ApplyConflict, Kube
from conveyor.cluster import apply, drift
from conveyor.cluster.ordering import APP_LABEL, DIGEST_ANNOTATION, MANAGED_BY
from conveyor.errors import InputError
from conveyor.platform.local import LocalPlatform
from tests.support.manifests import deployment

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def kube(platform: LocalPlatform) -> Kube:
    return Kube(platform.kubernetes.kubeconfig)


def _kubectl(platform: LocalPlatform, *args: str) -> str:
    result = subprocess.run(
        [
            str(platform.kubernetes.kubectl()),
            "--kubeconfig",
            str(platform.kubernetes.kubeconfig),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _crd(group: str, kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A namespaced CustomResourceDefinition of `kind` in `group`, served and stored as v1."""
    singular = kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{singular}s.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": f"{singular}s", "singular": singular, "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _target(namespace: str, **kwargs: Any) -> apply.Placement:
    return apply.Placement(app="web", target="dev", namespace=namespace, **kwargs)


def test_objects_are_applied_labelled_and_recorded(kube: Kube, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    objects = [deployment("web", 2), service, _configmap("web-config", greeting="hi")]

    report = apply.apply_bundle(kube, objects, _target(namespace), digest=DIGEST)

    assert [str(ref) for ref in report.applied] == [
        f"ConfigMap/{namespace}/web-config",
        f"Deployment/{namespace}/web",
        f"Service/{namespace}/web",
    ], "configuration first, then workloads"
    live = kube.get("apps/v1", "Deployment", "web", namespace)
    assert live is not None
    assert live["metadata"]["labels"][MANAGED_BY] == "conveyor"
    assert live["metadata"]["labels"][APP_LABEL] == "web"
    assert live["metadata"]["annotations"][DIGEST_ANNOTATION] == DIGEST
    managers = {entry["manager"] for entry in live["metadata"]["managedFields"]}
    assert "conveyor" in managers
    inventory = apply.read_inventory(kube, _target(namespace))
    assert sorted(map(str, inventory)) == sorted(map(str, report.applied))


def test_a_crd_and_its_custom_resource_apply_in_one_bundle(kube: Kube, namespace: str) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.conveyor.dev"
    crd = _crd(
        group,
        "Widget",
        {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
        },
    )
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    try:
        # The custom resource comes first in the bundle; ordering must still put the CRD first.
        report = apply.apply_bundle(kube, [widget, crd], _target(namespace), digest=DIGEST)
        assert [ref.kind for ref in report.applied] == ["CustomResourceDefinition", "Widget"]
        live = kube.get(f"{group}/v1", "Widget", "w1", namespace)
        assert live is not None and live["spec"]["size"] == 3
    finally:
        kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}")


def test_prune_skips_a_custom_resource_whose_crd_was_deleted_out_of_band(
    kube: Kube, namespace: str, platform: LocalPlatform
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.conveyor.dev"
    crd = _crd(group, "Gadget", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    gadget = {"apiVersion": f"{group}/v1", "kind": "Gadget", "metadata": {"name": "g1"}}
    target = _target(namespace)
    apply.apply_bundle(kube, [crd, gadget, _configmap("keep")], target, digest=DIGEST)
    kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"gadgets.{group}")
    deadline = time.monotonic() + 60
    while kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"gadgets.{group}"):
        assert time.monotonic() < deadline, "the CRD was not deleted within 60s"
        time.sleep(0.2)

    # A new process (fresh discovery) no longer finds the kind: the bundle without the CRD and
    # its resource still applies, prunes what it can and narrows the inventory.
    fresh = Kube(platform.kubernetes.kubeconfig)
    assert fresh.get(f"{group}/v1", "Gadget", "g1", namespace) is None
    assert not fresh.delete(f"{group}/v1", "Gadget", "g1", namespace)
    apply.apply_bundle(fresh, [_configmap("keep")], target, digest=DIGEST)
    assert [ref.name for ref in apply.read_inventory(fresh, target)] == ["keep"]


def test_prune_removes_what_the_bundle_dropped_and_nothing_else(kube: Kube, namespace: str) -> None:
    target = _target(namespace)
    apply.apply_bundle(
        kube, [_configmap("keep"), _configmap("drop"), _configmap("adopted")], target, digest=DIGEST
    )
    kube.apply(
        {**_configmap("unrelated"), "metadata": {"name": "unrelated", "namespace": namespace}},
        field_manager="someone-else",
    )
    # Somebody took "adopted" over: it no longer carries our labels, so we must not delete it.
    kube.apply(
        {
            **_configmap("adopted"),
            "metadata": {
                "name": "adopted",
                "namespace": namespace,
                "labels": {MANAGED_BY: "someone-else"},
            },
        },
        field_manager="conveyor",
        force=True,
    )

    report = apply.apply_bundle(kube, [_configmap("keep")], target, digest=DIGEST)

    assert sorted(str(ref) for ref in report.pruned) == [f"ConfigMap/{namespace}/drop"]
    assert kube.get("v1", "ConfigMap", "drop", namespace) is None
    for survivor in ("keep", "unrelated", "adopted"):
        assert kube.get("v1", "ConfigMap", survivor, namespace) is not None, survivor
    assert [ref.name for ref in apply.read_inventory(kube, target)] == ["keep"]


def test_dry_run_changes_nothing(kube: Kube, namespace: str) -> None:
    target = _target(namespace)
    apply.apply_bundle(kube, [_configmap("a", v="1")], target, digest=DIGEST)

    report = apply.apply_bundle(
        kube, [_configmap("a", v="2"), _configmap("b")], target, digest=DIGEST, dry_run=True
    )

    assert report.live[report.applied[0]]["data"] == {"v": "2"}, "the server's would-be object"
    live = kube.get("v1", "ConfigMap", "a", namespace)
    assert live is not None and live["data"] == {"v": "1"}
    assert kube.get("v1", "ConfigMap", "b", namespace) is None
    assert [ref.name for ref in apply.read_inventory(kube, target)] == ["a"]


def test_out_of_band_changes_are_reported_as_drift_and_corrected(
    platform: LocalPlatform, kube: Kube, namespace: str
) -> None:
    target = _target(namespace)
    objects = [deployment("web", 2), _configmap("web-config", greeting="hi")]
    apply.apply_bundle(kube, objects, target, digest=DIGEST)
    desired = apply.prepare(kube, objects, target, DIGEST)
    assert drift.detect(kube, desired, app="web", target="dev") == []

    _kubectl(platform, "-n", namespace, "scale", "deployment/web", "--replicas=5")
    _kubectl(platform, "-n", namespace, "delete", "configmap/web-config")
    found = {str(d.ref): d for d in drift.detect(kube, desired, app="web", target="dev")}

    assert found[f"ConfigMap/{namespace}/web-config"].missing
    scaled = found[f"Deployment/{namespace}/web"]
    assert [(f.path, f.desired, f.live) for f in scaled.fields] == [("spec.replicas", 2, 5)]

    apply.apply_bundle(
        kube, objects, apply.Placement("web", "dev", namespace, force_conflicts=True), digest=DIGEST
    )
    assert drift.detect(kube, desired, app="web", target="dev") == []
    live = kube.get("apps/v1", "Deployment", "web", namespace)
    assert live is not None and live["spec"]["replicas"] == 2


def test_a_conflict_with_another_manager_names_the_field_and_the_manager(
    platform: LocalPlatform, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n  namespace: {namespace}\n"
        "data:\n  mode: manual\n"
    )
    _kubectl(platform, "apply", "--server-side", "--field-manager", "ops-team", "-f", str(manifest))

    with pytest.raises(ApplyConflict) as caught:
        apply.apply_bundle(
            kube, [_configmap("shared", mode="auto")], _target(namespace), digest=DIGEST
        )
    assert ".data.mode" in str(caught.value)
    assert "ops-team" in str(caught.value)
    live = kube.get("v1", "ConfigMap", "shared", namespace)
    assert live is not None and live["data"]["mode"] == "manual"

    apply.apply_bundle(
        kube,
        [_configmap("shared", mode="auto")],
        _target(namespace, force_conflicts=True),
        digest=DIGEST,
    )
    live = kube.get("v1", "ConfigMap", "shared", namespace)
    assert live is not None and live["data"]["mode"] == "auto"


def test_an_unknown_field_is_refused_naming_it(kube: Kube, namespace: str) -> None:
    typo = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "typo"},
        "dta": {"greeting": "hi"},
    }
    with pytest.raises(InputError) as caught:
        apply.apply_bundle(kube, [typo], _target(namespace), digest=DIGEST)
    assert f"ConfigMap/{namespace}/typo" in str(caught.value)
    assert ".dta: field not declared in schema" in str(caught.value)
    assert kube.get("v1", "ConfigMap", "typo", namespace) is None
