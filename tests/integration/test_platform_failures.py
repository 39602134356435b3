"""A component that cannot start says which one, what it ran, and the end of its log."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import PlatformError
from conveyor.platform import process
from conveyor.platform.components import PrefectServer, Registry


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_registry_on_a_busy_port_fails_with_its_log(tmp_path: Path, busy_port: int) -> None:
    registry = Registry(tmp_path, busy_port)
    with pytest.raises(PlatformError) as caught:
        registry.up()
    message = str(caught.value)
    assert message.startswith("registry: exited before becoming healthy")
    assert "address already in use" in message
    assert str(registry.log) in message
    record = process.read_pidfile(registry.pidfile)
    assert record is None or not process.is_running(record)


def test_prefect_on_a_busy_port_fails_with_its_log(tmp_path: Path, busy_port: int) -> None:
    prefect = PrefectServer(tmp_path, busy_port)
    with pytest.raises(PlatformError) as caught:
        prefect.up()
    message = str(caught.value)
    assert message.startswith("prefect: exited before becoming healthy")
    assert str(busy_port) in message
    prefect.down()
    record = process.read_pidfile(prefect.pidfile)
    assert record is None or not process.is_running(record)
