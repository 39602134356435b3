"""Prefect's REST API as the CLI needs it, over plain HTTP: the core never imports Prefect.

The CLI starts flow runs of the served deployments, follows them (state and logs), finds the run
waiting for an approval and answers it. Parameters are validated by the caller before a run is
created, because Prefect accepts unknown parameters and the run then crashes.

It is also the one home of what Conveyor and Prefect must agree on, whichever side reads it: the
flow and deployment names, the tag of a run waiting for an approval, when to send a request again
after a busy answer (this client and the target locks of tasks/locks.py), and which exit code a
run's final state stands for (the CLI following a served run, and `python -m flows`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConveyorError, InfrastructureError, InputError

RELEASE = "release"
PROMOTE_STAGE = "promote-stage"
DEPLOY_TARGET = "deploy-target"
RECONCILE = "reconcile"
ROLLBACK = "rollback"
WATCH_SOURCE = "watch-source"
RECONCILE_CLUSTER = "reconcile-cluster"
CONVEYOR_FLOWS = (
    RELEASE,
    PROMOTE_STAGE,
    DEPLOY_TARGET,
    RECONCILE,
    ROLLBACK,
    WATCH_SOURCE,
    RECONCILE_CLUSTER,
)
"""The names of Conveyor's flows: the @flow decorators, the CLI, `python -m flows`, the crash
automation and the deployments (`<flow>/conveyor`) all use these."""
SERVED_DEPLOYMENT = "conveyor"
"""The deployment name under which `deployments.serve` serves each flow but reconcile and
watch-source (one deployment per target and per app)."""

FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
HEARTBEAT_SECONDS = 30
"""How often Conveyor's flow runs tell Prefect they are alive (Prefect's minimum: 30 s)."""
SILENCE_SECONDS = 90
"""A Conveyor flow run silent this long (its process was killed, its machine died) is marked
Crashed by the automation below, so the UI and `TargetBusy` stop naming it as running."""
CRASH_AUTOMATION = "conveyor: mark silent runs Crashed"
HEARTBEAT_ENVIRONMENT = {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}
"""Set in the environment of the processes that run Conveyor's flows (unless already set)."""
PLAIN_CONSOLE_ENVIRONMENT = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS": "flows.console.PlainConsoleHandler"
}
"""Names Conveyor's console handler (flows/console.py) in the environment of the processes that
run its flows, for Prefect's logging configuration to use; here because it must be known
before Prefect is imported (`python -m flows`) and where Prefect is not (the workers)."""

LOCKED_FIRST_PAUSE = 0.01
LOCKED_MAX_PAUSE = 0.2
"""After a busy answer (503: a SQLite-backed server's database was locked by another write) the
pause doubles from LOCKED_FIRST_PAUSE up to LOCKED_MAX_PAUSE, each drawn between half and all of
that: the write that locked the database usually ends within milliseconds, so sleeping 2 s, then
4 s (the Prefect client's policy) only slows everything down."""
BUSY_POLL_CAP = 1.0
"""A request for a busy concurrency slot (423) is sent again at least this often, whatever
longer wait the server suggests."""
BUSY_RETRIES = 30
"""How often this client sends a request again after busy answers: five seconds of them at most."""
INPUT_STORED_WITHIN = 10.0
"""Prefect sets a run Paused first and stores its input schema and form just after; a run found
paused is resumed, or its form read, again for up to this many seconds until they are there."""
INPUT_SCHEMA_PENDING = "Run input schema not found."
"""Prefect's (3.x) reason for refusing to resume a run whose input schema is not stored yet."""
FAILED_RAISING = re.compile(r"Flow run encountered an exception: (?P<error>\w+): ")
"""How Prefect (3.9) words the message of a flow run's Failed state when the flow raised: the
exception's class name comes first."""


