"""A component that cannot start says which one, what it ran, and the end of its log."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conveyor.errors import PlatformError
from conveyor.platform import process
from conveyor.platform.components import Kubernetes, PrefectServer, Registry


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _start_refused(component: Registry | PrefectServer) -> str:
    """What `component.up()` raised: the PlatformError's message."""
    with pytest.raises(PlatformError) as caught:
        component.up()
    return str(caught.value)


def _assert_not_running(component: Registry | PrefectServer) -> None:
    record = process.read_pidfile(component.pidfile)
    assert record is None or not process.is_running(record)


def test_registry_on_a_busy_port_fails_with_its_log(tmp_path: Path, busy_port: int) -> None:
    registry = Registry(tmp_path, busy_port)
    message = _start_refused(registry)
    assert message.startswith("registry: exited before becoming healthy")
    assert "address already in use" in message
    assert str(registry.log) in message
    _assert_not_running(registry)


def test_prefect_on_a_busy_port_fails_with_its_log(tmp_path: Path, busy_port: int) -> None:
    prefect = PrefectServer(tmp_path, busy_port)
    message = _start_refused(prefect)
    assert message.startswith("prefect: exited before becoming healthy")
    assert str(busy_port) in message
    prefect.down()
    _assert_not_running(prefect)


def test_a_stopped_cluster_whose_port_another_program_took_says_so_before_starting(
    tmp_path: Path, busy_port: int
) -> None:
    """Another platform (another checkout's, a benchmark's) may take a port of a stopped cluster:
    starting it then reached the other cluster's API server and failed on its certificate. `up`
    names the port and starts nothing."""
    cluster = Kubernetes(tmp_path)
    cluster.cluster_dir.mkdir(parents=True)
    recorded = {
        "components": [
            {"name": "etcd", "ports": [{"name": "http", "port": process.free_port()}]},
            {"name": "kube-apiserver", "ports": [{"name": "https", "port": busy_port}]},
        ]
    }
    others = {"kind": "KwokConfiguration"}  # kwok.yaml holds several documents
    (cluster.cluster_dir / "kwok.yaml").write_text(yaml.safe_dump_all([recorded, others]))
    with pytest.raises(PlatformError) as caught:
        cluster.up()
    message = str(caught.value)
    assert f"127.0.0.1:{busy_port} (kube-apiserver)" in message, message
    assert "another program" in message and "--purge" in caught.value.hint, message
    assert not (cluster.cluster_dir / "pids").exists(), "nothing was started"
