"""The platform's profile: recorded with its ports, followed by later commands, never switched
under running processes; and the few bytes of Redis' protocol the scale profile speaks."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.errors import InputError, PlatformError
from conveyor.platform import process, redis_server
from conveyor.platform.local import LocalPlatform


def _record(state: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((state / "platform.json").read_text())
    return data


def test_the_scale_profile_is_recorded_with_its_ports_and_followed(tmp_path: Path) -> None:
    scale = LocalPlatform(tmp_path, profile="scale")
    record = _record(tmp_path)
    assert record["profile"] == "scale"
    keys = ("registry_port", "prefect_port", "postgres_port", "redis_port")
    ports = [record[key] for key in keys]
    assert len(set(ports)) == 4
    assert [c.name for c in scale.components] == [
        "kubernetes",
        "kubernetes-2",
        "registry",
        "postgres",
        "redis",
        "prefect-api",
        "prefect-services",
        "worker-1",
        "worker-2",
    ]

    later = LocalPlatform(tmp_path)  # status, env, down: no profile given
    assert later.profile == "scale"
    assert later.ports == scale.ports
    assert later.environment()["PREFECT_API_URL"] == scale.prefect.api_url


def test_a_platform_json_without_a_profile_is_the_embedded_one_and_stays_as_it_is(
    tmp_path: Path,
) -> None:
    original = '{"registry_port": 5001, "prefect_port": 4201}\n'
    (tmp_path / "platform.json").write_text(original)
    platform = LocalPlatform(tmp_path)
    assert platform.profile == "embedded"
    assert [c.name for c in platform.components] == [
        "kubernetes",
        "kubernetes-2",
        "registry",
        "prefect",
    ]
    assert (tmp_path / "platform.json").read_text() == original


def test_an_unknown_profile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no platform profile 'huge'"):
        LocalPlatform(tmp_path, profile="huge")


def test_the_profile_does_not_change_while_a_process_of_the_other_one_runs(
    tmp_path: Path,
) -> None:
    embedded = LocalPlatform(tmp_path)
    # The embedded Prefect server "runs": its pid file names a live process (this one).
    ticks = process.start_ticks(os.getpid())
    embedded.prefect.pidfile.parent.mkdir(parents=True)
    embedded.prefect.pidfile.write_text(
        json.dumps({"pid": os.getpid(), "start_ticks": ticks, "command": ["prefect"]})
    )
    with pytest.raises(PlatformError, match=r"runs the embedded profile \(prefect running\)"):
        LocalPlatform(tmp_path, profile="scale")
    assert _record(tmp_path)["profile"] == "embedded"

    embedded.prefect.pidfile.unlink()
    assert LocalPlatform(tmp_path, profile="scale").profile == "scale"
    assert _record(tmp_path)["profile"] == "scale"


@pytest.fixture
def fake_redis() -> Iterator[tuple[int, list[bytes]]]:
    """A server on 127.0.0.1 that records what it is sent and answers AUTH, then one reply
    with a nested array holding bulk strings longer than one socket read."""
    big = b"x" * 200_000
    reply = b"*2\r\n*2\r\n$%d\r\n%s\r\n:7\r\n$-1\r\n" % (len(big), big)
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            data = b""
            while data.count(b"\r\n") < 10:  # AUTH and GET, five lines each
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
            received.append(data)
            connection.sendall(b"+OK\r\n" + reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    thread.join(5)
    server.close()


def test_redis_commands_are_sent_and_read_in_resp(fake_redis: tuple[int, list[bytes]]) -> None:
    port, received = fake_redis
    answer = redis_server.call(port, "secret", "GET", "key")
    assert received == [b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"]
    assert answer == [["x" * 200_000, 7], None]


def test_a_redis_error_reply_raises() -> None:
    server = socket.create_server(("127.0.0.1", 0))

    def refuse() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(1024)
            connection.sendall(b"-WRONGPASS invalid username-password pair\r\n")

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    with pytest.raises(redis_server.RedisError, match="WRONGPASS"):
        redis_server.call(server.getsockname()[1], "wrong", "PING")
    thread.join(5)
    server.close()


def test_the_number_of_clusters_is_chosen_once_and_kept(tmp_path: Path) -> None:
    one = LocalPlatform(tmp_path, clusters=1)
    assert [c.name for c in one.components if c.name.startswith("kubernetes")] == ["kubernetes"]
    assert _record(tmp_path)["clusters"] == 1
    assert len(LocalPlatform(tmp_path).clusters) == 1, "later commands follow the record"
    with pytest.raises(InputError, match=r"runs 1 cluster\(s\), not 3"):
        LocalPlatform(tmp_path, clusters=3)
    fresh = LocalPlatform(tmp_path / "other")
    assert [c.kubeconfig.name for c in fresh.clusters] == ["kubeconfig", "kubeconfig-2"]
