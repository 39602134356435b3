"""The Kubernetes adapter asks again after a 429 (the request was not processed: flow control, a
new CRD's storage starting), honouring Retry-After up to a second, a bounded number of times, and
counts every attempt; other errors are reported at once. Against a small local HTTP server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conveyor.adapters.kube import Kube
from conveyor.errors import ClusterError


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[int, str]], list[str]]]:
    """Answers each request with the queued (status, Retry-After), then 200 `{"kind": "ok"}`;
    records the methods it saw."""
    answers: list[tuple[int, str]] = []
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            seen.append(self.command)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            status, retry_after = answers.pop(0) if answers else (200, "")
            body = b'{"kind": "ok"}' if status == 200 else b'{"message": "slow down"}'
            self.send_response(status)
            if retry_after:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PATCH = answer

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answers, seen
    httpd.shutdown()
    httpd.server_close()


def kube_for(url: str, folder: Path) -> Kube:
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return Kube(kubeconfig)


@pytest.mark.parametrize(
    ("queued", "attempts", "writes", "longest"),
    [
        ([(429, "0"), (429, "0")], 3, 3, 0.5),
        ([(429, "0.2")], 2, 2, 1.0),
        ([(429, "3600")], 2, 2, 1.9),  # a server asking for an hour waits at most 1 s
    ],
)
def test_a_429_is_asked_again_after_retry_after_capped_at_a_second(
    server: tuple[str, list[tuple[int, str]], list[str]],
    tmp_path: Path,
    queued: list[tuple[int, str]],
    attempts: int,
    writes: int,
    longest: float,
) -> None:
    url, answers, seen = server
    answers += queued
    kube = kube_for(url, tmp_path)
    started = time.monotonic()
    answer = kube.request("PATCH", "/api/v1/namespaces/a/configmaps/b", body={})
    assert answer == {"kind": "ok"}
    assert time.monotonic() - started < longest
    assert seen == ["PATCH"] * attempts
    assert (kube.requests, kube.writes) == (attempts, writes)


def test_429s_beyond_the_bound_and_other_errors_are_reported(
    server: tuple[str, list[tuple[int, str]], list[str]], tmp_path: Path
) -> None:
    url, answers, seen = server
    answers += [(429, "0")] * 6
    kube = kube_for(url, tmp_path)
    with pytest.raises(ClusterError, match="slow down"):
        kube.request("GET", "/api/v1/namespaces")
    assert len(seen) == 5, "five attempts in all, then the 429 is the answer"

    answers.clear()
    seen.clear()
    answers.append((500, ""))
    with pytest.raises(ClusterError):
        kube.request("GET", "/api/v1/namespaces")
    assert seen == ["GET"], "a 500 is not asked again"
