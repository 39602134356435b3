"""Gates: the checks a digest must pass on a target before it may move on.

Each gate returns a GateResult (name, verdict, reason, duration), which becomes evidence for the
digest at that stage. A gate that cannot run (a command that does not exist, a URL that does not
answer) fails with the reason; it never raises, so one broken gate cannot hide the others.
The gate that runs another Prefect deployment is run by tasks/gates.py (the one place every
gate is dispatched), since the core never imports Prefect.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.adapters.kube import Kube
from conveyor.cluster import wait
from conveyor.cluster.ordering import label
from conveyor.errors import ConveyorError
from conveyor.kit.syntax import object_path

TEST_RUN_LABEL = "conveyor.dev/test-of"
OUTPUT_TAIL = 2000


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    reason: str
    duration: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": "passed" if self.passed else "failed",
            "reason": self.reason,
            "duration": round(self.duration, 3),
        }


def readiness(result: wait.WaitResult) -> GateResult:
    """The always-on gate: every applied object reached Current (strict profile)."""
    reason = "all objects ready" if result.ready else wait.describe_failure(result)
    return GateResult("readiness", result.ready, reason, result.elapsed)


def run_test_jobs(
    kube: Kube,
    jobs: Sequence[Mapping[str, Any]],
    *,
    app: str,
    target: str,
    namespace: str,
    digest: str,
    timeout: float,
    name: str = "tests",
) -> GateResult:
    """Run the bundle's test Jobs afresh in the target namespace; each must Complete."""
    started = time.monotonic()
    if not jobs:
        return GateResult(name, True, "the bundle has no test Jobs", 0.0)
    placed = [
        {**job, "metadata": {**job.get("metadata", {}), "namespace": namespace}} for job in jobs
    ]
    labelled = label(placed, app=f"{app}-tests", target=target, digest=digest)
    try:
        for job in labelled:
            job["metadata"]["labels"][TEST_RUN_LABEL] = digest.removeprefix("sha256:")[:63]
            _delete_and_wait_gone(kube, job["metadata"]["name"], namespace, started + timeout)
            kube.apply(job, force=True)
        result = wait.wait_ready(kube, labelled, timeout=max(1.0, timeout - _since(started)))
    except ConveyorError as error:
        return GateResult(
            name, False, f"could not run the test Jobs: {error.message}", _since(started)
        )
    if result.ready:
        names = ", ".join(job["metadata"]["name"] for job in labelled)
        return GateResult(name, True, f"Job(s) {names} completed", _since(started))
    return GateResult(name, False, wait.describe_failure(result), _since(started))


def _delete_and_wait_gone(kube: Kube, job: str, namespace: str, deadline: float) -> None:
    """A Job's pod template is immutable: a re-run needs the old Job (and its pods) gone
    before `deadline` (monotonic: the gate's, shared by all its Jobs)."""
    if not kube.delete("batch/v1", "Job", job, namespace):
        return
    while kube.get("batch/v1", "Job", job, namespace) is not None:
        if time.monotonic() > deadline:
            raise ConveyorError(
                f"{object_path('Job', namespace, job)}: the previous run was not deleted in time"
            )
        time.sleep(0.1)


def run_command(
    name: str,
    command: Sequence[str],
    *,
    environment: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
) -> GateResult:
    """Run a command (a pytest suite, a script); its exit code decides."""
    started = time.monotonic()
    try:
        # A session of its own, so a timeout stops everything the command started.
        process = subprocess.Popen(
            list(command),
            env={**os.environ, **environment},
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        return GateResult(name, False, f"command not found: {command[0]}", _since(started))
    except OSError as error:  # not executable, a folder, ...
        return GateResult(
            name, False, f"cannot run {command[0]}: {error.strerror or error}", _since(started)
        )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return GateResult(
            name, False, f"`{' '.join(command)}` did not finish in {timeout:.0f}s", _since(started)
        )
    output = output.strip()[-OUTPUT_TAIL:]
    if process.returncode == 0:
        return GateResult(
            name, True, f"exit 0; {output[-200:]}" if output else "exit 0", _since(started)
        )
    return GateResult(name, False, f"exit {process.returncode}: {output}", _since(started))


def command_environment(
    *,
    kubeconfig: Path | None,
    namespace: str,
    digest: str,
    target: str,
    stage: str,
    parameters: Mapping[str, Any],
) -> dict[str, str]:
    """What a command gate gets to know about the deployment it checks."""
    environment = {
        "CONVEYOR_NAMESPACE": namespace,
        "CONVEYOR_DIGEST": digest,
        "CONVEYOR_TARGET": target,
        "CONVEYOR_STAGE": stage,
        "CONVEYOR_PARAMETERS": json.dumps(parameters, sort_keys=True),
    }
    if kubeconfig:
        environment["KUBECONFIG"] = str(kubeconfig)
    return environment


def run_http(
    name: str,
    url: str,
    *,
    expect_status: int = 200,
    body_contains: str | None = None,
    retries: int = 3,
    interval: float = 2.0,
    timeout: float = 10.0,
) -> GateResult:
    """GET `url` until it answers `expect_status` (and contains the text), within retries;
    `timeout` bounds the whole gate, every attempt and pause included."""
    started = time.monotonic()
    deadline = started + timeout
    reason = "not tried"
    for attempt in range(1, retries + 2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason += f"; no time left for attempt {attempt} within {timeout:g}s"
            break
        try:
            with urllib.request.urlopen(url, timeout=remaining) as response:
                status, body = int(response.status), response.read(1 << 20)
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read(1 << 20)
        except (urllib.error.URLError, OSError) as error:
            reason = f"attempt {attempt}: {url} unreachable: {error}"
            status, body = -1, b""
        except http.client.HTTPException as error:  # something that does not speak HTTP
            reason = f"attempt {attempt}: {url} did not answer HTTP: {error!r}"
            status, body = -1, b""
        if status == expect_status and (body_contains is None or body_contains.encode() in body):
            return GateResult(name, True, f"{url} answered {status}", _since(started))
        if status != -1:
            reason = (
                f"attempt {attempt}: {url} answered {status}, expected {expect_status}"
                if status != expect_status
                else f"attempt {attempt}: {url} body lacks {body_contains!r}"
            )
        if attempt <= retries:
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
    return GateResult(name, False, reason, _since(started))


def _since(started: float) -> float:
    return time.monotonic() - started
