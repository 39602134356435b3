"""The scale profile's Prefect server, split as a team runs it: an API process, a services process.

`prefect server start --no-services` answers the API and the UI; `prefect server services start`
runs the background services (the scheduler, late runs, the automations' triggers that mark a
silent run Crashed, the event persister...). Two processes share nothing in memory, so both are
pointed at the same PostgreSQL database and the same Redis, by these settings:

- the database, PREFECT_SERVER_DATABASE_CONNECTION_URL=postgresql+asyncpg://...: every record;
- PREFECT_MESSAGING_BROKER and PREFECT_MESSAGING_CACHE=prefect_redis.messaging: events, from the
  API to the services' consumers, through Redis streams;
- PREFECT_SERVER_EVENTS_CAUSAL_ORDERING=prefect_redis.ordering: the order events are handled in;
- PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect_redis.lease_storage: the leases of concurrency
  slots, which are Conveyor's target locks;
- PREFECT_SERVER_DOCKET_URL=redis://...: Prefect's background tasks (docket);
- PREFECT_REDIS_MESSAGING_HOST, _PORT and _PASSWORD: where prefect-redis finds Redis.

The API keeps the embedded server's credential (PREFECT_SERVER_API_AUTH_STRING, in
`<state>/prefect/api-auth-string`) and home (`<state>/prefect`). Clients get only the URL and the
credential, never the database's or Redis' password.

The services process has no port: it is healthy while its background-task worker beats in Redis
(docket's worker set, where it appears as `<host>#<pid>`).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from conveyor.platform import process
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.components import PrefectServer, prefect_command
from conveyor.platform.postgres import Postgres
from conveyor.platform.redis_server import Redis, RedisError
from conveyor.platform.service import ServiceProcess

SERVICES_DOCKET = "prefect"
"""The docket `prefect server services start` runs its background tasks in (prefect 3.9's
`_run_all_services`); the API's is PREFECT_SERVER_DOCKET_NAME, `prefect-server`."""
HEARTBEAT_STALE_SECONDS = 15.0
"""Docket workers beat every 2 s; one silent this long is stuck or gone."""


class PrefectAPIServer(PrefectServer):
    """`prefect server start --no-services` on PostgreSQL and Redis."""

    name = "prefect-api"
    process_name = "prefect-api"
    healthy_detail = "API at /api, UI at / (PostgreSQL, Redis)"
    start_timeout = 120.0
    """The first start creates every table in PostgreSQL."""

    def __init__(self, state: Path, port: int, postgres: Postgres, redis: Redis) -> None:
        super().__init__(state, port)
        self.postgres = postgres
        self.redis = redis

    def environment(self) -> dict[str, str]:
        """What a client of this server needs: its home, URL and credential."""
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_API_AUTH_STRING": self.auth_string(),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
        }

    def server_environment(self) -> dict[str, str]:
        """What the API and the services processes run with (see the module's docstring)."""
        redis_password = self.redis.password()
        return {
            **self.environment(),
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string(),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.postgres.url,
            "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
            "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
            "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
            "PREFECT_SERVER_DOCKET_URL": f"redis://:{redis_password}@127.0.0.1:{self.redis.port}/0",
            "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
            "PREFECT_REDIS_MESSAGING_PORT": str(self.redis.port),
            "PREFECT_REDIS_MESSAGING_PASSWORD": redis_password,
            # As on the embedded server: a run waiting for a target's slot asks again soon.
            "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        }

    def server_command(self) -> list[str]:
        return [*super().server_command(), "--no-services"]


class PrefectServices(ServiceProcess):
    """`prefect server services start`: Prefect's background services in one process."""

    name = "prefect-services"
    process_name = "prefect-services"
    stop_grace_seconds = 15.0
    healthy_detail = "scheduler, late runs, triggers, event persister... (Redis, PostgreSQL)"

    def __init__(self, state: Path, api: PrefectAPIServer) -> None:
        super().__init__(state, api.port)
        self.api = api

    @property
    def data_folder(self) -> None:
        return None

    @property
    def shown_address(self) -> str:
        return f"docket {SERVICES_DOCKET} on redis {self.api.redis.shown_address}"

    def probe(self, record: process.ProcessRecord) -> str | None:
        worker = f"{socket.gethostname()}#{record.pid}"
        try:
            beat = self.api.redis.call("ZSCORE", f"{SERVICES_DOCKET}:workers", worker)
        except RedisError as exc:
            return f"cannot ask Redis for its heartbeat: {exc}"
        if not isinstance(beat, str):
            return "no heartbeat in Redis yet"
        if time.time() - float(beat) > HEARTBEAT_STALE_SECONDS:
            return f"last heartbeat in Redis {time.time() - float(beat):.0f}s ago"
        return None

    def up(self, progress: PlatformProgress | None = None) -> None:
        if not self.health().healthy:
            self.spawn(progress)
            self.wait()

    def spawn(self, progress: PlatformProgress | None = None) -> None:
        """Start the services (stopping a dead process of ours first); `wait` for them after."""
        if progress:
            progress("starting prefect server services", 0, 0)
        command = [prefect_command(), "server", "services", "start"]
        self._spawn(command, env=self.api.server_environment(), cwd=self.api.home)

    def wait(self) -> None:
        self._wait_healthy(60)
