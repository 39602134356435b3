"""Redis for the scale profile: what Prefect's processes share besides the database.

An API process and a services process cannot pass events, automations' triggers, concurrency
leases or background tasks to each other in memory, as the single embedded server does. With the
`prefect-redis` integration they pass them through this Redis (prefect_split.py sets which
settings point where). It is Debian's `redis-server`, one process of ours on 127.0.0.1 with a
password generated into `<state>/redis/password` (0600), appending every write to a file under
`<state>/redis`, so a restart keeps the leases that hold targets and the messages not yet read.

Health is asked in Redis's own protocol over a socket (AUTH, then PING): a few bytes, no client
library.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import BinaryIO

from conveyor.platform import process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.service import PasswordedService, debian_program


class RedisError(Exception):
    """Redis answered an error, or did not answer."""


def _encode(*arguments: str) -> bytes:
    parts = [f"*{len(arguments)}\r\n".encode()]
    for argument in arguments:
        data = argument.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _reply(stream: BinaryIO) -> str | int | list[object] | None:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:-2].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_reply(stream) for _ in range(count)]
    raise RedisError(f"unexpected reply {line[:40]!r}")


def call(port: int, password: str, *command: str, timeout: float = 2.0) -> object:
    """AUTH with `password`, then run `command` on 127.0.0.1:`port`; its reply."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection,
            connection.makefile("rb") as replies,
        ):
            connection.sendall(_encode("AUTH", password) + _encode(*command))
            _reply(replies)
            return _reply(replies)
    except OSError as exc:
        raise RedisError(str(exc)) from exc


class Redis(PasswordedService):
    """`redis-server` with its data under `<state>/redis`."""

    name = "redis"
    process_name = "redis-server"
    healthy_detail = "Redis: Prefect's messaging, leases and background tasks"

    def call(self, *command: str) -> object:
        """One command, answered by this Redis (RedisError when it cannot)."""
        return call(self.port, self.password(), *command)

    def probe(self, record: process.ProcessRecord) -> str | None:
        try:
            answer = self.call("PING")
        except RedisError as exc:
            return f"not answering PING: {exc}"
        return None if answer == "PONG" else f"answered PING with {answer!r}"

    def _write_config(self) -> Path:
        """redis.conf, readable by its owner only: it holds the password."""
        config = self.home / "redis.conf"
        lines = [
            "bind 127.0.0.1",
            f"port {self.port}",
            "protected-mode yes",
            f"requirepass {self.password()}",
            f'dir "{self.home}"',
            "daemonize no",
            'logfile ""',
            'save ""',
            "appendonly yes",
            "appendfsync everysec",
        ]
        config.touch(mode=0o600, exist_ok=True)
        config.chmod(0o600)
        config.write_text("\n".join(lines) + "\n")
        return config

    def up(self, progress: PlatformProgress | None = None) -> None:
        if self.health().healthy:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if progress:
            progress(f"starting redis on {self.shown_address}", 0, 0)
        self._start([debian_program(self.name, "redis-server"), str(config)], timeout=20)
