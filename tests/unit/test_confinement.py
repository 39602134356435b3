"""Where a target's bundle may write (namespaces, cluster-scoped kinds), and who writes it
(one field manager per app and target)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.cluster.confinement import (
    Confinement,
    OutsideTarget,
    refuse_outside,
    refuse_outside_rendered,
)
from conveyor.cluster.ordering import field_manager

RBAC = "rbac.authorization.k8s.io/v1"
ADMISSION = "admissionregistration.k8s.io/v1"


def obj(api_version: str, kind: str, name: str, namespace: str | None = None, **labels: str) -> Any:
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


DEV = Confinement("web-dev")
DEV_WIDE = Confinement(
    "web-dev",
    namespaces=("monitoring",),
    cluster_scoped=(
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io",
    ),
)
AGGREGATING = {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}

CASES = [
    ("own-namespace", DEV, obj("v1", "ConfigMap", "c", "web-dev"), None),
    ("other-namespace", DEV, obj("v1", "ConfigMap", "c", "web-prod"), "namespace 'web-dev'"),
    ("kube-system", DEV, obj("v1", "Secret", "s", "kube-system"), "namespace 'web-dev'"),
    ("listed-namespace", DEV_WIDE, obj("v1", "ConfigMap", "c", "monitoring"), None),
    ("unlisted-namespace", DEV_WIDE, obj("v1", "ConfigMap", "c", "web-prod"), "or to 'monitoring'"),
    ("own-namespace-object", DEV, obj("v1", "Namespace", "web-dev"), None),
    ("listed-namespace-object", DEV_WIDE, obj("v1", "Namespace", "monitoring"), None),
    ("other-namespace-object", DEV, obj("v1", "Namespace", "web-prod"), "only its target's"),
    ("crd", DEV, obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "a.b.c"), None),
    ("cluster-role", DEV, obj(RBAC, "ClusterRole", "reader"), None),
    (
        "aggregating-cluster-role",
        DEV,
        obj(RBAC, "ClusterRole", "r", **AGGREGATING),
        "aggregates into other roles",
    ),
    (
        "aggregating-cluster-role-listed",
        Confinement("web-dev", cluster_scoped=("ClusterRole",)),
        obj(RBAC, "ClusterRole", "r", **AGGREGATING),
        None,
    ),
    ("cluster-role-binding", DEV, obj(RBAC, "ClusterRoleBinding", "b"), "kind ClusterRoleBinding"),
    ("cluster-role-binding-listed", DEV_WIDE, obj(RBAC, "ClusterRoleBinding", "b"), None),
    ("webhook", DEV, obj(ADMISSION, "MutatingWebhookConfiguration", "w"), "not allowed"),
    (
        "webhook-listed-with-group",
        DEV_WIDE,
        obj(ADMISSION, "ValidatingWebhookConfiguration", "w"),
        None,
    ),
    (
        "kind-listed-for-another-group",
        DEV_WIDE,
        obj("evil.example/v1", "ValidatingWebhookConfiguration", "w"),
        "not allowed",
    ),
    ("a-crd-kind-of-the-same-name", DEV, obj("x.example/v1", "ClusterRole", "r"), "not allowed"),
    ("priority-class", DEV, obj("scheduling.k8s.io/v1", "PriorityClass", "p"), "PriorityClass"),
]


@pytest.mark.parametrize(
    ("confinement", "candidate", "broken"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_what_a_target_may_write(
    confinement: Confinement, candidate: Any, broken: str | None
) -> None:
    problem = confinement.problem(candidate)

    if broken is None:
        assert problem is None
    else:
        assert problem is not None and broken in problem


def test_a_refusal_names_every_object_its_file_and_the_rule() -> None:
    objects = [
        obj("v1", "ConfigMap", "fine", "web-dev"),
        obj("v1", "ConfigMap", "moved", "web-prod"),
        obj(RBAC, "ClusterRoleBinding", "admin"),
    ]
    files = ["web: manifests/a.yaml", "web: manifests/b.yaml", "web: manifests/c.yaml"]

    with pytest.raises(OutsideTarget) as caught:
        refuse_outside(objects, DEV, target="dev", origins=files)

    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert "target 'dev' may not write 2 object(s)" in message
    assert "web: manifests/b.yaml: ConfigMap/web-prod/moved: namespaced objects go to" in message
    assert "web: manifests/c.yaml: ClusterRoleBinding/admin: cluster-scoped kind" in message
    assert "fine" not in message and "nothing was applied" in message


@pytest.mark.parametrize(
    ("app", "target", "name"),
    [
        ("web", "dev", "conveyor/web.dev"),
        ("web", None, "conveyor/web"),
        ("a-b", "c", "conveyor/a-b.c"),
        ("a", "b-c", "conveyor/a.b-c"),
    ],
)
def test_each_app_and_target_has_its_field_manager(app: str, target: str | None, name: str) -> None:
    assert field_manager(app, target) == name


def test_a_field_manager_too_long_for_the_api_server_keeps_its_start_and_a_hash() -> None:
    longest = field_manager("a" * 63, "b" * 63)
    other = field_manager("a" * 63, "b" * 62 + "c")

    assert len(longest.encode()) == 128 and longest.startswith("conveyor/" + "a" * 63 + ".b")
    assert longest != other, "the hash tells targets apart"


CLUSTER_WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.x.example"},
    "spec": {"group": "x.example", "scope": "Cluster", "names": {"kind": "Widget"}},
}

RENDERED_CASES = [
    ("no-namespace-goes-to-the-target", [obj("v1", "ConfigMap", "c")], None),
    ("own-namespace", [obj("apps/v1", "Deployment", "d", "web-dev")], None),
    ("another-namespace", [obj("v1", "ConfigMap", "c", "web-prod")], "ConfigMap/web-prod/c"),
    ("binding", [obj(RBAC, "ClusterRoleBinding", "b")], "ClusterRoleBinding/b: cluster-scoped"),
    (
        "binding-with-a-namespace-is-still-cluster-scoped",
        [obj(RBAC, "ClusterRoleBinding", "b", "web-dev")],
        "ClusterRoleBinding/b: cluster-scoped kind",
    ),
    ("webhook", [obj(ADMISSION, "ValidatingWebhookConfiguration", "w")], "Validating"),
    ("unknown-custom-kind-left-to-apply", [obj("y.example/v1", "Gadget", "g", "web-prod")], None),
    (
        "cluster-kind-the-bundle-defines",
        [CLUSTER_WIDGETS, obj("x.example/v1", "Widget", "w", "web-dev")],
        "Widget/w: cluster-scoped kind Widget",
    ),
]


@pytest.mark.parametrize(
    ("objects", "refused"),
    [case[1:] for case in RENDERED_CASES],
    ids=[case[0] for case in RENDERED_CASES],
)
def test_rendered_objects_of_known_scope_are_refused_before_any_cluster_is_asked(
    objects: list[Any], refused: str | None
) -> None:
    origins = [f"web: manifests/{index}.yaml" for index in range(len(objects))]

    if refused is None:
        refuse_outside_rendered(objects, DEV, target="dev", origins=origins)
        return
    with pytest.raises(OutsideTarget) as caught:
        refuse_outside_rendered(objects, DEV, target="dev", origins=origins)
    assert f"web: manifests/{len(objects) - 1}.yaml: {refused}" in str(caught.value)
