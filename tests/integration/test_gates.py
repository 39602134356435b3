"""Gates against real things: an HTTP server on 127.0.0.1, real commands, test Jobs on the cluster.

KWOK completes a Job's pod as soon as it is scheduled, so a test Job passes at once; a pod whose
nodeSelector matches no node is never scheduled, so its Job never completes and the gate fails at
its timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.kube import Kube
from conveyor.cluster import gates
from conveyor.cluster.ordering import DIGEST_ANNOTATION, MANAGED_BY
from conveyor.platform.local import LocalPlatform

DIGEST = "sha256:" + "cd" * 32


# --- run_http against a real server -----------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Answers from the server's script: `plan` is a list of (status, body) taken in turn, the
    last one repeated; every request is counted."""

    server: _Server

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
            index = min(len(self.server.requests), len(self.server.plan)) - 1
            status, body = self.server.plan[index]
        payload = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.plan: list[tuple[int, str]] = [(200, "ok")]
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/health"


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the HTTP server thread did not stop"


def _free_port() -> int:
    """A port nothing listens on (bound then released; nothing else binds it this quickly)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_http_gate_passes_on_the_expected_status(http_server: _Server) -> None:
    http_server.plan = [(200, "all good")]

    result = gates.run_http("http", http_server.url, retries=0, interval=0.1, timeout=5)

    assert result.passed, result.reason
    assert result.name == "http"
    assert result.reason == f"{http_server.url} answered 200"
    assert http_server.requests == ["/health"]


def test_http_gate_fails_on_another_status_naming_it(http_server: _Server) -> None:
    http_server.plan = [(404, "no such page")]

    result = gates.run_http("http", http_server.url, retries=1, interval=0.1, timeout=5)

    assert not result.passed
    assert "answered 404, expected 200" in result.reason
    assert result.reason.startswith("attempt 2:"), result.reason
    assert len(http_server.requests) == 2, "one try and one retry"


def test_http_gate_fails_when_the_body_lacks_the_text_naming_it(http_server: _Server) -> None:
    http_server.plan = [(200, "status: degraded")]

    result = gates.run_http(
        "http", http_server.url, body_contains="status: ok", retries=1, interval=0.1, timeout=5
    )

    assert not result.passed
    assert "body lacks 'status: ok'" in result.reason
    assert len(http_server.requests) == 2

    passing = gates.run_http(
        "http", http_server.url, body_contains="degraded", retries=0, interval=0.1, timeout=5
    )
    assert passing.passed, passing.reason


def test_http_gate_retries_until_the_server_recovers(http_server: _Server) -> None:
    http_server.plan = [(503, "starting"), (503, "starting"), (200, "ok")]

    started = time.monotonic()
    result = gates.run_http("http", http_server.url, retries=3, interval=0.1, timeout=5)
    elapsed = time.monotonic() - started

    assert result.passed, result.reason
    assert len(http_server.requests) == 3, "two 503s, then the 200"
    assert 0.2 <= elapsed < 3, elapsed
    assert result.duration == pytest.approx(elapsed, abs=0.1)


def test_http_gate_fails_on_an_unreachable_port_quickly() -> None:
    url = f"http://127.0.0.1:{_free_port()}/health"

    started = time.monotonic()
    result = gates.run_http("http", url, retries=2, interval=0.1, timeout=5)
    elapsed = time.monotonic() - started

    assert not result.passed
    assert result.reason.startswith(f"attempt 3: {url} unreachable"), result.reason
    assert "Connection refused" in result.reason
    assert 0.2 <= elapsed < 3, "three refused connections and two 0.1 s pauses"


def _raw_server(reply: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A TCP server on 127.0.0.1 that reads a request and sends `reply` and closes, or, with
    None, never answers (the connection stays open until the server stops)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # the listener was closed: stop
                for open_connection in held:
                    open_connection.close()
                return
            connection.recv(4096)
            if reply is None:
                held.append(connection)
            else:
                connection.sendall(reply)
                connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    return listener, thread


@pytest.fixture
def raw_server() -> Iterator[Any]:
    started: list[tuple[socket.socket, threading.Thread]] = []

    def start(reply: bytes | None) -> str:
        listener, thread = _raw_server(reply)
        started.append((listener, thread))
        return f"http://127.0.0.1:{listener.getsockname()[1]}/health"

    yield start
    for listener, thread in started:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=5)
        assert not thread.is_alive(), "a raw server thread did not stop"


def test_http_gate_fails_without_raising_when_the_server_does_not_speak_http(
    raw_server: Any,
) -> None:
    url = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n")

    result = gates.run_http("http", url, retries=1, interval=0.1, timeout=5)

    assert not result.passed
    assert result.reason.startswith(f"attempt 2: {url} did not answer HTTP"), result.reason
    assert "SSH-2.0" in result.reason


def test_http_gate_timeout_bounds_every_attempt_together(raw_server: Any) -> None:
    url = raw_server(None)  # accepts, never answers

    started = time.monotonic()
    result = gates.run_http("http", url, retries=3, interval=0.1, timeout=1.5)
    elapsed = time.monotonic() - started

    assert not result.passed
    assert "timed out" in result.reason, result.reason
    assert 1.4 <= elapsed < 2.5, f"the gate's 1.5 s timeout covers all 4 attempts: {elapsed:.1f}s"


# --- run_command ------------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_command_gate_passes_on_exit_0() -> None:
    result = gates.run_command(
        "smoke", _python("print('42 tests passed')"), environment={}, timeout=30
    )

    assert result.passed, result.reason
    assert result.name == "smoke"
    assert result.reason == "exit 0; 42 tests passed"


def test_command_gate_fails_on_another_exit_code_with_the_output_tail() -> None:
    code = (
        "import sys\n"
        "for i in range(500): print(f'line {i:03d}')\n"
        "sys.stdout.flush()\n"
        "print('assertion failed: expected 3 replicas', file=sys.stderr)\n"
        "sys.exit(3)"
    )

    result = gates.run_command("smoke", _python(code), environment={}, timeout=30)

    assert not result.passed
    assert result.reason.startswith("exit 3: "), result.reason[:80]
    assert result.reason.endswith("assertion failed: expected 3 replicas")
    assert "line 499" in result.reason, "the tail of the output"
    assert "line 000" not in result.reason, "only the tail"
    dropped, kept = result.reason.removeprefix("exit 3: ").split("\n", 1)
    total = 500 * len("line 000\n") + len("assertion failed: expected 3 replicas\n")
    assert dropped == f"[{total - gates.OUTPUT_TAIL} earlier bytes of output dropped]"
    assert len(kept) <= gates.OUTPUT_TAIL


def test_command_gate_fails_at_its_timeout_saying_so() -> None:
    command = _python("import time; time.sleep(30)")

    started = time.monotonic()
    result = gates.run_command("slow", command, environment={}, timeout=1)
    elapsed = time.monotonic() - started

    assert not result.passed
    assert result.reason == f"`{' '.join(command)}` did not finish in 1s"
    assert 1 <= elapsed < 4, elapsed


def test_command_gate_fails_when_the_program_does_not_exist(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-program")

    result = gates.run_command("smoke", [missing, "--all"], environment={}, timeout=30)

    assert not result.passed
    assert result.reason == f"command not found: {missing}"


def test_command_gate_fails_without_raising_when_the_program_cannot_be_run(
    tmp_path: Path,
) -> None:
    script = tmp_path / "smoke.sh"
    script.write_text("#!/bin/sh\nexit 0\n")  # not executable

    result = gates.run_command("smoke", [str(script)], environment={}, timeout=30)

    assert not result.passed
    assert result.reason == f"cannot run {script}: Permission denied"


def test_command_gate_reads_output_that_is_not_utf8() -> None:
    code = "import sys; sys.stdout.buffer.write(b'caf\\xe9 \\xff failed\\n'); sys.exit(1)"

    result = gates.run_command("smoke", _python(code), environment={}, timeout=30)

    assert not result.passed
    assert result.reason == "exit 1: caf\ufffd \ufffd failed"


def test_command_gate_gets_the_deployment_it_checks_in_its_environment(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    parameters = {"replicas": 2, "greeting": "hi there", "flags": ["a", "b"]}
    environment = gates.command_environment(
        app="web",
        kubeconfig=kubeconfig,
        namespace="web-staging",
        digest=DIGEST,
        target="staging",
        stage="staging",
        parameters=parameters,
    )
    seen = tmp_path / "seen.json"
    code = (
        "import json, os, sys\n"
        "names = ['CONVEYOR_DIGEST', 'CONVEYOR_NAMESPACE', 'CONVEYOR_TARGET', 'CONVEYOR_STAGE',\n"
        "         'CONVEYOR_PARAMETERS', 'CONVEYOR_APP', 'KUBECONFIG', 'PATH']\n"
        "json.dump({n: os.environ.get(n) for n in names}, open(sys.argv[1], 'w'))"
    )

    result = gates.run_command(
        "env", [*_python(code), str(seen)], environment=environment, timeout=30
    )

    assert result.passed, result.reason
    got = json.loads(seen.read_text())
    assert got["CONVEYOR_DIGEST"] == DIGEST
    assert got["CONVEYOR_NAMESPACE"] == "web-staging"
    assert got["CONVEYOR_TARGET"] == "staging"
    assert got["CONVEYOR_STAGE"] == "staging"
    assert json.loads(got["CONVEYOR_PARAMETERS"]) == parameters
    assert got["CONVEYOR_APP"] == "web"
    assert got["KUBECONFIG"] == str(kubeconfig)
    assert got["PATH"], "the gate gets the worker's PATH"

    no_kubeconfig = gates.command_environment(
        app="web",
        kubeconfig=None,
        namespace="n",
        digest=DIGEST,
        target="t",
        stage="s",
        parameters={},
    )
    assert "KUBECONFIG" not in no_kubeconfig


def test_a_command_gate_cannot_read_the_workers_credentials_and_secrets_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = {
        "CONVEYOR_REGISTRY_PASSWORD": "registry-pw-7f3a",
        "CONVEYOR_REGISTRY_USERNAME": "robot-7f3a",
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "PREFECT_API_AUTH_STRING": "admin:prefect-auth-7f3a",
        "PREFECT_API_KEY": "pnu_key7f3a",
        "AWS_SECRET_ACCESS_KEY": "aws-7f3a",
    }
    for name, value in worker.items():
        monkeypatch.setenv(name, value)
    seen = tmp_path / "seen.json"
    code = (
        "import json, os, sys\n"
        "json.dump(dict(os.environ), open(sys.argv[1], 'w'))\n"
        "print('tried:', os.environ.get('CONVEYOR_REGISTRY_PASSWORD'),"
        " os.environ.get('PREFECT_API_URL'))\n"
        "print('own token:', os.environ['GATE_TOKEN'])\n"
        "print('known by heart: registry-pw-7f3a admin:prefect-auth-7f3a')\n"
    )

    result = gates.run_command(
        "leak",
        [*_python(code), str(seen)],
        environment={"CONVEYOR_DIGEST": DIGEST, "GATE_TOKEN": "gate-token-7f3a"},
        timeout=30,
    )

    assert result.passed, result.reason
    got = json.loads(seen.read_text())
    assert not set(worker) & set(got), sorted(set(worker) & set(got))
    assert got["CONVEYOR_DIGEST"] == DIGEST and got["GATE_TOKEN"] == "gate-token-7f3a"
    assert "tried: None None" in result.reason
    assert "own token: ***" in result.reason, "a secret the gate was given is masked too"
    assert "known by heart: *** ***" in result.reason
    assert "7f3a" not in result.reason


@pytest.mark.parametrize("split", [4, 8, 15])
def test_a_secret_cut_in_two_by_the_output_limit_is_masked_all_the_same(split: int) -> None:
    """The gate keeps the last OUTPUT_TAIL bytes; a secret straddling that cut left its end in
    the evidence, since masking ran over what was kept."""
    secret = "tail-secret-9c41"
    code = (
        "import os, sys\n"
        "secret = os.environ['GATE_TOKEN']\n"
        f"sys.stdout.write('x' * 5000 + secret + 'y' * ({gates.OUTPUT_TAIL} - {split}))\n"
        "sys.exit(1)\n"
    )

    result = gates.run_command("cut", _python(code), environment={"GATE_TOKEN": secret}, timeout=30)

    assert not result.passed
    assert "y" * 100 in result.reason, "the end of the output is kept"
    assert secret[-split:] not in result.reason.replace("y", ""), result.reason[:120]


# --- run_test_jobs on the real cluster ----------------------------------------------------------


@pytest.fixture(scope="module")
def kube(platform: LocalPlatform) -> Kube:
    return Kube(platform.kubernetes.kubeconfig)


def _job(name: str, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "smoke", "image": "registry.example/curl:8", "args": ["-f", "/"]}],
    }
    if node_selector:
        pod["nodeSelector"] = node_selector
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}},
    }


def _run_jobs(
    kube: Kube, namespace: str, jobs: list[dict[str, Any]], timeout: float = 60
) -> gates.GateResult:
    return gates.run_test_jobs(
        kube, jobs, app="web", target="staging", namespace=namespace, digest=DIGEST, timeout=timeout
    )


def test_test_jobs_pass_when_the_job_completes(kube: Kube, namespace: str) -> None:
    result = _run_jobs(kube, namespace, [_job("web-smoke")])

    assert result.passed, result.reason
    assert result.name == "tests"
    assert result.reason == "Job(s) web-smoke completed"
    live = kube.get("batch/v1", "Job", "web-smoke", namespace)
    assert live is not None
    conditions = {c["type"]: c["status"] for c in live["status"].get("conditions", [])}
    assert conditions.get("Complete") == "True", live["status"]
    labels = live["metadata"]["labels"]
    assert labels[gates.TEST_RUN_LABEL] == DIGEST.removeprefix("sha256:")[:63]
    assert labels[MANAGED_BY] == "conveyor"
    assert live["metadata"]["annotations"][DIGEST_ANNOTATION] == DIGEST


def test_test_jobs_run_again_afresh(kube: Kube, namespace: str) -> None:
    first = _run_jobs(kube, namespace, [_job("web-smoke")])
    assert first.passed, first.reason
    first_uid = kube.get("batch/v1", "Job", "web-smoke", namespace)["metadata"]["uid"]  # type: ignore[index]

    second = _run_jobs(kube, namespace, [_job("web-smoke")])

    assert second.passed, second.reason
    live = kube.get("batch/v1", "Job", "web-smoke", namespace)
    assert live is not None
    assert live["metadata"]["uid"] != first_uid, "the old Job was deleted and a new one run"
    conditions = {c["type"]: c["status"] for c in live["status"].get("conditions", [])}
    assert conditions.get("Complete") == "True", live["status"]


def test_test_jobs_fail_at_their_timeout_when_the_pod_cannot_be_scheduled(
    kube: Kube, namespace: str
) -> None:
    jobs = [_job("web-smoke"), _job("web-stuck", node_selector={"conveyor.dev/no-such": "node"})]

    started = time.monotonic()
    result = _run_jobs(kube, namespace, jobs, timeout=5)
    elapsed = time.monotonic() - started

    assert not result.passed
    assert f"Job/{namespace}/web-stuck" in result.reason, result.reason
    assert f"Job/{namespace}/web-smoke" not in result.reason, "the completed Job is not blamed"
    assert "1 of 2 objects not ready" in result.reason, result.reason
    assert "0/1 succeeded, 1 active" in result.reason, result.reason
    assert 4 <= elapsed < 10, elapsed
    assert result.duration == pytest.approx(elapsed, abs=0.5)


def test_a_test_job_never_deletes_an_object_of_the_same_name_it_did_not_run(
    kube: Kube, namespace: str
) -> None:
    others = _job("web-smoke")
    others["metadata"].update(namespace=namespace, labels={"app": "someone-else"})
    kube.apply(others, field_manager="someone-else")
    uid = kube.get("batch/v1", "Job", "web-smoke", namespace)["metadata"]["uid"]  # type: ignore[index]

    result = _run_jobs(kube, namespace, [_job("web-smoke")])

    assert not result.passed
    assert f"Job/{namespace}/web-smoke exists and is not a run of these tests" in result.reason
    live = kube.get("batch/v1", "Job", "web-smoke", namespace)
    assert live is not None and live["metadata"]["uid"] == uid, "the other Job is untouched"


def test_no_test_jobs_pass_at_once(kube: Kube, namespace: str) -> None:
    result = _run_jobs(kube, namespace, [])

    assert result.passed
    assert "no test Jobs" in result.reason
    assert result.duration == 0.0
    jobs, _ = kube.list("batch/v1", "Job", namespace)
    assert jobs == []


def test_a_command_gate_timeout_stops_what_the_command_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    result = gates.run_command(
        "spawner",
        ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"],
        environment={},
        timeout=1,
    )
    assert not result.passed and "did not finish in 1s" in result.reason
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, f"the command's child {child} outlived the gate"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2 :].split()[0]


# --- bounded: deadlines that hold, output kept as a tail ---------------------------------------


def _kill_pid_in(pidfile: Path) -> None:
    """Stop the process this test started outside the gate's session (by its recorded pid)."""
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def _escaping_grandchild(pidfile: Path, then: str) -> list[str]:
    """A command that starts `sleep 20` in a session of its own, holding the command's stdout
    (out of reach of the gate's process-group kill), then runs `then`."""
    return _python(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '20'], start_new_session=True)\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n" + then
    )


