"""Prefect's REST API as tests and benchmarks read it: the core's client, plus raw records.

Tests and benchmarks need what the CLI never asks for: a run's timestamps and state history, its
task runs, deployments that may not exist, deletions. They go through the client of
conveyor.adapters.prefect_api (its retries when a busy server answers 503, its errors), so there
is one Prefect client in the project, not one per script.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from conveyor.adapters.prefect_api import PrefectAPI
from conveyor.errors import InputError

TASK_RUNS_PAGE = 200


class PrefectREST(PrefectAPI):
    """The core's client with raw JSON calls; a 404 raises InputError, as in the core."""

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._call("POST", path, body)

    def delete(self, path: str) -> bool:
        """DELETE `path`; False when there was nothing to delete (404)."""
        try:
            self._call("DELETE", path)
        except InputError:
            return False
        return True

    def flow_run_record(self, run_id: str) -> dict[str, Any]:
        """A flow run as Prefect stores it (times, state, tags...), not the core's summary."""
        record: dict[str, Any] = self.get(f"/flow_runs/{run_id}")
        return record

    def update_tags(self, run_id: str, tags: list[str]) -> None:
        """Replace a flow run's tags (as any API caller can)."""
        self._call("PATCH", f"/flow_runs/{run_id}", {"tags": tags})

    def pause_description(self, run_id: str, timeout: float = 30) -> str:
        """The form text a paused run shows to whoever resumes it (its approval form). Prefect
        stores the form just after the run enters Paused, so a run found paused a moment ago
        may not show it yet: look again for up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not (text := self.pause_form(self.flow_run(run_id))):
            assert time.monotonic() < deadline, f"flow run {run_id} shows no form"
            time.sleep(0.5)
        return text

    def task_run_records(self, run_id: str) -> list[dict[str, Any]]:
        """Every task run of a flow run, page by page."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.post(
                "/task_runs/filter",
                {
                    "flow_runs": {"id": {"any_": [run_id]}},
                    "limit": TASK_RUNS_PAGE,
                    "offset": len(found),
                },
            )
            found += page
            if len(page) < TASK_RUNS_PAGE:
                return found

    def deployment_record(self, flow: str, name: str) -> dict[str, Any] | None:
        """The deployment `flow/name`, or None when Prefect has none by that name."""
        try:
            return self.deployment(flow, name)
        except InputError:
            return None

    def delete_deployment(self, flow: str, name: str) -> None:
        """Delete the deployment `flow/name` when it exists."""
        found = self.deployment_record(flow, name)
        if found is not None:
            self.delete(f"/deployments/{found['id']}")

    def delete_concurrency_limit(self, name: str) -> None:
        """Delete the global concurrency limit `name` when it exists."""
        self.delete(f"/v2/concurrency_limits/{urllib.parse.quote(name)}")
