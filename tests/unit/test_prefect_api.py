"""The CLI's Prefect client asks a busy server again (a 503, a proxy's 502) a bounded number of
times and reports other errors at once; a run's final state becomes the command's exit code."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from conveyor.adapters import prefect_api
from conveyor.adapters.prefect_api import PrefectAPI, exit_code
from conveyor.errors import InfrastructureError


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[int]]]:
    """A server answering POSTs with the status codes queued in the list, then 200 `{}`."""
    monkeypatch.setattr(prefect_api, "BUSY_RETRIES", 2)
    answers: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            status = answers.pop(0) if answers else 200
            body = b'{"status": "ACCEPT"}' if status == 200 else b'{"exception_message": "x"}'
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api", answers
    httpd.shutdown()
    httpd.server_close()


def test_a_busy_server_is_asked_again(server: tuple[str, list[int]]) -> None:
    url, answers = server
    answers += [503, 502]
    assert PrefectAPI(url).resume("run", {"approve": True}) == "ACCEPT"
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
