"""Start, find and stop the platform's own background processes, by pid and nothing else.

A pid file records the pid and the process's start time (from /proc), so a recycled pid that now
belongs to somebody else is never mistaken for ours and never signalled. Each process is started
in a session of its own, so stopping it also stops the children it spawned (the Prefect server's
workers, for instance) and nothing outside that group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import PlatformError


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file holds about one process we started."""

    pid: int
    start_ticks: int
    command: tuple[str, ...]


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, from the state (field 3) on; None
    when the process is gone. The command name may hold spaces and parentheses: it is skipped
    up to its last ")"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def parent_pid(pid: int) -> int | None:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    state, start = fields[0], fields[19]
    if state in ("Z", "X"):
        return None
    return int(start)


def is_running(record: ProcessRecord) -> bool:
    """True when the recorded process is still alive and is the same process we started."""
    return start_ticks(record.pid) == record.start_ticks


def read_pidfile(path: Path) -> ProcessRecord | None:
    """The record in `path`, or None when there is no pid file or it cannot be read."""
    try:
        data = json.loads(path.read_text())
        return ProcessRecord(int(data["pid"]), int(data["start_ticks"]), tuple(data["command"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def spawn(
    name: str,
    command: Sequence[str],
    *,
    pidfile: Path,
    logfile: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start `command` detached in a new session, logging to `logfile`; record it in `pidfile`."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with logfile.open("ab") as log:
        try:
            proc = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise PlatformError(
                f"{name}: cannot start {command[0]}: {exc}",
                hint="check that the platform's binaries are installed (`conveyor platform up`)",
            ) from exc
    ticks = start_ticks(proc.pid)
    record = ProcessRecord(proc.pid, ticks if ticks is not None else -1, tuple(command))
    pidfile.write_text(
        json.dumps({"pid": record.pid, "start_ticks": record.start_ticks, "command": list(command)})
    )
    return record


def stop(
    record: ProcessRecord,
    *,
    grace_seconds: float = 10.0,
    leader_signal: signal.Signals | None = None,
) -> None:
    """Stop the recorded process and its process group: SIGTERM to the group (or
    `leader_signal` to the process alone, for a server that stops its own children in order),
    then SIGKILL to the group after a grace."""
    if not is_running(record):
        return
    if leader_signal is None:
        _signal_group(record.pid, signal.SIGTERM)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, leader_signal)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not is_running(record) and not group_alive(record.pid):
            return
        time.sleep(0.1)
    _signal_group(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (is_running(record) or group_alive(record.pid)):
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process remains in process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port`. Connections of a server stopped a moment
    ago, waiting out their close (TIME_WAIT), do not count: a server binds past them
    (SO_REUSEADDR), as this check does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def log_tail(logfile: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log, for error messages."""
    try:
        text = logfile.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