def test_a_command_gate_timeout_holds_when_a_grandchild_keeps_its_output_open(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = _escaping_grandchild(pidfile, "time.sleep(30)")
    try:
        started = time.monotonic()
        result = gates.run_command("stuck", command, environment={}, timeout=1)
        elapsed = time.monotonic() - started
    finally:
        _kill_pid_in(pidfile)

    assert not result.passed
    assert result.reason.startswith(f"`{' '.join(command)}` did not finish in 1s"), result.reason
    assert elapsed < 3, f"the 1 s timeout held within 2 s: {elapsed:.1f}s"


def test_a_command_gate_verdict_is_its_exit_even_when_a_grandchild_keeps_its_output_open(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    try:
        started = time.monotonic()
        result = gates.run_command(
            "daemon", _escaping_grandchild(pidfile, "sys.exit(0)"), environment={}, timeout=10
        )
        elapsed = time.monotonic() - started
    finally:
        _kill_pid_in(pidfile)

    assert result.passed, result.reason
    assert result.reason.startswith("exit 0; started"), result.reason
    assert "still holds its output" in result.reason, result.reason
    assert elapsed < 3, f"the exit decides, the open pipe does not wait for 10 s: {elapsed:.1f}s"


def test_a_command_gate_stops_what_the_command_left_running_when_it_exits(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"

    started = time.monotonic()
    result = gates.run_command(
        "leaver",
        ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo done"],
        environment={},
        timeout=10,
    )
    elapsed = time.monotonic() - started

    assert result.passed, result.reason
    assert result.reason == "exit 0; done"
    assert elapsed < 3, f"the background sleep held stdout until the timeout: {elapsed:.1f}s"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and "Z" not in _state(child):
        assert time.monotonic() < deadline, f"the command's child {child} outlived the gate"
        time.sleep(0.05)


def test_a_command_gate_keeps_a_bounded_tail_of_a_large_output_saying_how_much_it_dropped() -> None:
    size = 20 * 1024 * 1024
    code = (
        f"import sys\nsys.stdout.write('x' * {size - 4})\nsys.stdout.write('\\nend')\nsys.exit(1)"
    )

    result = gates.run_command("loud", _python(code), environment={}, timeout=30)

    assert not result.passed
    dropped = size - gates.OUTPUT_TAIL
    assert result.reason.startswith(f"exit 1: [{dropped} earlier bytes of output dropped]\n")
    assert result.reason.endswith("x\nend")
    assert result.reason.split("\n", 1)[1] == "x" * (gates.OUTPUT_TAIL - 4) + "\nend"


class _TricklingHandler(BaseHTTPRequestHandler):
    """Announces a 12-byte body and sends it one byte every 0.9 s."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "12")
        self.end_headers()
        self.wfile.flush()
        for byte in b"hello world!":
            time.sleep(0.9)
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the gate gave up and hung up
                return

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _EndlessHandler(BaseHTTPRequestHandler):
    """A chunked body that never ends, sent as fast as the client reads."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"y" * 65536
        with contextlib.suppress(OSError):
            for _ in range(1 << 20):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def handler_server() -> Iterator[Any]:
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/health"

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_gate_timeout_bounds_a_body_that_trickles(handler_server: Any) -> None:
    url = handler_server(_TricklingHandler)

    started = time.monotonic()
    result = gates.run_http("http", url, retries=0, interval=0.1, timeout=2)
    elapsed = time.monotonic() - started

    assert not result.passed
    assert "body" in result.reason and "2s" in result.reason, result.reason
    assert elapsed < 3, f"the 2 s timeout covers the body too: {elapsed:.1f}s"


def test_http_gate_reads_at_most_a_mebibyte_of_body(handler_server: Any) -> None:
    url = handler_server(_EndlessHandler)

    started = time.monotonic()
    result = gates.run_http(
        "http", url, body_contains="never there", retries=0, interval=0.1, timeout=20
    )
    elapsed = time.monotonic() - started

    assert not result.passed
    assert "body lacks 'never there'" in result.reason, result.reason
    assert elapsed < 5, elapsed


class _RedirectingHandler(BaseHTTPRequestHandler):
    """/health redirects to /ready, which answers 200 "ready"."""

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_response(302)
            self.send_header("Location", "/ready")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"ready")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_http_gate_follows_a_redirect_and_reads_the_final_body(handler_server: Any) -> None:
    url = handler_server(_RedirectingHandler)

    result = gates.run_http("http", url, body_contains="ready", retries=0, timeout=5)

    assert result.passed, result.reason
