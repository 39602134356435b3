"""Server-side apply, ordering, inventory and prune, drift, conflicts, on the real cluster."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.kube import ApplyConflict, Kube
from conveyor.cluster import apply, drift
from conveyor.cluster.ordering import APP_LABEL, DIGEST_ANNOTATION, MANAGED_BY, TARGET_LABEL
from conveyor.errors import ConflictError, InputError
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
    assert "conveyor/web.dev" in managers, "the app's and target's own field manager"
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


# Cluster-scoped objects: one owner per cluster, the app, whichever of its targets applies them.


@pytest.fixture
def two_namespaces(kube: Kube) -> Iterator[tuple[str, str]]:
    """Two namespaces that do not exist yet (apply creates them), deleted afterwards."""
    names = (f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}")
    yield names
    for name in names:
        kube.delete("v1", "Namespace", name)


@pytest.fixture
def cluster_names(kube: Kube) -> Iterator[list[tuple[str, str, str]]]:
    """Cluster-scoped objects a test creates, as (apiVersion, kind, name): deleted afterwards."""
    created: list[tuple[str, str, str]] = []
    yield created
    for api_version, kind, name in created:
        kube.delete(api_version, kind, name)


def _cluster_role(name: str, verbs: tuple[str, ...] = ("get",)) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": list(verbs)}],
    }


def _cluster_crd(kind: str, cluster_names: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A namespaced CRD of `kind` in a group of its own, removed when the test ends."""
    group = f"t{uuid.uuid4().hex[:8]}.conveyor.dev"
    crd = _crd(group, kind, {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    cluster_names.append(
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{kind.lower()}s.{group}")
    )
    return crd


def _custom_resource(crd: dict[str, Any], name: str) -> dict[str, Any]:
    spec = crd["spec"]
    return {
        "apiVersion": f"{spec['group']}/v1",
        "kind": spec["names"]["kind"],
        "metadata": {"name": name},
        "spec": {"size": 1},
    }


def _labels(live: dict[str, Any] | None) -> dict[str, str]:
    assert live is not None, "the object is not there"
    return dict(live["metadata"].get("labels") or {})


def test_cluster_scoped_objects_carry_the_app_but_no_target_and_every_target_agrees(
    kube: Kube, two_namespaces: tuple[str, str], cluster_names: list[tuple[str, str, str]]
) -> None:
    role = _cluster_role(f"t-{uuid.uuid4().hex[:8]}")
    cluster_names.append(("rbac.authorization.k8s.io/v1", "ClusterRole", role["metadata"]["name"]))
    # As an older Conveyor left it: the target label of whichever target applied last.
    kube.apply(
        {**role, "metadata": {"name": role["metadata"]["name"], "labels": {TARGET_LABEL: "old"}}}
    )
    dev = apply.Placement("web", "dev", two_namespaces[0])
    test = apply.Placement("web", "test", two_namespaces[1])
    objects = [role, _configmap("web-config")]

    for placement in (dev, test, dev):
        apply.apply_bundle(kube, objects, placement, digest=DIGEST)

    labels = _labels(
        kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", role["metadata"]["name"])
    )
    assert labels[APP_LABEL] == "web" and labels[MANAGED_BY] == "conveyor"
    assert TARGET_LABEL not in labels, "server-side apply dropped the label it no longer sends"
    assert (
        _labels(kube.get("v1", "ConfigMap", "web-config", two_namespaces[1]))[TARGET_LABEL]
        == "test"
    )
    for placement in (dev, test):
        desired = apply.prepare(kube, objects, placement, DIGEST)
        assert drift.detect(kube, desired, app="web", target=placement.target) == [], placement
    version = kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", role["metadata"]["name"])
    apply.apply_bundle(kube, objects, test, digest=DIGEST)
    again = kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", role["metadata"]["name"])
    assert version is not None and again is not None
    assert again["metadata"]["resourceVersion"] == version["metadata"]["resourceVersion"]


def test_a_cluster_scoped_object_is_pruned_only_when_no_other_target_ships_it(
    kube: Kube, two_namespaces: tuple[str, str], cluster_names: list[tuple[str, str, str]]
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster_names.append(("rbac.authorization.k8s.io/v1", "ClusterRole", name))
    dev = apply.Placement("web", "dev", two_namespaces[0])
    test = apply.Placement("web", "test", two_namespaces[1])
    for placement in (dev, test):
        apply.apply_bundle(kube, [_cluster_role(name), _configmap("c")], placement, digest=DIGEST)

    # test applied last; an older Conveyor let the last one to apply prune it alone.
    kept = apply.apply_bundle(kube, [_configmap("c")], test, digest=DIGEST)
    assert kept.pruned == []
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", name) is not None, "dev ships it"

    pruned = apply.apply_bundle(kube, [_configmap("c")], dev, digest=DIGEST)
    assert [str(ref) for ref in pruned.pruned] == [f"ClusterRole/{name}"]
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", name) is None


def test_a_crd_is_never_pruned_unless_the_pipeline_opts_in(
    kube: Kube, namespace: str, cluster_names: list[tuple[str, str, str]]
) -> None:
    crd = _cluster_crd("Dial", cluster_names)
    crd_name = crd["metadata"]["name"]
    apply.apply_bundle(kube, [crd, _configmap("c")], _target(namespace), digest=DIGEST)

    report = apply.apply_bundle(kube, [_configmap("c")], _target(namespace), digest=DIGEST)

    assert report.pruned == []
    assert kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd_name) is not None
    assert [ref.name for ref in apply.read_inventory(kube, _target(namespace))] == ["c"]

    opted_in = _target(namespace, prune_definitions=True)
    apply.apply_bundle(kube, [crd, _configmap("c")], opted_in, digest=DIGEST)
    report = apply.apply_bundle(kube, [_configmap("c")], opted_in, digest=DIGEST)
    assert [str(ref) for ref in report.pruned] == [f"CustomResourceDefinition/{crd_name}"]


def test_pruning_a_crd_whose_custom_resources_exist_is_refused_before_any_change(
    kube: Kube, two_namespaces: tuple[str, str], cluster_names: list[tuple[str, str, str]]
) -> None:
    crd = _cluster_crd("Knob", cluster_names)
    crd_name = crd["metadata"]["name"]
    placement = apply.Placement("web", "dev", two_namespaces[0], prune_definitions=True)
    ours = _custom_resource(crd, "ours")
    apply.apply_bundle(kube, [crd, ours, _configmap("c")], placement, digest=DIGEST)
    somebody = {**_custom_resource(crd, "theirs")}
    somebody["metadata"] = {"name": "theirs", "namespace": two_namespaces[1]}
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": two_namespaces[1]}})
    kube.apply(somebody, field_manager="someone-else")

    with pytest.raises(ConflictError) as caught:
        apply.apply_bundle(
            kube, [_configmap("c", v="2"), _configmap("new")], placement, digest=DIGEST
        )

    assert caught.value.exit_code == 2
    assert f"CustomResourceDefinition/{crd_name}" in str(caught.value)
    assert "1 custom resource" in str(caught.value), "its own are pruned with it: not counted"
    assert kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd_name) is not None
    group_version = f"{crd['spec']['group']}/v1"
    assert kube.get(group_version, "Knob", "ours", two_namespaces[0]) is not None
    assert kube.get(group_version, "Knob", "theirs", two_namespaces[1]) is not None
    assert kube.get("v1", "ConfigMap", "new", two_namespaces[0]) is None, "nothing applied"
    live = kube.get("v1", "ConfigMap", "c", two_namespaces[0])
    assert live is not None and "v" not in (live.get("data") or {})


def test_two_apps_shipping_one_cluster_scoped_object_is_a_conflict_before_any_change(
    kube: Kube, two_namespaces: tuple[str, str], cluster_names: list[tuple[str, str, str]]
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster_names.append(("rbac.authorization.k8s.io/v1", "ClusterRole", name))
    apply.apply_bundle(
        kube, [_cluster_role(name)], apply.Placement("web", "dev", two_namespaces[0]), digest=DIGEST
    )

    with pytest.raises(ConflictError) as caught:
        apply.apply_bundle(
            kube,
            [_cluster_role(name, ("get", "list")), _configmap("api-config")],
            apply.Placement("api", "dev", two_namespaces[1]),
            digest=DIGEST,
        )

    message = str(caught.value)
    assert f"ClusterRole/{name}" in message and "'web'" in message and "'api'" in message
    live = kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", name)
    assert _labels(live)[APP_LABEL] == "web"
    assert live is not None and live["rules"][0]["verbs"] == ["get"]
    assert kube.get("v1", "Namespace", two_namespaces[1]) is None, "not even the namespace"


def test_apply_creates_the_target_namespace_and_prune_never_deletes_it(
    kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    own = two_namespaces[0]
    placement = apply.Placement("web", "dev", own, prune_definitions=True)
    shipped = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": own}}
    apply.apply_bundle(kube, [shipped, _configmap("c")], placement, digest=DIGEST)
    assert _labels(kube.get("v1", "Namespace", own))[MANAGED_BY] == "conveyor"

    report = apply.apply_bundle(kube, [_configmap("c")], placement, digest=DIGEST)

    assert report.pruned == []
    live = kube.get("v1", "Namespace", own)
    assert live is not None and "deletionTimestamp" not in live["metadata"]


# --- inventory names: unambiguous, and read under the old name until migrated -------------------


def test_placements_whose_old_inventory_names_collided_keep_separate_inventories(
    kube: Kube, namespace: str
) -> None:
    first = apply.Placement(app="a-b", target="c", namespace=namespace)
    second = apply.Placement(app="a", target="b-c", namespace=namespace)

    apply.apply_bundle(kube, [_configmap("first-a"), _configmap("first-b")], first, digest=DIGEST)
    apply.apply_bundle(kube, [_configmap("second-a")], second, digest=DIGEST)
    report = apply.apply_bundle(kube, [_configmap("first-a")], first, digest=DIGEST)

    assert [str(ref) for ref in report.pruned] == [f"ConfigMap/{namespace}/first-b"]
    assert [ref.name for ref in apply.read_inventory(kube, first)] == ["first-a"]
    assert [ref.name for ref in apply.read_inventory(kube, second)] == ["second-a"]
    assert kube.get("v1", "ConfigMap", "second-a", namespace) is not None


def _legacy_inventory(placement: apply.Placement, *names: str) -> dict[str, Any]:
    """The inventory as Conveyor wrote it before inventory names were unambiguous."""
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "namespace": placement.namespace, "name": n}
        for n in names
    ]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"conveyor-inventory-{placement.app}-{placement.target}",
            "namespace": placement.namespace,
            "labels": {MANAGED_BY: "conveyor", apply.INVENTORY_LABEL: "true"},
        },
        "data": {
            "app": placement.app,
            "target": placement.target,
            "digest": DIGEST,
            "objects": json.dumps(objects),
        },
    }


