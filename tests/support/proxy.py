"""A loopback TCP proxy a fault test can cut and restore: the API server "goes away" for the
runs that talk through it, without stopping the shared platform's API server for other tests.

`cut()` closes every open connection and refuses new ones (connections are reset at once, as
when the process dies); `restore()` listens again on the same port. `delay` slows every answer
down (seconds per chunk from upstream), to make a short step (an apply) long enough to cut.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import urllib.parse
from pathlib import Path
from types import TracebackType

import yaml

from conveyor.platform.process import free_port


class CuttableProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.delay = 0.0

    def __enter__(self) -> CuttableProxy:
        self.restore()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pumping threads
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for source, sink, slowed in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, slowed), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, slowed: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if slowed and self.delay:
                    time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def api_server_of(kubeconfig: Path) -> tuple[str, int]:
    """The host and port of the (first) API server a kubeconfig names."""
    config = yaml.safe_load(kubeconfig.read_text())
    server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    assert server.hostname and server.port
    return server.hostname, server.port


def kubeconfig_through(proxy: CuttableProxy, kubeconfig: Path, written: Path) -> Path:
    """A copy of `kubeconfig`, at `written`, whose clusters are reached through `proxy`."""
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    written.write_text(yaml.safe_dump(config))
    return written
