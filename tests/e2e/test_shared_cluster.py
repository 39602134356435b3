"""Five targets of one app on one cluster share its cluster-scoped objects without a fight.

The app (tests/fixtures/shared-cluster) ships what real apps ship, a CRD and a custom resource of
it without status among them. After a release through dev, test, staging, prod-eu and prod-us,
every target is healthy without drift; idle reconciles write nothing to the API server (counted
in its own metrics, and every object keeps its resourceVersion); and a bundle that drops the CRD
while custom resources of it exist is refused before anything is deleted.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.cluster.ordering import APP_LABEL, TARGET_LABEL
from tests.support.world import TARGETS, World

pytestmark = pytest.mark.serial  # the API server's request counters: nothing else may run meanwhile

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "shared-cluster"
WRITES = ("POST", "PUT", "PATCH", "APPLY", "DELETE")
KINDS = (  # (apiVersion, kind) of every namespaced object the app ships
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "ServiceAccount"),
    ("policy/v1", "PodDisruptionBudget"),
    ("batch/v1", "CronJob"),
    ("networking.k8s.io/v1", "Ingress"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
)
RESOURCES = {  # what apiserver_request_total calls them (resource, group)
    ("deployments", "apps"),
    ("statefulsets", "apps"),
    ("services", ""),
    ("configmaps", ""),
    ("serviceaccounts", ""),
    ("namespaces", ""),
    ("poddisruptionbudgets", "policy"),
    ("cronjobs", "batch"),
    ("ingresses", "networking.k8s.io"),
    ("horizontalpodautoscalers", "autoscaling"),
    ("roles", "rbac.authorization.k8s.io"),
    ("rolebindings", "rbac.authorization.k8s.io"),
    ("clusterroles", "rbac.authorization.k8s.io"),
    ("customresourcedefinitions", "apiextensions.k8s.io"),
}
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@pytest.fixture
def shared(world: World) -> Iterator[tuple[World, str]]:
    """The world's app replaced by the fixture app, with an API group of its own; its
    cluster-scoped objects are deleted at the end."""
    group = f"{world.prefix}.widgets.example"
    source = world.source / "web"
    shutil.rmtree(source / "manifests")
    shutil.copytree(FIXTURE / "manifests", source / "manifests")
    for manifest in (source / "manifests").glob("*.yaml"):
        manifest.write_text(manifest.read_text().replace("GROUP", group))
    world.git("add", "-A")
    world.git("commit", "-qm", "the shared-cluster app")

    def shared_cluster(pipeline: dict[str, Any]) -> None:
        pipeline["pruneCustomResourceDefinitions"] = True
        for stage in pipeline["stages"]:
            stage["parallelism"] = 1  # prod-us is the last target to drop the CRD

    world.edit_pipeline(shared_cluster)
    yield world, group
    world.kube.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}")
    world.kube.delete("rbac.authorization.k8s.io/v1", "ClusterRole", f"{group}-widget-reader")


def _release(world: World) -> tuple[int, str]:
    process = world.start("release", app=world.app, ref="HEAD")
    world.answer("prod", approve=True, reason="checked the diff")
    return world.finish(process, timeout=420)


def _status(world: World) -> dict[str, dict[str, str]]:
    shown = world.conveyor("status", world.app, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    return {row["target"]: row for row in json.loads(shown.stdout)}


def _writes(world: World, resources: set[tuple[str, str]]) -> Counter[str]:
    """apiserver_request_total of write verbs on `resources` (objects, not their status)."""
    metrics = subprocess.run(
        [
            str(world.platform.kubernetes.kubectl()),
            "--kubeconfig",
            str(world.platform.kubernetes.kubeconfig),
            "get",
            "--raw",
            "/metrics",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    counts: Counter[str] = Counter()
    for sample in _SAMPLE.finditer(metrics):
        labels = dict(_LABEL.findall(sample["labels"]))
        key = (labels.get("resource", ""), labels.get("group", ""))
        verb = labels.get("verb")
        # A DELETE of a collection is the namespace controller emptying a namespace being deleted.
        collection = verb == "DELETE" and labels.get("scope") != "resource"
        if key in resources and verb in WRITES and not labels.get("subresource") and not collection:
            counts[f"{verb} {key[0]}"] += int(float(sample["value"]))
    return counts


def _snapshot(world: World, group: str) -> dict[str, dict[str, Any]]:
    """Every object the app put on the cluster (inventories and namespaces included), by path."""
    found = {}
    cluster_scoped = [
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", f"{group}-widget-reader"),
    ]
    for api_version, kind, name in cluster_scoped:
        live = world.kube.get(api_version, kind, name)
        assert live is not None, f"{kind}/{name}"
        found[f"{kind}/{name}"] = live
    for target in TARGETS:
        namespace = world.namespace(target)
        namespace_object = world.kube.get("v1", "Namespace", namespace)
        assert namespace_object is not None, namespace
        found[f"Namespace/{namespace}"] = namespace_object
        for api_version, kind in [*KINDS, (f"{group}/v1", "Widget")]:
            items, _ = world.kube.list(api_version, kind, namespace)
            found.update((f"{kind}/{namespace}/{item['metadata']['name']}", item) for item in items)
    return found


def _changes(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], list[str]]:
    """Objects whose resourceVersion changed: those Conveyor (or anyone but a controller writing
    its status) changed, with why, and those only a controller's status write changed."""
    ours, status_only = {}, []
    for key in sorted({*before, *after}):
        old, new = before.get(key), after.get(key)
        if old is None or new is None:
            ours[key] = "appeared" if old is None else "disappeared"
            continue
        if old["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]:
            continue
        last = max(new["metadata"]["managedFields"], key=lambda entry: entry["time"])
        same_spec = old["metadata"].get("generation") == new["metadata"].get("generation")
        if same_spec and last.get("subresource") == "status" and last["manager"] != "conveyor":
            status_only.append(f"{key} (status, by {last['manager']})")
        else:
            ours[key] = f"last written by {last['manager']} {last.get('subresource', '')}"
    return ours, status_only


_IDLE = re.compile(r"live matches sha256:\S+ \((\d+) API request\(s\), (\d+) write\(s\)\)")


def _reconcile_every_target(world: World) -> list[tuple[int, int]]:
    """One reconcile cycle, every target at once: (requests, writes) each run reports."""
    started = [world.start("reconcile", app=world.app, target=target) for target in TARGETS]
    counted = []
    for target, process in zip(TARGETS, started, strict=True):
        code, output = world.finish(process)
        assert code == 0, output
        idle = _IDLE.search(output)
        assert idle, f"{target} found drift:\n{output}"
        counted.append((int(idle[1]), int(idle[2])))
    return counted


def test_five_targets_share_the_cluster_scoped_objects_and_idle_reconciles_write_nothing(
    shared: tuple[World, str],
) -> None:
    world, group = shared
    code, output = _release(world)
    assert code == 0, output
    digest = world.desired("dev").digest  # type: ignore[union-attr]

    rows = _status(world)
    for target in TARGETS:
        assert (rows[target]["digest"], rows[target]["health"], rows[target]["drift"]) == (
            digest,
            "healthy",
            "none",
        ), rows[target]
    crd = world.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}")
    assert crd is not None
    assert crd["metadata"]["labels"][APP_LABEL] == world.app
    assert TARGET_LABEL not in crd["metadata"]["labels"], "the app owns it, not a target"

    involved = {*RESOURCES, ("widgets", group)}
    objects, writes = _snapshot(world, group), _writes(world, involved)
    cycles = [_reconcile_every_target(world) for _cycle in range(2)]
    written = _writes(world, involved) - writes
    assert [sum(writes for _, writes in cycle) for cycle in cycles] == [0, 0], cycles
    assert written == Counter(), f"the API server counted writes: {dict(written)}"
    changed, by_controllers = _changes(objects, _snapshot(world, group))
    assert changed == {}, "an idle reconcile changed an object"
    print(  # the figures of the closing note (pytest -s shows them)
        f"idle reconcile cycles of {len(TARGETS)} targets, (requests, writes) per target: "
        f"{cycles}; the API server counted {sum(written.values())} writes to "
        f"{len(involved)} resources, {len(objects)} objects, resourceVersion changed by "
        f"controllers' status writes only: {by_controllers}"
    )

    # A user's own Widget, beside the app's: dropping the CRD would delete it with them.
    world.kube.apply(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "users-own", "namespace": world.namespace("dev")},
            "spec": {"size": 1},
        },
        field_manager="a-user",
    )
    world.git("rm", "-q", "web/manifests/crd.yaml", "web/manifests/widget.yaml")
    world.git("commit", "-qm", "drop the Widget definition")

    code, output = _release(world)

    assert code != 0, output
    assert f"CustomResourceDefinition/widgets.{group}: 1 custom resource(s) exist" in output
    assert world.kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"widgets.{group}")
    assert world.kube.get(f"{group}/v1", "Widget", "users-own", world.namespace("dev"))
    assert world.kube.get(f"{group}/v1", "Widget", "web", world.namespace("prod-us")), (
        "refused before anything was deleted"
    )