def test_an_inventory_under_the_old_name_still_prunes_and_is_migrated(
    kube: Kube, namespace: str
) -> None:
    target = _target(namespace)
    apply.apply_bundle(kube, [_configmap("keep"), _configmap("drop")], target, digest=DIGEST)
    # A cluster deployed before: its inventory carries the old name only.
    kube.delete("v1", "ConfigMap", target.inventory_name, namespace)
    kube.apply(_legacy_inventory(target, "keep", "drop"), force=True)

    assert sorted(ref.name for ref in apply.read_inventory(kube, target)) == ["drop", "keep"]
    report = apply.apply_bundle(kube, [_configmap("keep")], target, digest=DIGEST)

    assert [str(ref) for ref in report.pruned] == [f"ConfigMap/{namespace}/drop"]
    assert kube.get("v1", "ConfigMap", target.inventory_name, namespace) is not None
    assert kube.get("v1", "ConfigMap", "conveyor-inventory-web-dev", namespace) is None, (
        "migrated: the old name is gone"
    )
    assert [ref.name for ref in apply.read_inventory(kube, target)] == ["keep"]


def test_an_old_inventory_of_the_colliding_placement_is_not_taken_as_ones_own(
    kube: Kube, namespace: str
) -> None:
    mine = apply.Placement(app="a", target="b-c", namespace=namespace)
    theirs = apply.Placement(app="a-b", target="c", namespace=namespace)
    kube.apply(_configmap("theirs") | {"metadata": {"name": "theirs", "namespace": namespace}})
    kube.apply(_legacy_inventory(theirs, "theirs"), force=True)

    assert apply.read_inventory(kube, mine) == []
    apply.apply_bundle(kube, [_configmap("mine")], mine, digest=DIGEST)

    assert kube.get("v1", "ConfigMap", "theirs", namespace) is not None
    assert kube.get("v1", "ConfigMap", "conveyor-inventory-a-b-c", namespace) is not None, (
        "the other placement's old inventory is left for it to migrate"
    )
    assert [ref.name for ref in apply.read_inventory(kube, theirs)] == ["theirs"]


