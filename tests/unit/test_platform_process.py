"""Pid files and process groups: we only ever signal processes we started, and all of them."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from conveyor.errors import PlatformError
from conveyor.platform import process


def _spawn(tmp_path: Path, script: str) -> process.ProcessRecord:
    return process.spawn(
        "test",
        ["sh", "-c", script],
        pidfile=tmp_path / "run" / "test.pid",
        logfile=tmp_path / "logs" / "test.log",
    )


def test_spawned_process_is_recorded_and_stopped_with_its_children(tmp_path: Path) -> None:
    record = _spawn(tmp_path, "sleep 60 & echo started; sleep 60")
    assert process.read_pidfile(tmp_path / "run" / "test.pid") == record
    assert process.is_running(record)
    deadline = time.monotonic() + 5
    while "started" not in process.log_tail(tmp_path / "logs" / "test.log"):
        assert time.monotonic() < deadline, "the child never wrote to its log"
        time.sleep(0.05)
    assert process.group_alive(record.pid)

    process.stop(record)

    assert not process.is_running(record)
    assert not process.group_alive(record.pid), "the background child was stopped too"


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    record = _spawn(tmp_path, "trap '' TERM; while true; do sleep 0.1; done")
    started = time.monotonic()
    process.stop(record, grace_seconds=0.5)
    assert not process.is_running(record)
    assert time.monotonic() - started < 5


def test_a_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    me = process.start_ticks(os.getpid())
    assert me is not None
    impostor = process.ProcessRecord(os.getpid(), me + 1, ("old",))
    assert not process.is_running(impostor)
    process.stop(impostor, grace_seconds=0.1)  # must not signal this very test process
    assert process.is_running(process.ProcessRecord(os.getpid(), me, ()))


def test_an_exited_child_that_was_not_reaped_counts_as_dead(tmp_path: Path) -> None:
    record = _spawn(tmp_path, "exit 0")
    deadline = time.monotonic() + 5
    while process.is_running(record):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert process.start_ticks(record.pid) is None


@pytest.mark.parametrize(
    "content",
    ["", "not json", '{"pid": 1}', '{"pid": "x", "start_ticks": 1, "command": []}', "[1, 2]"],
    ids=["empty", "garbage", "missing-fields", "bad-pid", "wrong-shape"],
)
def test_unreadable_pidfiles_are_treated_as_absent(tmp_path: Path, content: str) -> None:
    pidfile = tmp_path / "x.pid"
    pidfile.write_text(content)
    assert process.read_pidfile(pidfile) is None


def test_spawning_a_missing_program_names_the_component(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="registry: cannot start /no/such/program"):
        process.spawn(
            "registry",
            ["/no/such/program"],
            pidfile=tmp_path / "r.pid",
            logfile=tmp_path / "r.log",
        )


def test_free_port_is_free_until_taken() -> None:
    port = process.free_port()
    assert process.port_is_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not process.port_is_free(port)


def test_a_port_whose_last_connection_waits_out_its_close_is_free() -> None:
    """A server stopped a moment ago leaves its accepted connections in TIME_WAIT: nothing
    listens there, and a server restarted on that port binds it (SO_REUSEADDR, as etcd and
    the API server do); `up` found such ports "taken" after a `down`."""
    port = process.free_port()
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the server closes first: its side waits in TIME_WAIT
            client.recv(1)
    assert process.port_is_free(port)


def test_log_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert process.log_tail(tmp_path / "missing.log") == "(no log)"
