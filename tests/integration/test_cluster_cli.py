"""`conveyor apply` by hand keeps a bundle inside its target as a pipeline does, and says so.

The same confinement as a promotion: a bundle that ships a ClusterRoleBinding is refused with
exit 2 before any write, unless the command allows the kind (`--allow-cluster-scoped`), as a
target's `clusterScoped` does in a pipeline; likewise another namespace (`--allow-namespace`).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from conveyor.platform.local import LocalPlatform
from tests.integration.test_bundle_cli import (
    SOURCE_PATH,
    build,
    commit_all,
    conveyor,
    make_repo,
    ok,
)

BINDING = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {name}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}
subjects:
  - {{kind: ServiceAccount, name: default, namespace: {namespace}}}
"""


def test_apply_keeps_a_bundle_in_its_target_unless_the_command_allows_more(
    platform: LocalPlatform, kube_api: Any, namespace: str, tmp_path: Path
) -> None:
    binding = f"reader-{uuid.uuid4().hex[:8]}"
    repo = make_repo(tmp_path / "repo")
    manifest = repo / SOURCE_PATH / "manifests" / "binding.yaml"
    manifest.write_text(BINDING.format(name=binding, namespace=namespace))
    commit_all(repo, "a cluster role binding")
    store = f"oci:{tmp_path / 'store'}"
    digest = ok(build(repo, store, "--tag", "v1")).json()["digest"]
    kubeconfig = str(platform.kubernetes.kubeconfig)
    command = ["apply", digest, "--store", store, "--app", "web", "--target", "dev"]
    command += ["--namespace", namespace, "--kubeconfig", kubeconfig, "--no-wait"]
    rbac = client.RbacAuthorizationV1Api(kube_api)
    core = client.CoreV1Api(kube_api)

    refused = conveyor(*command)
    assert refused.code == 2, refused.stdout + refused.stderr
    assert f"ClusterRoleBinding/{binding}" in refused.stderr, refused.stderr
    assert "manifests/binding.yaml" in refused.stderr, refused.stderr
    assert "--allow-cluster-scoped" in refused.stderr, refused.stderr
    assert binding not in {b.metadata.name for b in rbac.list_cluster_role_binding().items}
    assert not core.list_namespaced_config_map(namespace, label_selector="app=web").items

    try:
        ok(conveyor(*command, "--allow-cluster-scoped", "ClusterRoleBinding"))
        assert rbac.read_cluster_role_binding(binding).role_ref.name == "view"
        assert core.read_namespaced_config_map("web-config", namespace).data
    finally:
        rbac.delete_cluster_role_binding(binding)
