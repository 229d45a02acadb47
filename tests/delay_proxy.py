"""A TCP proxy that makes a near broker look far: every byte from the broker arrives ``delay`` later.

Only latency is added, not a bandwidth limit: chunks keep their order and are released when due,
so a client with a larger in-flight window gets proportionally more through, as on a real
clustered broker whose acknowledgements wait for a replicated write.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time


class DelayProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``target``; broker-to-client bytes wait ``delay`` s."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.delay = delay
        self._target = ("127.0.0.1", target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.delay), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delay: float) -> None:
        due: list[tuple[float, int, bytes]] = []
        ready = threading.Condition()
        seq = 0

        def release() -> None:
            while True:
                with ready:
                    ready.wait_for(lambda: bool(due))
                    at, _, chunk = due[0]
                    wait = at - time.monotonic()
                    if wait > 0:
                        ready.wait(wait)
                        continue
                    heapq.heappop(due)
                if not chunk:
                    _close(dst)
                    return
                try:
                    dst.sendall(chunk)
                except OSError:
                    _close(src)
                    return

        threading.Thread(target=release, daemon=True).start()
        while True:
            try:
                chunk = src.recv(65536)
            except OSError:
                chunk = b""
            with ready:
                seq += 1
                heapq.heappush(due, (time.monotonic() + delay, seq, chunk))
                ready.notify()
            if not chunk:
                return

    def close(self) -> None:
        self._stopped.set()
        _close(self._server)
        for sock in self._sockets:
            _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
