"""Fixtures shared by every test tier.

The session's `platform` fixture brings the real local platform up (or reuses a healthy one) and
fails every test that needs it, with the reason, when it cannot start: nothing is skipped. It stops
what it started at the end of the session unless CONVEYOR_KEEP_PLATFORM=1 (handy while iterating).
Each test gets its own namespace and registry repository, so tests never see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import ConveyorError
from conveyor.platform import process
from conveyor.platform.components import PrefectServer
from conveyor.platform.local import LocalPlatform
from tests.support.images import push_fixture_images
from tests.support.ordering import longest_modules_first

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(trylast=True)  # after `-m` has deselected: the shares are of what runs
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the longest modules first, spread over the workers' shares."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers > 1:
        items[:] = longest_modules_first(items, lambda item: item.nodeid.split("::")[0], workers)


@pytest.fixture(scope="session")
def platform() -> Iterator[LocalPlatform]:
    state = Path(os.environ.get("CONVEYOR_STATE", REPO_ROOT / ".conveyor"))
    local = LocalPlatform(state)
    already_up = all(health.healthy for health in local.status())
    try:
        healths = local.up()
    except ConveyorError as error:
        pytest.fail(f"the local platform could not start:\n{error}", pytrace=False)
    down = [health for health in healths if not health.healthy]
    if down:
        pytest.fail(
            "the local platform is not healthy: "
            + "; ".join(f"{h.component}: {h.detail}" for h in down),
            pytrace=False,
        )
    # Builds in this process and in every subprocess it starts pin images through the
    # platform's registry, where the fixtures' images are pushed (tests/support/images.py),
    # build Kustomize overlays with the platform's kubectl and render charts with its Helm.
    for name in ("CONVEYOR_IMAGE_MIRRORS", "CONVEYOR_KUBECTL", "CONVEYOR_HELM"):
        os.environ[name] = local.environment()[name]
    push_fixture_images(local)
    yield local
    if not already_up and os.environ.get("CONVEYOR_KEEP_PLATFORM") != "1":
        local.down()


@pytest.fixture(scope="session")
def kube_api(platform: LocalPlatform) -> Any:
    """An ApiClient of the official kubernetes client for the platform's cluster."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(platform.kubernetes.kubeconfig))


@pytest.fixture
def namespace(kube_api: Any) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture
def registry_repo(platform: LocalPlatform) -> str:
    """A registry repository name no other test uses: `<address>/tests/<random>`."""
    return f"{platform.registry.address}/tests/r{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def own_prefect(
    platform: LocalPlatform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServer]:
    """A Prefect server for one test module (tests marked `own_prefect` run their world on it):
    what it serves, no test on the shared server can find."""
    server = PrefectServer(tmp_path_factory.mktemp("own-prefect"), process.free_port())
    server.up()
    try:
        yield server
    finally:
        server.down()
