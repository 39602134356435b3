"""PostgreSQL as the scale profile's Prefect database: Debian's server, one process of ours.

A Prefect server split into an API process and a services process (prefect_split.py) needs a
database both can write at once; SQLite is one file behind one writer. The cluster is made by
`initdb` under `<state>/postgres/data`, listens on 127.0.0.1 only (no Unix socket), and admits one
role, `prefect`, by a password generated into `<state>/postgres/password` (0600).

PostgreSQL refuses to run as root ("root execution of the PostgreSQL server is not permitted"),
and this platform often is root (CI, containers). A dedicated system user (`runuser -u postgres`)
would need the data folder chowned to it and every folder above it open to it, which a state
folder under a private temporary folder (pytest's, mode 0700) is not. So, as root, the server
runs in a user namespace of its own (`unshare --user --map-user=1 --map-group=1`): inside, it is
uid 1, not root, and sees our files as its own; outside, its files and processes stay ours, so
`down` signals them and `down --purge` deletes them like any other. Another user runs the server
directly.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import ClassVar

from conveyor.errors import PlatformError
from conveyor.platform import process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.service import PasswordedService, run_command

ROLE = "prefect"
DATABASE = "prefect"
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
"""Debian installs each major version's programs in /usr/lib/postgresql/<major>/bin."""
NOT_ROOT = ("unshare", "--user", "--map-user=1", "--map-group=1", "--")
"""How root runs PostgreSQL's programs (see the module's docstring)."""


def binaries_folder() -> Path:
    """Where `postgres`, `initdb`, `pg_isready` and `psql` are: $CONVEYOR_POSTGRES_BIN, else
    the folder `initdb` on PATH really lives in, else Debian's newest version."""
    configured = os.environ.get("CONVEYOR_POSTGRES_BIN")
    candidates = [Path(configured)] if configured else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = sorted(
        DEBIAN_BINARIES.glob("*/bin"),
        key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(versions)
    for folder in candidates:
        if (folder / "postgres").is_file() and (folder / "initdb").is_file():
            return folder
    raise PlatformError(
        "postgres: no PostgreSQL server found (postgres and initdb, in $CONVEYOR_POSTGRES_BIN, "
        f"beside initdb on PATH or in {DEBIAN_BINARIES}/<version>/bin)",
        hint="run ./dev setup (it installs Debian's postgresql)",
    )


class Postgres(PasswordedService):
    """A PostgreSQL cluster under `<state>/postgres` serving the database `prefect`."""

    name = "postgres"
    process_name = "postgres"
    stop_signal: ClassVar[signal.Signals | None] = signal.SIGINT
    """Fast shutdown: the server ends its sessions and its own helper processes, in order."""
    stop_grace_seconds = 15.0
    healthy_detail = f"PostgreSQL, database {DATABASE}"

    def __init__(self, state: Path, port: int) -> None:
        super().__init__(state, port)
        self.data = self.home / "data"

    @property
    def url(self) -> str:
        """Prefect's database URL (asyncpg is the driver Prefect's server uses)."""
        return f"postgresql+asyncpg://{ROLE}:{self.password()}@127.0.0.1:{self.port}/{DATABASE}"

    def client_environment(self) -> dict[str, str]:
        """What psql and pg_isready need to reach the database."""
        return dict(
            os.environ,
            PGHOST="127.0.0.1",
            PGPORT=str(self.port),
            PGUSER=ROLE,
            PGPASSWORD=self.password(),
            PGDATABASE=DATABASE,
            PGCONNECT_TIMEOUT="3",
        )

    def psql(self, sql: str, *, database: str = DATABASE) -> str:
        """Run one SQL statement as the `prefect` role; its rows, unaligned, one a line."""
        command = [str(binaries_folder() / "psql"), "-X", "-q", "-At", "-d", database, "-c", sql]
        return run_command(self.name, command, self.client_environment(), self.log, timeout=30)

    def probe(self, record: process.ProcessRecord) -> str | None:
        command = [str(binaries_folder() / "pg_isready"), "-q", "-t", "2", "-d", "postgres"]
        try:
            answered = subprocess.run(
                command, env=self.client_environment(), capture_output=True, timeout=5
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"pg_isready failed: {exc}"
        return None if answered.returncode == 0 else "not accepting connections (pg_isready)"

    def _as_non_root(self, command: list[str]) -> list[str]:
        return [*NOT_ROOT, *command] if os.geteuid() == 0 else command

    def _initdb(self, folder: Path) -> None:
        """A new cluster in `<state>/postgres/data`, made in a scratch folder first so a failed
        initdb leaves nothing that a later one would refuse."""
        scratch = self.home / "data.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        self.password()  # the password file initdb reads
        command = self._as_non_root(
            [
                str(folder / "initdb"),
                "--pgdata",
                str(scratch),
                "--username",
                ROLE,
                f"--pwfile={self.password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        run_command(self.name, command, os.environ, self.log, timeout=120)
        scratch.rename(self.data)

    def up(self, progress: PlatformProgress | None = None) -> None:
        if self.health().healthy:
            return
        folder = binaries_folder()
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").is_file():
            if progress:
                progress(f"creating the PostgreSQL cluster in {self.data}", 0, 0)
            self._initdb(folder)
        if progress:
            progress(f"starting postgres on {self.shown_address}", 0, 0)
        command = [
            str(folder / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ]
        self._start(self._as_non_root(command), timeout=60)
        if self.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database="postgres"
        ):
            return
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}", database="postgres")
