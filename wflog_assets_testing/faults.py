"""A loopback TCP proxy that breaks some connections, for fault-injection tests.

Connection n (from 0): if `plan(n)` says "reset", it is closed at once without a byte; "503"
answers the first request with `HTTP/1.1 503 Slow Down` and closes; "slow" waits `delay_s`
before forwarding; anything else is forwarded both ways. Bounded: it serves only while the
test runs and only on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 95\r\n"
    b'Connection: close\r\n\r\n<?xml version="1.0"?><Error><Code>SlowDown</Code>'
    b"<Message>injected</Message></Error>\n"
)


class FlakyProxy:
    def __init__(self, target_port: int, plan: Callable[[int], str], delay_s: float = 0.5):
        self.target_port, self.plan, self.delay_s = target_port, plan, delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.counts: dict[str, int] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                n, self._next = self._next, self._next + 1
                action = self.plan(n)
                self.counts[action] = self.counts.get(action, 0) + 1
            threading.Thread(target=self._serve, args=(client, action), daemon=True).start()

    def _serve(self, client: socket.socket, action: str) -> None:
        if action == "reset":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.close()
            return
        if action == "503":
            client.recv(65536)
            client.sendall(_SLOW_DOWN)
            client.close()
            return
        if action == "slow":
            time.sleep(self.delay_s)
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, delay_s: float = 0.0) -> None:
        try:
            while data := src.recv(65536):
                if delay_s:
                    time.sleep(delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self.listener.close()


class LatencyProxy(FlakyProxy):
    """Forwards every connection, holding each request `delay_s` before it reaches the server:
    the first-byte latency of a distant object store, per request (connections are reused)."""

    def __init__(self, target_port: int, delay_s: float):
        super().__init__(target_port, lambda _: "forward", delay_s)

    def _serve(self, client: socket.socket, action: str) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        threading.Thread(target=self._pipe, args=(client, upstream, self.delay_s), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
