"""What every long-running process of the local platform shares: start, probe, stop, secrets.

A component that is one process of ours (the registry, a Prefect server, PostgreSQL, Redis, a
Prefect worker...) is started detached and recorded in a pid file (conveyor/platform/process.py),
is healthy while that process runs and its probe answers, and keeps its data in one folder that
`down --purge` deletes. Subclasses only say what runs, where it answers and how to ask it.

The credentials the platform makes for its own servers (Prefect's API auth string, the database
and Redis passwords) are generated on first use into a file of the state folder that only its
owner can read, so nothing else on the machine can use those servers behind the platform's back.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from conveyor.errors import PlatformError
from conveyor.platform import process


@dataclass
class Health:
    """One component's state as `platform status` shows it."""

    component: str
    healthy: bool
    address: str
    detail: str
    processes: dict[str, int | None] = field(default_factory=dict)
    """Process name -> pid while alive, None when recorded but dead."""


def describe(health: Health) -> dict[str, Any]:
    """A JSON-ready view of a component's health."""
    return asdict(health)


def http_ok(url: str, *, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def run_command(
    component: str,
    command: list[str],
    env: Mapping[str, str],
    log: Path,
    *,
    timeout: float = 300,
    cwd: Path | None = None,
) -> str:
    """Run a set-up command to completion and return its output; on failure raise naming the
    component, the command and the last lines of its output."""
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            command,
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PlatformError(
            f"{component}: `{' '.join(command)}` could not run: {exc}", hint=f"full log: {log}"
        ) from exc
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise PlatformError(
            f"{component}: `{' '.join(command)}` exited {result.returncode}:\n{tail}",
            hint=f"full log: {log}",
        )
    return result.stdout


def generated_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made by `make()` and written with mode 0600 on first use (by
    whichever process gets there first, when several start at once)."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value


def debian_program(component: str, program: str) -> str:
    """The path of `program`, which ./dev setup installs from the Debian package of that name;
    a PlatformError naming `component` when it is missing."""
    found = shutil.which(program)
    if not found:
        raise PlatformError(
            f"{component}: `{program}` is not installed",
            hint=f"run ./dev setup (it installs the Debian package {program})",
        )
    return found


def random_password() -> str:
    """A password that needs no quoting in a URL or a configuration file."""
    return secrets.token_hex(24)


class ServiceProcess(ABC):
    """A component that is one process of ours: started detached and recorded in a pid file,
    healthy while that process runs and `probe()` finds nothing wrong, its data in one folder.
    Subclasses say what runs, where it keeps its data and how it is probed (by default, an HTTP
    endpoint that answers 2xx)."""

    name: str
    """The component's name in `platform status`, its pid file's and its log's."""
    process_name: str
    """The process's name in `platform status`."""
    stop_grace_seconds: ClassVar[float] = 10.0
    stop_signal: ClassVar[signal.Signals | None] = None
    """Sent to the process alone to stop it (it stops its own children); None: SIGTERM to its
    whole process group."""
    healthy_detail: str

    def __init__(self, state: Path, port: int) -> None:
        self.port = port
        self.pidfile = state / "run" / f"{self.name}.pid"
        self.log = state / "logs" / f"{self.name}.log"
        self._command: list[str] = []
        """What `_spawn` ran last, for error messages."""

    @property
    @abstractmethod
    def data_folder(self) -> Path | None:
        """What `down(purge=True)` deletes (None: it keeps nothing of its own)."""

    @property
    @abstractmethod
    def shown_address(self) -> str:
        """Where people reach it, as `platform status` shows it."""

    @property
    def health_url(self) -> str:
        """What answers 2xx while it is healthy (for the default probe)."""
        raise NotImplementedError(f"{self.name} has no health URL")

    def probe(self, record: process.ProcessRecord) -> str | None:
        """Why the running process `record` is not healthy, or None when it is."""
        if not http_ok(self.health_url):
            return f"not answering {urllib.parse.urlsplit(self.health_url).path}"
        return None

    def detail(self, record: process.ProcessRecord) -> str:
        """What `platform status` says about the healthy process `record`."""
        return self.healthy_detail

    def record(self) -> process.ProcessRecord | None:
        """The process of ours that runs now, or None."""
        record = process.read_pidfile(self.pidfile)
        return record if record is not None and process.is_running(record) else None

    def down(self, *, purge: bool = False) -> None:
        record = process.read_pidfile(self.pidfile)
        if record:
            process.stop(
                record, grace_seconds=self.stop_grace_seconds, leader_signal=self.stop_signal
            )
        self.pidfile.unlink(missing_ok=True)
        if purge and self.data_folder is not None:
            shutil.rmtree(self.data_folder, ignore_errors=True)

    def health(self) -> Health:
        record = process.read_pidfile(self.pidfile)
        alive = record is not None and process.is_running(record)
        pids = {self.process_name: record.pid if alive and record else None} if record else {}
        if not alive or record is None:
            return Health(self.name, False, self.shown_address, "not running", pids)
        problem = self.probe(record)
        if problem is not None:
            return Health(self.name, False, self.shown_address, problem, pids)
        return Health(self.name, True, self.shown_address, self.detail(record), pids)

    def _spawn(
        self,
        command: list[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start the process, stopping a dead or stale one of ours first."""
        self.down()
        self._command = command
        process.spawn(self.name, command, pidfile=self.pidfile, logfile=self.log, env=env, cwd=cwd)

    def _wait_healthy(self, timeout: float) -> None:
        """Wait until the started process is healthy; raise naming it, what went wrong and the
        last lines of its log when it exits first or the time is up."""
        deadline = time.monotonic() + timeout
        outcome = f"did not become healthy within {timeout:.0f}s"
        while time.monotonic() < deadline:
            if self.health().healthy:
                return
            if self.record() is None:
                outcome = "exited before becoming healthy"
                break
            time.sleep(0.25)
        command = " ".join(self._command) or self.process_name
        raise PlatformError(
            f"{self.name}: {outcome} ({self.health().detail}); ran `{command}`; "
            f"last lines of {self.log}:\n{process.log_tail(self.log)}",
        )

    def _start(
        self,
        command: list[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Start the process (stopping a dead one first) and wait until it is healthy."""
        self._spawn(command, env=env, cwd=cwd)
        self._wait_healthy(timeout)


class PasswordedService(ServiceProcess):
    """A service of ours with its data and a generated password (0600) under `<state>/<name>`,
    addressed as host:port (a database, not an HTTP server)."""

    def __init__(self, state: Path, port: int) -> None:
        super().__init__(state, port)
        self.home = state / self.name
        self.password_file = self.home / "password"

    @property
    def data_folder(self) -> Path:
        return self.home

    @property
    def shown_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def password(self) -> str:
        return generated_secret(self.password_file, random_password)
