"""The CLI's Prefect client asks a busy server again (a 503, a proxy's 502) a bounded number of
times and reports other errors at once; a run's final state becomes the command's exit code."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator

import pytest

from conveyor.adapters import prefect_api
from conveyor.adapters.prefect_api import PrefectAPI, exit_code
from conveyor.errors import InfrastructureError


@contextlib.contextmanager
def _fake_prefect(answer: Callable[[], tuple[int, bytes]]) -> Iterator[str]:
    """An HTTP server on loopback answering every request with `answer()`; its API URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = answer()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[int]]]:
    """A server answering with the status codes queued in the list, then 200 ACCEPT."""
    monkeypatch.setattr(prefect_api, "BUSY_RETRIES", 2)
    answers: list[int] = []

    def answer() -> tuple[int, bytes]:
        status = answers.pop(0) if answers else 200
        return status, b'{"status": "ACCEPT"}' if status == 200 else b'{"exception_message": "x"}'

    with _fake_prefect(answer) as url:
        yield url, answers


def test_a_busy_server_is_asked_again(server: tuple[str, list[int]]) -> None:
    url, answers = server
    answers += [503, 502]
    assert PrefectAPI(url).resume("run", {"approve": True}).accepted
    assert answers == []


def test_retries_run_out_and_other_errors_are_not_retried(server: tuple[str, list[int]]) -> None:
    url, answers = server
    answers += [503, 503, 503, 503]
    with pytest.raises(InfrastructureError, match="answered 503"):
        PrefectAPI(url).resume("run", {"approve": True})
    assert answers == [503], "three attempts: the first and two retries"
    answers[:] = [500, 503]
    with pytest.raises(InfrastructureError, match="answered 500"):
        PrefectAPI(url).resume("run", {"approve": True})
    assert answers == [503]


RAISED = "Flow run encountered an exception: "


@pytest.mark.parametrize(
    ("state_type", "message", "code"),
    [
        ("COMPLETED", "All states completed.", 0),
        ("FAILED", RAISED + "PromotionRefused: web: sha256:1 may not enter prod: ...", 2),
        ("FAILED", RAISED + "ConfigError: config/conveyor.yaml: apps: unknown app 'x'", 2),
        ("FAILED", RAISED + "IntegrityError: layer does not match its digest", 3),
        ("FAILED", RAISED + "ClusterError: cannot reach the API server", 4),
        ("FAILED", RAISED + "StageFailed: web: sha256:1 failed in dev", 1),
        ("FAILED", RAISED + "ConveyorError: something we report", 1),
        ("FAILED", RAISED + "TypeError: unexpected keyword argument 'x'", 1),
        ("FAILED", "PromotionRefused: not how Prefect words a raised exception", 1),
        ("CRASHED", "no heartbeat for 90s: the run's process is gone", 1),
        ("CANCELLED", "Cancelled by the user", 1),
    ],
)
def test_a_runs_final_state_is_an_exit_code(state_type: str, message: str, code: int) -> None:
    assert exit_code(state_type, message) == code


SCHEMA_PENDING = b'{"status": "REJECT", "details": {"reason": "Run input schema not found."}}'


@pytest.fixture
def pausing_server() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """A server answering every request with the (status, body) pairs queued in the list."""
    answers: list[tuple[int, bytes]] = []
    with _fake_prefect(lambda: answers.pop(0)) as url:
        yield url, answers


def test_a_run_paused_a_moment_ago_is_resumed_once_its_input_schema_is_stored(
    pausing_server: tuple[str, list[tuple[int, bytes]]],
) -> None:
    """Prefect sets a run Paused before it stores the run's input schema; a resume in between
    is refused with "Run input schema not found." and must be asked again, not reported."""
    url, answers = pausing_server
    answers += [(200, SCHEMA_PENDING), (200, SCHEMA_PENDING), (200, b'{"status": "ACCEPT"}')]
    verdict = PrefectAPI(url).resume("run", {"approve": True})
    assert (verdict.status, verdict.accepted, answers) == ("ACCEPT", True, [])


def test_a_refused_resume_says_why(pausing_server: tuple[str, list[tuple[int, bytes]]]) -> None:
    url, answers = pausing_server
    refused = b'{"status": "REJECT", "details": {"reason": "Reason: \'\' is too short"}}'
    answers += [(200, refused)]
    verdict = PrefectAPI(url).resume("run", {"approve": True, "approver": ""})
    assert (verdict.status, verdict.accepted) == ("REJECT", False)
    assert str(verdict) == "REJECT (Reason: '' is too short)"
    assert answers == [], "a refusal for another reason is not asked again"


def test_the_form_of_a_run_paused_a_moment_ago_is_awaited(
    pausing_server: tuple[str, list[tuple[int, bytes]]],
) -> None:
    url, answers = pausing_server
    answers += [(404, b'{"detail": "not found"}'), (200, b'"Digest: `sha256:1`"')]
    run = prefect_api.FlowRun.of(
        {
            "id": "run",
            "name": "calm-otter",
            "state": {"type": "PAUSED", "name": "Suspended", "state_details": {"pause_key": "k"}},
        }
    )
    assert PrefectAPI(url).pause_form(run) == "Digest: `sha256:1`"
