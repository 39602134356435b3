"""`drift.read_live_fleet`: one LIST per kind for every target of a cluster, and which live
object counts for which target (pure: a listing stands in for the API server)."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.cluster import drift
from conveyor.cluster.ordering import APP_LABEL, TARGET_LABEL, ObjectRef


class Listing:
    """Answers `list` from fixed items; counts the calls and what they asked for."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.calls: list[tuple[str, str, str | None, str | None]] = []

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str
    ) -> tuple[list[dict[str, Any]], str]:
        self.calls.append((api_version, kind, namespace, label_selector))
        found = [
            item
            for item in self.items
            if (item["apiVersion"], item["kind"]) == (api_version, kind)
            and label_selector in item["metadata"].get("labels", {})
        ]
        return found, "1"


def obj(kind: str, name: str, namespace: str | None, **labels: str) -> dict[str, Any]:
    api_version = "apps/v1" if kind == "Deployment" else "v1"
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def mine(app: str, target: str | None) -> dict[str, str]:
    return {APP_LABEL: app, **({TARGET_LABEL: target} if target else {})}


WEB_DEV = obj("Deployment", "web", "web-dev", **mine("web", "dev"))
WEB_TEST = obj("Deployment", "web", "web-test", **mine("web", "test"))
WEB_DEV_CONFIG = obj("ConfigMap", "web", "web-dev", **mine("web", "dev"))
CLUSTER_ROLE = obj("Namespace", "shared", None, **mine("web", None))


@pytest.mark.parametrize(
    ("live", "key", "wanted", "owned"),
    [
        pytest.param([WEB_DEV], ("web", "dev"), WEB_DEV, True, id="its-own"),
        pytest.param(
            [obj("Deployment", "web", "web-dev", **mine("web", "test"))],
            ("web", "dev"),
            WEB_DEV,
            False,
            id="labelled-for-another-target",
        ),
        pytest.param(
            [obj("Deployment", "web", "web-dev", **mine("ledger", "dev"))],
            ("web", "dev"),
            WEB_DEV,
            False,
            id="labelled-for-another-app",
        ),
        pytest.param([WEB_TEST], ("web", "dev"), WEB_DEV, False, id="same-name-other-namespace"),
        pytest.param([], ("web", "dev"), WEB_DEV, False, id="gone"),
        pytest.param(
            [CLUSTER_ROLE], ("web", "test"), CLUSTER_ROLE, True, id="cluster-scoped-by-app-alone"
        ),
    ],
)
def test_a_live_object_counts_only_for_the_target_its_labels_name(
    live: list[dict[str, Any]],
    key: tuple[str, str],
    wanted: dict[str, Any],
    owned: bool,
) -> None:
    found = drift.read_live_fleet(Listing(live), {key: [wanted]})  # type: ignore[arg-type]
    assert found[key][ObjectRef.of(wanted)] == (live[0] if owned else None)


def test_one_list_per_kind_whatever_the_targets_and_namespaces() -> None:
    listing = Listing([WEB_DEV, WEB_TEST, WEB_DEV_CONFIG])
    desired = {
        ("web", "dev"): [WEB_DEV, WEB_DEV_CONFIG],
        ("web", "test"): [WEB_TEST],
        **{("web", f"extra-{n}"): [obj("Deployment", "web", f"ns-{n}")] for n in range(50)},
    }
    found = drift.read_live_fleet(listing, desired)  # type: ignore[arg-type]
    assert sorted(listing.calls) == [
        ("apps/v1", "Deployment", None, APP_LABEL),
        ("v1", "ConfigMap", None, APP_LABEL),
    ]
    assert found[("web", "test")] == {ObjectRef.of(WEB_TEST): WEB_TEST}
    assert all(value is None for value in found[("web", "extra-7")].values())