@pytest.mark.parametrize(
    "objects",
    ["{not json", '{"a": 1}', '[{"kind": "ConfigMap"}]', "[1, 2]", '"x"' * 3],
    ids=["not-json", "not-a-list", "entry-without-fields", "entries-not-objects", "garbage"],
)
def test_a_damaged_inventory_is_reported_and_rewritten_and_prunes_nothing(
    kube: Kube, namespace: str, objects: str
) -> None:
    """Anyone who can edit ConfigMaps in the namespace can write junk into the inventory: the
    apply goes on (it never deletes on the word of junk) and writes a sound inventory. (An app
    of its own: junk in an inventory of app `web` would keep other tests' shared objects.)"""
    target = apply.Placement(f"junk-{uuid.uuid4().hex[:8]}", "dev", namespace)
    apply.apply_bundle(kube, [_configmap("keep"), _configmap("drop")], target, digest=DIGEST)
    inventory = kube.get("v1", "ConfigMap", target.inventory_name, namespace)
    assert inventory is not None
    inventory["data"]["objects"] = objects
    kube.apply(
        {k: v for k, v in inventory.items() if k in ("apiVersion", "kind", "metadata", "data")}
        | {"metadata": {"name": target.inventory_name, "namespace": namespace}},
        field_manager="someone-else",
        force=True,
    )

    report = apply.apply_bundle(kube, [_configmap("keep")], target, digest=DIGEST)

    assert report.pruned == []
    assert kube.get("v1", "ConfigMap", "drop", namespace) is not None, "not deleted on junk's word"
    assert len(report.notes) == 1 and target.inventory_name in report.notes[0], report.notes
    assert "nothing it listed was pruned" in report.notes[0]
    assert [ref.name for ref in apply.read_inventory(kube, target)] == ["keep"]
    assert apply.prune(kube, [_configmap("keep")], target, digest=DIGEST) == []


def test_a_damaged_inventory_of_another_target_keeps_shared_cluster_objects(
    kube: Kube, two_namespaces: tuple[str, str], cluster_names: list[tuple[str, str, str]]
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster_names.append(("rbac.authorization.k8s.io/v1", "ClusterRole", name))
    app = f"junk-{uuid.uuid4().hex[:8]}"  # its damaged inventory must not reach other tests
    dev = apply.Placement(app, "dev", two_namespaces[0])
    test = apply.Placement(app, "test", two_namespaces[1])
    for placement in (dev, test):
        apply.apply_bundle(kube, [_cluster_role(name), _configmap("c")], placement, digest=DIGEST)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": test.inventory_name, "namespace": test.namespace},
            "data": {"objects": "{broken"},
        },
        field_manager="someone-else",
        force=True,
    )
    # What the test target ships is unknown now: dev's prune must not delete the shared role.
    report = apply.apply_bundle(kube, [_configmap("c")], dev, digest=DIGEST)
    assert report.pruned == []
    assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", name) is not None
