"""A bundle stays inside its target, on the real cluster: another target's namespace, cluster-
scoped kinds the target does not allow, another target's fields; and objects applied under the
old shared field manager move to the target's own without conflicts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conveyor.adapters.kube import ApplyConflict, Kube
from conveyor.cluster import apply
from conveyor.cluster.ordering import TARGET_LABEL
from conveyor.errors import InputError
from conveyor.platform.local import LocalPlatform

DIGEST = "sha256:" + "cd" * 32
RBAC = "rbac.authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def kube(platform: LocalPlatform) -> Kube:
    return Kube(platform.kubernetes.kubeconfig)


@pytest.fixture
def two_namespaces(kube: Kube) -> Iterator[tuple[str, str]]:
    """Two namespaces that do not exist yet (apply creates them), deleted afterwards."""
    names = (f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}")
    yield names
    for name in names:
        kube.delete("v1", "Namespace", name)


def _configmap(name: str, namespace: str | None = None, **data: str) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _managers(live: dict[str, Any] | None) -> set[str]:
    assert live is not None, "the object is not there"
    return {entry["manager"] for entry in live["metadata"]["managedFields"]}


def test_a_bundle_writing_into_another_targets_namespace_is_refused_before_any_write(
    kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    dev_ns, prod_ns = two_namespaces
    prod = apply.Placement("web", "prod", prod_ns)
    apply.apply_bundle(kube, [_configmap("settings", mode="prod")], prod, digest=DIGEST)
    before = kube.get("v1", "ConfigMap", "settings", prod_ns)
    # dev's bundle: one object of its own, one whose explicit namespace is prod's.
    attack = [_configmap("own", mode="dev"), _configmap("settings", prod_ns, mode="dev")]
    writes = kube.writes

    with pytest.raises(InputError) as caught:
        apply.apply_bundle(kube, attack, apply.Placement("web", "dev", dev_ns), digest=DIGEST)

    assert caught.value.exit_code == 2
    assert f"ConfigMap/{prod_ns}/settings: namespaced objects go to the target's namespace" in (
        str(caught.value)
    )
    assert kube.writes == writes, "refused before anything was written"
    after = kube.get("v1", "ConfigMap", "settings", prod_ns)
    assert after is not None and before is not None
    assert after["data"] == {"mode": "prod"}
    assert after["metadata"]["labels"][TARGET_LABEL] == "prod"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert kube.get("v1", "Namespace", dev_ns) is None, "not even the namespace was created"
    # prod's next prune still has its object: dev never took it.
    apply.apply_bundle(kube, [_configmap("settings", mode="prod")], prod, digest=DIGEST)
    assert kube.get("v1", "ConfigMap", "settings", prod_ns) is not None


def _admin_binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }


def test_a_cluster_role_binding_from_a_target_that_does_not_allow_it_is_refused(
    kube: Kube, namespace: str
) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}-admin"
    writes = kube.writes
    try:
        with pytest.raises(InputError) as caught:
            apply.apply_bundle(
                kube,
                [_configmap("app", mode="x"), _admin_binding(name, namespace)],
                apply.Placement("web", "dev", namespace),
                digest=DIGEST,
            )

        assert caught.value.exit_code == 2
        assert f"ClusterRoleBinding/{name}: cluster-scoped kind ClusterRoleBinding is not " in (
            str(caught.value)
        )
        assert kube.writes == writes
        assert kube.get(RBAC, "ClusterRoleBinding", name) is None
        assert kube.get("v1", "ConfigMap", "app", namespace) is None
    finally:
        kube.delete(RBAC, "ClusterRoleBinding", name)


def test_a_target_that_lists_a_cluster_scoped_kind_applies_it(kube: Kube, namespace: str) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}-admin"
    placement = apply.Placement("web", "dev", namespace, cluster_scoped=("ClusterRoleBinding",))
    try:
        apply.apply_bundle(kube, [_admin_binding(name, namespace)], placement, digest=DIGEST)

        assert _managers(kube.get(RBAC, "ClusterRoleBinding", name)) == {"conveyor/web"}
    finally:
        kube.delete(RBAC, "ClusterRoleBinding", name)


def test_a_target_allowed_into_another_namespace_cannot_take_that_targets_fields(
    kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    dev_ns, prod_ns = two_namespaces
    prod = apply.Placement("web", "prod", prod_ns)
    apply.apply_bundle(kube, [_configmap("settings", mode="prod")], prod, digest=DIGEST)
    dev = apply.Placement("web", "dev", dev_ns, namespaces=(prod_ns,))

    with pytest.raises(ApplyConflict) as caught:
        apply.apply_bundle(kube, [_configmap("settings", prod_ns, mode="dev")], dev, digest=DIGEST)

    assert '"conveyor/web.prod"' in str(caught.value), "the conflict names the other target"
    live = kube.get("v1", "ConfigMap", "settings", prod_ns)
    assert live is not None and live["data"] == {"mode": "prod"}
    assert live["metadata"]["labels"][TARGET_LABEL] == "prod"


def _as_before(kube: Kube, obj: dict[str, Any], placement: apply.Placement) -> None:
    """Apply `obj` as Conveyor did before each target had its manager: labelled for
    `placement`, under the one manager `conveyor`."""
    (prepared,) = apply.prepare(kube, [obj], placement, DIGEST)
    kube.apply(prepared, field_manager="conveyor")


def test_objects_of_the_old_shared_manager_move_to_the_targets_manager(
    kube: Kube, namespace: str
) -> None:
    dev = apply.Placement("web", "dev", namespace)
    apply.apply_bundle(kube, [], dev, digest=DIGEST)  # the namespace and an inventory
    _as_before(kube, _configmap("changed", mode="old", extra="dropped"), dev)
    _as_before(kube, _configmap("same", mode="same"), dev)

    # New values (a conflict with the old manager) and the same values (none): both move.
    apply.apply_bundle(
        kube,
        [_configmap("changed", mode="new"), _configmap("same", mode="same")],
        dev,
        digest=DIGEST,
    )

    changed = kube.get("v1", "ConfigMap", "changed", namespace)
    assert changed is not None
    assert changed["data"] == {"mode": "new"}, "a field the bundle dropped is removed, as always"
    assert _managers(changed) == {"conveyor/web.dev"}
    assert _managers(kube.get("v1", "ConfigMap", "same", namespace)) == {"conveyor/web.dev"}
    # And the move is done: the next apply changes a value without any conflict.
    apply.apply_bundle(kube, [_configmap("changed", mode="newer")], dev, digest=DIGEST)
    again = kube.get("v1", "ConfigMap", "changed", namespace)
    assert again is not None and again["data"] == {"mode": "newer"}


def test_an_old_object_of_another_target_is_not_moved_and_stays_a_conflict(
    kube: Kube, two_namespaces: tuple[str, str]
) -> None:
    dev_ns, prod_ns = two_namespaces
    prod = apply.Placement("web", "prod", prod_ns)
    apply.apply_bundle(kube, [], prod, digest=DIGEST)
    _as_before(kube, _configmap("settings", mode="prod"), prod)
    dev = apply.Placement("web", "dev", dev_ns, namespaces=(prod_ns,))

    with pytest.raises(ApplyConflict) as caught:
        apply.apply_bundle(kube, [_configmap("settings", prod_ns, mode="dev")], dev, digest=DIGEST)

    assert '"conveyor"' in str(caught.value)
    live = kube.get("v1", "ConfigMap", "settings", prod_ns)
    assert live is not None and live["data"] == {"mode": "prod"}
    assert _managers(live) == {"conveyor"}, "prod's fields were not handed to dev"
