"""Apply order, ownership labels and the drift comparison: pure functions, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.cluster import drift
from conveyor.cluster.ordering import (
    PHASES,
    ObjectRef,
    label,
    owned_by,
    owner_app,
    phase_of,
    phases,
    selector,
)


@pytest.mark.parametrize(
    ("api_version", "kind", "phase"),
    [
        ("v1", "Namespace", "namespaces"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "definitions"),
        ("v1", "ServiceAccount", "rbac"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "rbac"),
        ("v1", "ConfigMap", "configuration"),
        ("v1", "Secret", "configuration"),
        ("v1", "PersistentVolumeClaim", "configuration"),
        ("apps/v1", "Deployment", "workloads"),
        ("v1", "Service", "workloads"),
        ("batch/v1", "Job", "workloads"),
        ("networking.k8s.io/v1", "Ingress", "workloads"),
        ("example.com/v1", "Widget", "custom resources"),
        ("monitoring.coreos.com/v1", "ServiceMonitor", "custom resources"),
    ],
)
def test_each_kind_has_its_phase(api_version: str, kind: str, phase: str) -> None:
    assert PHASES[phase_of({"apiVersion": api_version, "kind": kind})] == phase


def test_phases_keep_bundle_order_within_a_phase_and_drop_empty_ones() -> None:
    objects = [
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}},
    ]
    assert [[o["metadata"]["name"] for o in group] for group in phases(objects)] == [
        ["c"],
        ["b", "a"],
        ["w"],
    ]


def test_labels_are_added_without_touching_the_input() -> None:
    original = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "web-prod-eu", "labels": {"team": "x"}},
    }
    (labelled,) = label([original], app="web", target="prod-eu", digest="sha256:00")
    assert labelled["metadata"]["labels"] == {
        "team": "x",
        "app.kubernetes.io/managed-by": "conveyor",
        "conveyor.dev/app": "web",
        "conveyor.dev/target": "prod-eu",
    }
    assert labelled["metadata"]["annotations"] == {"conveyor.dev/bundle-digest": "sha256:00"}
    assert original["metadata"]["labels"] == {"team": "x"}


def test_a_cluster_scoped_object_carries_the_app_only_whichever_target_applies_it() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com", "labels": {"conveyor.dev/target": "old"}},
    }
    from_dev, from_prod = (
        label([crd], app="web", target=target, digest=digest)[0]
        for target, digest in (("dev", "sha256:01"), ("prod-eu", "sha256:02"))
    )
    assert from_dev == from_prod, "every target of the cluster applies the same object"
    assert from_dev["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "conveyor",
        "conveyor.dev/app": "web",
    }
    assert "annotations" not in from_dev["metadata"], "targets run different digests"


def _live(namespace: str | None, **labels: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "x", "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    return {"metadata": metadata}


OURS = {"app.kubernetes.io/managed-by": "conveyor", "conveyor.dev/app": "web"}


@pytest.mark.parametrize(
    ("live", "owned", "owner"),
    [
        (_live("ns", **OURS, **{"conveyor.dev/target": "prod-eu"}), True, "web"),
        (_live("ns", **OURS, **{"conveyor.dev/target": "prod-us"}), False, "web"),
        (_live("ns", **OURS), False, "web"),
        (_live(None, **OURS), True, "web"),
        (_live(None, **OURS, **{"conveyor.dev/target": "dev"}), True, "web"),
        (_live(None, **{**OURS, "conveyor.dev/app": "api"}), False, "api"),
        (_live(None, **{**OURS, "app.kubernetes.io/managed-by": "helm"}), False, None),
        (_live(None), False, None),
    ],
    ids=[
        "namespaced-this-target",
        "namespaced-other-target",
        "namespaced-without-target",
        "cluster-scoped-this-app",
        "cluster-scoped-labelled-by-an-older-conveyor",
        "cluster-scoped-other-app",
        "someone-elses",
        "unlabelled",
    ],
)
def test_ownership_is_app_and_target_or_app_alone_for_cluster_scoped_objects(
    live: dict[str, Any], owned: bool, owner: str | None
) -> None:
    assert owned_by(live, app="web", target="prod-eu") is owned
    assert owner_app(live) == owner


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("dev", "conveyor.dev/app=web,conveyor.dev/target=dev"),
        (None, "conveyor.dev/app=web"),
    ],
)
def test_a_selector_matches_a_target_or_the_whole_app(target: str | None, expected: str) -> None:
    assert selector(app="web", target=target) == expected


LIVE_DEPLOYMENT: dict[str, Any] = {
    "metadata": {
        "name": "web",
        "resourceVersion": "9",
        "uid": "u",
        "generation": 4,
        "labels": {"a": "1", "added-by-someone": "x"},
    },
    "spec": {
        "replicas": 3,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "web:1",
                        "terminationMessagePath": "/dev/termination-log",
                        "resources": {"requests": {"cpu": "1", "memory": "128Mi"}},
                    }
                ]
            }
        },
    },
    "status": {"replicas": 3},
}


@pytest.mark.parametrize(
    ("desired", "expected"),
    [
        ({"spec": {"replicas": 3}}, []),
        ({"metadata": {"name": "web", "labels": {"a": "1"}}}, []),
        ({"metadata": {"resourceVersion": "1", "generation": 1}}, []),
        ({"spec": {"replicas": 2}}, [("spec.replicas", 2, 3)]),
        ({"metadata": {"labels": {"b": "2"}}}, [("metadata.labels.b", "2", drift.ABSENT)]),
        (
            {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}}}},
            [("spec.template.spec.containers[0].image", "web:2", "web:1")],
        ),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "web",
                                    "resources": {"requests": {"cpu": "1000m", "memory": "128Mi"}},
                                }
                            ]
                        }
                    }
                }
            },
            [],
        ),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "web", "resources": {"requests": {"cpu": "500m"}}}
                            ]
                        }
                    }
                }
            },
            [("spec.template.spec.containers[0].resources.requests.cpu", "500m", "1")],
        ),
        (
            {
                "spec": {
                    "template": {"spec": {"containers": [{"name": "web"}, {"name": "sidecar"}]}}
                }
            },
            [
                (
                    "spec.template.spec.containers",
                    [{"name": "web"}, {"name": "sidecar"}],
                    LIVE_DEPLOYMENT["spec"]["template"]["spec"]["containers"],
                )
            ],
        ),
        ({"spec": {"replicas": True}}, [("spec.replicas", True, 3)]),
        ({"spec": {"paused": True}}, [("spec.paused", True, drift.ABSENT)]),
        ({"data": {}, "spec": {"template": {"spec": {"volumes": []}}}}, []),
    ],
    ids=[
        "same-value",
        "subset-of-labels",
        "server-owned-metadata-ignored",
        "scaled",
        "label-removed",
        "image-changed",
        "quantity-normalized",
        "quantity-differs",
        "list-length-differs",
        "type-differs",
        "field-missing",
        "empty-mapping-or-list-the-server-omits",
    ],
)
def test_compare_reports_only_fields_we_set_that_differ(
    desired: dict[str, Any], expected: list[tuple[str, Any, Any]]
) -> None:
    found = [(f.path, f.desired, f.live) for f in drift.compare(desired, LIVE_DEPLOYMENT)]
    assert found == expected


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("1", "1000m", True),
        ("0.5", "500m", True),
        ("1Gi", "1024Mi", True),
        ("1G", "1000M", True),
        ("1e3", "1k", True),
        ("100m", "0.2", False),
        ("abc", "abc", True),
        ("abc", "abd", False),
        (True, 1, False),
        (1, 1.0, True),
    ],
)
def test_scalar_equality_understands_quantities(a: Any, b: Any, equal: bool) -> None:
    assert (drift.compare({"x": a}, {"x": b}, quantities=True) == []) is equal


@pytest.mark.parametrize(
    ("desired", "live", "equal"),
    [
        # where Kubernetes keeps quantities, the server's spelling is the same value
        (
            {"resources": {"limits": {"memory": "1Gi"}}},
            {"resources": {"limits": {"memory": "1024Mi"}}},
            True,
        ),
        ({"spec": {"hard": {"pods": "1k"}}}, {"spec": {"hard": {"pods": "1000"}}}, True),
        ({"emptyDir": {"sizeLimit": "0.5Gi"}}, {"emptyDir": {"sizeLimit": "512Mi"}}, True),
        ({"target": {"value": "0.1"}}, {"target": {"value": "100m"}}, True),
        ({"limits": [{"max": {"cpu": "2"}}]}, {"limits": [{"max": {"cpu": "2000m"}}]}, True),
        (
            {"resources": {"requests": {"cpu": "100m"}}},
            {"resources": {"requests": {"cpu": "0.2"}}},
            False,
        ),
        # everywhere else a string is what it says: these are real changes
        ({"data": {"version": "1.10"}}, {"data": {"version": "1.1"}}, False),
        ({"data": {"size": "1k"}}, {"data": {"size": "1000"}}, False),
        ({"env": [{"name": "N", "value": "010"}]}, {"env": [{"name": "N", "value": "10"}]}, False),
        ({"spec": {"replicas": "3"}}, {"spec": {"replicas": 3}}, False),
        ({"spec": {"replicas": 3}}, {"spec": {"replicas": 3.0}}, True),
    ],
)
def test_quantities_are_compared_as_such_only_where_kubernetes_keeps_them(
    desired: dict[str, Any], live: dict[str, Any], equal: bool
) -> None:
    assert (drift.compare(desired, live) == []) is equal


def test_a_drift_is_a_table_row_per_field_or_one_row_for_a_deleted_object() -> None:
    changed = drift.ObjectDrift(
        ObjectRef("apps/v1", "Deployment", "shop", "web"),
        fields=(
            drift.FieldDrift("spec.replicas", 3, 1),
            drift.FieldDrift("metadata.labels.tier", "web", drift.ABSENT),
        ),
    )
    deleted = drift.ObjectDrift(ObjectRef("v1", "Namespace", None, "shop"), missing=True)

    assert changed.rows() == [
        {"object": "Deployment/shop/web", "field": "spec.replicas", "desired": "3", "live": "1"},
        {
            "object": "Deployment/shop/web",
            "field": "metadata.labels.tier",
            "desired": "'web'",
            "live": "(absent)",
        },
    ]
    assert deleted.rows() == [
        {
            "object": "Namespace/shop",
            "field": "(object)",
            "desired": "present",
            "live": "deleted out of band",
        }
    ]
    assert all(tuple(row) == drift.DRIFT_COLUMNS for row in changed.rows() + deleted.rows())
    assert changed.as_dict()["fields"][1] == {
        "path": "metadata.labels.tier",
        "desired": "web",
        "live": None,
    }
