"""A raw-socket HTTP server for hostile upstreams: drips, silence and malformed headers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

Handler = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """Accepts connections, reads one request head, then hands the socket to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                try:
                    data = conn.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                head += data
            self.requests.append(head)
            with contextlib.suppress(OSError):
                self.handler(conn, self.stop)

    def close(self) -> None:
        self.stop.set()
        self._listener.close()


def drip(conn: socket.socket, stop: threading.Event, data: bytes, interval: float) -> None:
    """Send ``data`` one byte at a time; returns when the client hangs up or the server stops."""
    for byte in data:
        if stop.wait(interval):
            return
        conn.sendall(bytes([byte]))


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(600)


def reply(raw: bytes) -> Handler:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(raw)
        time.sleep(0.2)  # let the client read before the close
    return handler
