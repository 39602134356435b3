"""Gates: the checks a digest must pass on a target before it may move on.

Each gate returns a GateResult (name, verdict, reason, duration), which becomes evidence for the
digest at that stage. A gate that cannot run (a command that does not exist, a URL that does not
answer) fails with the reason; it never raises, so one broken gate cannot hide the others.
The gate that runs another Prefect deployment is run by tasks/gates.py (the one place every
gate is dispatched), since the core never imports Prefect.

A command gate runs with a minimal environment, not the worker's: PATH, HOME, LANG, LC_*, TMPDIR
(and KUBECONFIG when the target names no kubeconfig of its own), the Conveyor variables of the
deployment it checks and what the gate's `env` sets. So the registry's password, Prefect's API
address and credentials and cloud credentials of the worker never reach it, and a gate of one
stage cannot act as the worker (answer an approval, push a bundle). Known secret values (the
worker's variables named *_PASSWORD, *_TOKEN, *_SECRET, *_KEY, PREFECT_API_AUTH_STRING) are
masked as `***` in the output before it becomes evidence.

The bundle's test Jobs are applied without force, with the app's and target's field manager,
and a Job of the same name is deleted before a run only when it is one of the app's test runs.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from conveyor.adapters.kube import Kube
from conveyor.cluster import wait
from conveyor.cluster.ordering import APP_LABEL, TARGET_LABEL, field_manager, label, owned_by
from conveyor.errors import ConveyorError
from conveyor.kit.syntax import object_path

TEST_RUN_LABEL = "conveyor.dev/test-of"
OUTPUT_TAIL = 2000
"""Bytes of a command gate's output kept (its end) for the evidence."""
OUTPUT_GRACE = 1.0
"""Seconds a command gate still reads output after the command ended or was killed."""
HTTP_BODY_LIMIT = 1 << 20
"""Bytes of an HTTP gate's response body read at most."""
PASSED_FROM_WORKER = ("PATH", "HOME", "LANG", "TMPDIR")
"""Variables of the worker's environment a command gate gets (and every LC_*)."""
SECRET_SUFFIXES = ("_PASSWORD", "_TOKEN", "_SECRET", "_KEY")
SECRET_NAMES = ("PREFECT_API_AUTH_STRING",)
MASK = "***"
_SHORTEST_MASKED = 4
"""Shorter values (a `1`, a `yes`) are not masked: hiding them would garble all output."""
_READ_SIZE = 65536
_EXIT_POLL_SECONDS = 0.05


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
            _delete_and_wait_gone(kube, job, started + timeout)
            kube.apply(job, field_manager=field_manager(app, target))
        result = wait.wait_ready(kube, labelled, timeout=max(1.0, timeout - _since(started)))
    except ConveyorError as error:
        return GateResult(
            name, False, f"could not run the test Jobs: {error.message}", _since(started)
        )
    if result.ready:
        names = ", ".join(job["metadata"]["name"] for job in labelled)
        return GateResult(name, True, f"Job(s) {names} completed", _since(started))
    return GateResult(name, False, wait.describe_failure(result), _since(started))