def pause_before_retry(status: int, retry_after: str | None, attempt: int = 0) -> float | None:
    """Seconds to wait before sending a request again after the `attempt`-th (from 0) busy
    answer with this status, or None when sending it again would not help."""
    suggested = _seconds(retry_after)
    if status == 423:  # every slot is taken: ask again when the server suggests, or sooner
        return max(0.05, min(BUSY_POLL_CAP if suggested is None else suggested, BUSY_POLL_CAP))
    if status == 429 and suggested is not None:  # too many requests: as late as it asks
        return suggested
    if status in (429, 502, 503):  # a busy server, or its proxy: nothing was applied
        ceiling = min(LOCKED_MAX_PAUSE, LOCKED_FIRST_PAUSE * 2 ** min(attempt, 16))
        return random.uniform(ceiling / 2, ceiling)
    return None


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header given in seconds, or None (absent, a date, nonsense)."""
    try:
        seconds = float(retry_after) if retry_after is not None else math.nan
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def awaiting_approval_tag(app: str, stage: str) -> str:
    """The tag of a flow run paused for an approval of `stage` of `app`: how `conveyor
    approve|reject` (and the tests) find the run to answer."""
    return f"conveyor-awaiting:{app}/{stage}"


def approval_pause_prefix(app: str, stage: str) -> str:
    """The start of the pause key of a run paused for an approval of `stage` of `app`. The key
    is part of the paused state itself, written with the pause, so finding the waiting run does
    not depend on a tag set by another request (keys allow only letters, digits and dashes,
    hence a hash of the names)."""
    names = hashlib.sha256(f"{app}/{stage}".encode()).hexdigest()[:16]
    return f"approval-{names}-"


def exit_code(state_type: str, message: str) -> int:
    """The exit code (conveyor.errors) of a command whose flow run ended in this state: 0 when
    it completed, the code of the Conveyor error it raised when it failed, else 1."""
    if state_type == "COMPLETED":
        return 0
    raised = FAILED_RAISING.match(message) if state_type == "FAILED" else None
    if raised is None:
        return 1
    codes: dict[str, int] = {}
    pending: list[type[ConveyorError]] = [ConveyorError]
    while pending:  # the error tree, by class name
        error = pending.pop()
        codes[error.__name__] = error.exit_code
        pending += error.__subclasses__()
    return codes.get(raised["error"], 1)


def crash_automation() -> dict[str, Any]:
    """The automation (Prefect's REST shape) that marks a Conveyor flow run Crashed when a
    heartbeat is not followed by another heartbeat or a final state within SILENCE_SECONDS."""
    return {
        "name": CRASH_AUTOMATION,
        "description": (
            f"Created by Conveyor: a run of {', '.join(CONVEYOR_FLOWS)} that has sent no "
            f"heartbeat for {SILENCE_SECONDS}s has lost its process; mark it Crashed."
        ),
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "after": ["prefect.flow-run.heartbeat"],
            "expect": [
                "prefect.flow-run.heartbeat",
                *(
                    f"prefect.flow-run.{name}"
                    for name in ("Completed", "Failed", "Cancelled", "Crashed", "TimedOut")
                ),
            ],
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "match_related": {
                "prefect.resource.role": "flow",
                "prefect.resource.name": list(CONVEYOR_FLOWS),
            },
            "for_each": ["prefect.resource.id"],
            "threshold": 1,
            "within": SILENCE_SECONDS,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": f"no heartbeat for {SILENCE_SECONDS}s: the run's process is gone",
            }
        ],
    }


@dataclass(frozen=True)
class FlowRun:
    id: str
    name: str
    state_type: str
    state_name: str
    tags: tuple[str, ...]
    message: str
    pause_key: str = ""

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> FlowRun:
        state = data.get("state") or {}
        return cls(
            str(data["id"]),
            str(data["name"]),
            str(state.get("type", "")),
            str(state.get("name", "")),
            tuple(data.get("tags") or ()),
            str(state.get("message") or ""),
            str((state.get("state_details") or {}).get("pause_key") or ""),
        )

    @property
    def exit_code(self) -> int:
        return exit_code(self.state_type, self.message)


@dataclass(frozen=True)
class ResumeVerdict:
    """Prefect's answer to resuming a paused run: ACCEPT, REJECT or ABORT, and why."""

    status: str
    reason: str = ""

    @classmethod
    def of(cls, answer: Mapping[str, Any]) -> ResumeVerdict:
        details = answer.get("details") or {}
        return cls(str(answer.get("status", "")), str(details.get("reason") or ""))

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPT"

    def __str__(self) -> str:
        return f"{self.status} ({self.reason})" if self.reason else self.status


class PrefectAPI:
    """A Prefect server at `url` (PREFECT_API_URL, e.g. http://127.0.0.1:4200/api)."""

    def __init__(
        self, url: str | None = None, *, timeout: float = 10.0, auth_string: str | None = None
    ) -> None:
        chosen = url or os.environ.get("PREFECT_API_URL")
        if not chosen:
            raise InputError(
                "no Prefect server configured: PREFECT_API_URL is not set",
                hint='run `eval "$(conveyor platform env)"` for the local platform',
            )
        self.url = chosen.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        # The same credentials the Prefect client sends: a server's auth string (Basic, as
        # PREFECT_SERVER_API_AUTH_STRING expects) or a Prefect Cloud key (Bearer).
        auth = auth_string or os.environ.get("PREFECT_API_AUTH_STRING")
        key = os.environ.get("PREFECT_API_KEY")
        if auth:
            self._headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        elif key:
            self._headers["Authorization"] = f"Bearer {key}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method=method,
            headers=self._headers,
        )
        try:
            raw = self._send(request)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            if error.code == 404:
                raise InputError(f"Prefect API {method} {path}: not found ({detail})") from None
            raise InfrastructureError(
                f"Prefect API {method} {path} answered {error.code}: {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise InfrastructureError(
                f"cannot reach the Prefect server at {self.url}: {error}",
                hint="is it running? (`conveyor platform status` for the local one)",
            ) from None
        return json.loads(raw) if raw else None

    def _send(self, request: urllib.request.Request) -> bytes:
        """The answer's body, sending the request again after busy answers (pause_before_retry)."""
        attempt = 0
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body: bytes = response.read()
                    return body
            except urllib.error.HTTPError as error:
                pause = pause_before_retry(error.code, error.headers.get("Retry-After"), attempt)
                if pause is None or attempt >= BUSY_RETRIES:
                    raise
                attempt += 1
                time.sleep(pause)

    def ensure_crash_automation(self) -> str:
        """Create Conveyor's crash automation, or bring it back to what Conveyor wants; its id."""
        wanted = crash_automation()
        query = {"automations": {"name": {"any_": [CRASH_AUTOMATION]}}, "limit": 1}
        found = self._call("POST", "/automations/filter", query)
        if found:
            automation_id = str(found[0]["id"])
            self._call("PUT", f"/automations/{automation_id}", wanted)
            return automation_id
        return str(self._call("POST", "/automations/", wanted)["id"])

    def healthy(self) -> bool:
        try:
            return bool(self._call("GET", "/health"))
        except ConveyorError:
            return False

    def work_pool_template(self, pool: str) -> dict[str, Any] | None:
        """The base job template of work pool `pool`; None when there is no such pool."""
        try:
            found = self._call("GET", f"/work_pools/{urllib.parse.quote(pool)}")
        except InputError:
            return None
        template: dict[str, Any] = found.get("base_job_template") or {}
        return template

    def count_deployments(self, pool: str) -> int:
        """How many deployments run their flow runs on work pool `pool`."""
        body = {"work_pools": {"name": {"any_": [pool]}}}
        return int(self._call("POST", "/deployments/count", body))

    def pool_workers(self, pool: str) -> dict[str, dict[str, Any]]:
        """The workers that polled work pool `pool`, by name: their status (ONLINE, OFFLINE)
        and last heartbeat."""
        found = self._call("POST", f"/work_pools/{urllib.parse.quote(pool)}/workers/filter", {})
        return {str(worker["name"]): worker for worker in found}

    def deployment(self, flow: str, deployment: str) -> dict[str, Any]:
        quoted = f"{urllib.parse.quote(flow)}/{urllib.parse.quote(deployment)}"
        try:
            found: dict[str, Any] = self._call("GET", f"/deployments/name/{quoted}")
        except InputError:
            raise InputError(
                f"Prefect has no deployment {flow}/{deployment}",
                hint="start the deployments with `conveyor serve --background`",
            ) from None
        return found

    def deployment_id(self, flow: str, deployment: str) -> str:
        return str(self.deployment(flow, deployment)["id"])

    def is_served(self, flow: str, deployment: str) -> bool:
        """True when the deployment exists and a runner polled for its runs lately."""
        try:
            return self.deployment(flow, deployment).get("status") == "READY"
        except InputError:
            return False

    def create_flow_run(
        self,
        flow: str,
        deployment: str,
        parameters: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        tags: Sequence[str] = (),
    ) -> FlowRun:
        body: dict[str, Any] = {"parameters": dict(parameters), "tags": list(tags)}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        created = self._call(
            "POST", f"/deployments/{self.deployment_id(flow, deployment)}/create_flow_run", body
        )
        return FlowRun.of(created)

    def flow_run(self, run_id: str) -> FlowRun:
        return FlowRun.of(self._call("GET", f"/flow_runs/{run_id}"))

    def flow_runs(self, *, tags: Sequence[str], states: Sequence[str]) -> list[FlowRun]:
        body = {
            "flow_runs": {"tags": {"all_": list(tags)}, "state": {"type": {"any_": list(states)}}},
            "sort": "START_TIME_DESC",
            "limit": 50,
        }
        return [FlowRun.of(item) for item in self._call("POST", "/flow_runs/filter", body)]

    def awaiting_approval(self, app: str, stage: str) -> list[FlowRun]:
        """Runs paused for an approval of `stage` of `app`, found by their pause key (see
        approval_pause_prefix) and, for runs paused by an older Conveyor, by their tag."""
        prefix = approval_pause_prefix(app, stage)
        found: dict[str, FlowRun] = {}
        offset = 0
        while True:
            body = {
                "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}},
                "sort": "START_TIME_DESC",
                "limit": 200,
                "offset": offset,
            }
            page = [FlowRun.of(item) for item in self._call("POST", "/flow_runs/filter", body)]
            found.update((run.id, run) for run in page if run.pause_key.startswith(prefix))
            if len(page) < 200:
                break
            offset += len(page)
        for run in self.flow_runs(tags=[awaiting_approval_tag(app, stage)], states=["PAUSED"]):
            found.setdefault(run.id, run)
        return list(found.values())

    def pause_form(self, run: FlowRun) -> str:
        """The text a run paused for input shows whoever resumes it (an approval form); empty
        when it shows none within INPUT_STORED_WITHIN seconds."""
        key = f"{run.state_name.lower()}-{run.pause_key}-description"
        path = f"/flow_runs/{run.id}/input/{urllib.parse.quote(key)}"
        deadline = time.monotonic() + INPUT_STORED_WITHIN
        while True:
            try:
                text = self._call("GET", path)
            except InputError:
                if time.monotonic() >= deadline:
                    return ""
                time.sleep(0.2)
                continue
            return text if isinstance(text, str) else ""

    def resume(self, run_id: str, run_input: Mapping[str, Any]) -> ResumeVerdict:
        """Resume a paused run with input; Prefect's verdict, asked again while the run's input
        schema is not stored yet (see INPUT_STORED_WITHIN)."""
        deadline = time.monotonic() + INPUT_STORED_WITHIN
        while True:
            answer = self._call(
                "POST", f"/flow_runs/{run_id}/resume", {"run_input": dict(run_input)}
            )
            verdict = ResumeVerdict.of(answer or {})
            if verdict.reason != INPUT_SCHEMA_PENDING or time.monotonic() >= deadline:
                return verdict
            time.sleep(0.2)

    def logs(self, run_id: str, offset: int) -> list[dict[str, Any]]:
        body = {
            "logs": {"flow_run_id": {"any_": [run_id]}},
            "sort": "TIMESTAMP_ASC",
            "offset": offset,
            "limit": 200,
        }
        result: list[dict[str, Any]] = self._call("POST", "/logs/filter", body)
        return result

    def follow(
        self,
        run_id: str,
        *,
        on_log: Callable[[str], None] | None = None,
        on_state: Callable[[FlowRun], None] | None = None,
        timeout: float = 3600.0,
        poll: float = 1.0,
    ) -> FlowRun:
        """Poll a run until it reaches a final state (or is paused, reported once)."""
        deadline = time.monotonic() + timeout
        seen_logs, last_state = 0, ""
        while True:
            run = self.flow_run(run_id)
            if on_log:
                for entry in self.logs(run_id, seen_logs):
                    seen_logs += 1
                    on_log(str(entry.get("message", "")))
            if run.state_name != last_state:
                last_state = run.state_name
                if on_state:
                    on_state(run)
            if run.state_type in FINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"flow run {run.name} still {run.state_name} after {timeout:.0f}s"
                )
            time.sleep(poll)
