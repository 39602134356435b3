"""The scale profile's Prefect part: the processes a team runs on its own servers, on one machine.

Where the embedded profile runs one `prefect server start` on SQLite and `conveyor serve` runs
every flow, this profile runs

    postgres          PostgreSQL, Prefect's database                      (postgres.py)
    redis             Redis, Prefect's messaging, leases and background tasks  (redis_server.py)
    prefect-api       prefect server start --no-services                  (prefect_split.py)
    prefect-services  prefect server services start                       (prefect_split.py)
    worker-1..n       prefect worker start --pool conveyor --type process (workers.py)

with the deployments of deployments/prefect.yaml registered on the workers' pool. It is brought
up in that order (each needs the ones before it) and taken down in the reverse one. It is a
profile of the local platform (local.py): the cluster and the registry are the same as in the
embedded profile, and so are the contract (idempotent `up`, `status` per component, `down` of our
own processes only) and the state folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from conveyor.adapters.prefect_api import HEARTBEAT_ENVIRONMENT
from conveyor.platform.binaries import PlatformProgress
from conveyor.platform.postgres import Postgres
from conveyor.platform.prefect_split import PrefectAPIServer, PrefectServices
from conveyor.platform.redis_server import Redis
from conveyor.platform.service import ServiceProcess
from conveyor.platform.workers import (
    Deployments,
    PrefectWorker,
    conveyor_config,
    conveyor_home,
    start_workers,
)

WORKER_COUNT = 2


class ScalePrefect:
    """PostgreSQL, Redis, the split Prefect server and its workers, under one state folder."""

    def __init__(
        self,
        state: Path,
        *,
        api_port: int,
        postgres_port: int,
        redis_port: int,
        workers: int = WORKER_COUNT,
    ) -> None:
        self.state = state
        self.postgres = Postgres(state, postgres_port)
        self.redis = Redis(state, redis_port)
        self.api = PrefectAPIServer(state, api_port, self.postgres, self.redis)
        self.services = PrefectServices(state, self.api)
        self.deployments = Deployments(state, self.api, conveyor_home())
        self.workers = [
            PrefectWorker(state, number, self.api, self.deployments.pool)
            for number in range(1, workers + 1)
        ]

    @property
    def components(self) -> list[ServiceProcess]:
        """In the order they are brought up."""
        return [self.postgres, self.redis, self.api, self.services, *self.workers]

    def run_environment(self, platform: Mapping[str, str]) -> dict[str, str]:
        """What the workers, and so every flow run, get: the platform's environment, the API's
        client settings, the configuration to read and the heartbeats (see workers.py)."""
        return {
            **platform,
            **self.api.environment(),
            "CONVEYOR_CONFIG": str(conveyor_config(self.deployments.home)),
            "CONVEYOR_STATE": str(self.state),
            # As `conveyor serve` does: unless the caller chose another frequency.
            **{name: os.environ.get(name, value) for name, value in HEARTBEAT_ENVIRONMENT.items()},
        }

    def up(self, platform: Mapping[str, str], progress: PlatformProgress | None = None) -> None:
        """Start what is not healthy; register the deployments when they are stale.

        PostgreSQL, Redis and the API start one after the other (each needs the ones before).
        The services and the workers then start together; the workers' first heartbeats create
        their pool, which `prefect deploy` needs, so it runs once they are up."""
        environment = self.run_environment(platform)  # refuses a missing configuration first
        self.postgres.up(progress)
        self.redis.up(progress)
        self.api.up(progress)
        services = not self.services.health().healthy
        if services:
            self.services.spawn(progress)
        start_workers(self.workers, environment, progress)
        self.deployments.ensure(progress)
        if services:
            self.services.wait()

    def down(self, *, purge: bool = False) -> None:
        for component in reversed(self.components):
            component.down(purge=purge)