def _delete_and_wait_gone(kube: Kube, labelled: Mapping[str, Any], deadline: float) -> None:
    """A Job's pod template is immutable: a re-run needs the old Job (and its pods) gone
    before `deadline` (monotonic: the gate's, shared by all its Jobs). Only a Job of the same
    app's tests on the same target is deleted; another object of that name fails the gate."""
    metadata = labelled["metadata"]
    job, namespace = metadata["name"], metadata["namespace"]
    live = kube.get("batch/v1", "Job", job, namespace)
    if live is None:
        return
    if not owned_by(
        live, app=metadata["labels"][APP_LABEL], target=metadata["labels"][TARGET_LABEL]
    ):
        raise ConveyorError(
            f"{object_path('Job', namespace, job)} exists and is not a run of these tests; "
            "it was left alone"
        )
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
    """Run a command (a pytest suite, a script); its exit code decides.

    The command's environment is `environment` plus the few variables of the worker's that
    `gate_process_environment` passes on; secret values are masked in the reason (`mask`).
    `timeout` bounds the gate: the command and whatever it started (its own session) are killed
    at the deadline, and its output is read for at most OUTPUT_GRACE more, so a descendant that
    escaped the session and keeps the output pipe open cannot hold the gate. Only the last
    OUTPUT_TAIL bytes of the output are kept."""
    started = time.monotonic()
    try:
        # A session of its own, so one signal to its process group stops everything it started.
        process = subprocess.Popen(
            list(command),
            env=gate_process_environment(os.environ, environment),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        return GateResult(name, False, f"command not found: {command[0]}", _since(started))
    except OSError as error:  # not executable, a folder, ...
        return GateResult(
            name, False, f"cannot run {command[0]}: {error.strerror or error}", _since(started)
        )
    assert process.stdout is not None, "stdout=PIPE"
    secrets = secret_values(os.environ, environment)
    output = _OutputTail(OUTPUT_TAIL, secrets)
    with process.stdout as pipe:
        finished = _read_until_exit(process, pipe.fileno(), output, started + timeout)
        # Whatever the command left running in its session goes too (at the deadline: all of it).
        # The exited command is not reaped yet, so its process group id is still its own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        complete = _read_to_end(pipe.fileno(), output, time.monotonic() + OUTPUT_GRACE)
    if not finished:
        late = f"`{' '.join(command)}` did not finish in {timeout:.0f}s"
        return GateResult(name, False, mask(late, secrets), _since(started))
    text = output.text()
    if not complete:
        text += (
            f"\n[stopped reading after {OUTPUT_GRACE:g}s: a process the command started outside "
            "its session still holds its output]"
        )
    if process.returncode == 0:
        return GateResult(
            name, True, f"exit 0; {text[-200:]}" if text else "exit 0", _since(started)
        )
    return GateResult(name, False, f"exit {process.returncode}: {text}", _since(started))


class _OutputTail:
    """The last `limit` bytes of a stream with `secrets` masked, and how many came before them.
    It keeps as many bytes more as the longest secret has, and masks before it cuts, so a
    secret the cut splits in two is masked whole rather than leaving its end behind."""

    def __init__(self, limit: int, secrets: Sequence[str]) -> None:
        self._secrets = [secret.encode() for secret in secrets]
        self._limit = limit
        self._margin = max((len(secret) for secret in self._secrets), default=0)
        self._kept = bytearray()
        self._dropped = 0

    def add(self, chunk: bytes) -> None:
        self._kept += chunk
        excess = len(self._kept) - self._limit - self._margin
        if excess > 0:
            del self._kept[:excess]
            self._dropped += excess

    def text(self) -> str:
        kept = bytes(self._kept)
        for secret in self._secrets:
            kept = kept.replace(secret, MASK.encode())
        cut = max(0, len(self._kept) - self._limit)
        if cut:
            kept = kept[-self._limit :]
        text = kept.decode(errors="replace").strip()
        if self._dropped + cut:
            return f"[{self._dropped + cut} earlier bytes of output dropped]\n{text}"
        return text


def _read_chunk(fd: int, output: _OutputTail, wait: float) -> bool:
    """Read what `fd` has within `wait` seconds into `output`; False at end of file."""
    ready, _, _ = select.select([fd], [], [], max(0.0, wait))
    if not ready:
        return True
    chunk = os.read(fd, _READ_SIZE)
    output.add(chunk)
    return bool(chunk)


def _read_until_exit(
    process: subprocess.Popen[bytes], fd: int, output: _OutputTail, deadline: float
) -> bool:
    """Read the command's output until it exits (True) or `deadline` passes (False). An exited
    command is left unreaped (waitid's WNOWAIT), so its process group can still be signalled."""
    pipe_open = True
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if pipe_open:
            pipe_open = _read_chunk(fd, output, min(remaining, _EXIT_POLL_SECONDS))
        else:
            time.sleep(min(remaining, _EXIT_POLL_SECONDS))
    return True


def _read_to_end(fd: int, output: _OutputTail, deadline: float) -> bool:
    """Read what is left in the pipe; False when it is still open at `deadline`."""
    while _read_chunk(fd, output, deadline - time.monotonic()):
        if time.monotonic() >= deadline:
            return False
    return True


def gate_process_environment(
    worker: Mapping[str, str], environment: Mapping[str, str]
) -> dict[str, str]:
    """A command gate's whole environment: from the `worker`'s, only PATH, HOME, LANG, LC_*,
    TMPDIR (and KUBECONFIG when `environment` sets none); then `environment`."""
    passed = {
        name: value
        for name, value in worker.items()
        if name in PASSED_FROM_WORKER or name.startswith("LC_")
    }
    if "KUBECONFIG" in worker and "KUBECONFIG" not in environment:
        passed["KUBECONFIG"] = worker["KUBECONFIG"]
    return {**passed, **environment}


def secret_values(*environments: Mapping[str, str]) -> list[str]:
    """Values of the variables that hold secrets by their name, longest first."""
    found = {
        value
        for environment in environments
        for name, value in environment.items()
        if (name.endswith(SECRET_SUFFIXES) or name in SECRET_NAMES)
        and len(value) >= _SHORTEST_MASKED
    }
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: Sequence[str]) -> str:
    """`text` with every occurrence of each of `secrets` replaced by MASK."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def command_environment(
    *,
    app: str,
    kubeconfig: Path | None,
    namespace: str,
    digest: str,
    target: str,
    stage: str,
    parameters: Mapping[str, Any],
) -> dict[str, str]:
    """What a command gate gets to know about the deployment it checks."""
    environment = {
        "CONVEYOR_APP": app,
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
    `timeout` bounds the whole gate, every attempt, body and pause included. At most
    HTTP_BODY_LIMIT bytes of a body are read."""
    started = time.monotonic()
    deadline = started + timeout
    reason = "not tried"
    for attempt in range(1, retries + 2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason += f"; no time left for attempt {attempt} within {timeout:g}s"
            break
        connections = _TrackedConnections()
        try:
            try:
                with connections.opener.open(url, timeout=remaining) as response:
                    status = int(response.status)
                    body = _read_body(response, connections, deadline)
            except urllib.error.HTTPError as error:
                with error:
                    status, body = error.code, _read_body(error, connections, deadline)
        except _BodyTooSlow:
            reason = f"attempt {attempt}: {url} did not send its body within {timeout:g}s"
            status, body = -1, b""
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


class _BodyTooSlow(Exception):
    """The gate's deadline passed before a response body was read."""


class _TrackedConnections(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """urllib's HTTP and HTTPS handling, remembering the socket of the last connection (a
    redirect opens another). urllib hands over only the response, and its socket timeout bounds
    each read, not the body: a server that sends a byte at a time would hold the gate for ever.
    With the socket at hand, every read of the body gets the time left until the deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.sockets: list[socket.socket] = []
        self.opener = urllib.request.build_opener(self)

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Tracked, sockets=self.sockets), req)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_TrackedHTTPS, sockets=self.sockets), req)

    def time_left(self, deadline: float) -> None:
        """Give the last connection's socket (the response's) the time left until `deadline`
        for its next read."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _BodyTooSlow
        self.sockets[-1].settimeout(remaining)


class _Tracked(http.client.HTTPConnection):
    """A connection that hands its socket to `sockets` once connected (HTTP or, mixed in
    before HTTPSConnection, HTTPS)."""

    def __init__(self, *args: Any, sockets: list[socket.socket], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sockets = sockets

    def connect(self) -> None:
        super().connect()
        self._sockets.append(self.sock)


class _TrackedHTTPS(_Tracked, http.client.HTTPSConnection):
    pass


class _Body(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


def _read_body(response: _Body, connections: _TrackedConnections, deadline: float) -> bytes:
    """At most HTTP_BODY_LIMIT bytes of the body, read before `deadline` (else _BodyTooSlow)."""
    body = bytearray()
    while len(body) < HTTP_BODY_LIMIT:
        connections.time_left(deadline)
        try:
            chunk = response.read1(HTTP_BODY_LIMIT - len(body))
        except TimeoutError as error:
            raise _BodyTooSlow from error
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _since(started: float) -> float:
    return time.monotonic() - started
