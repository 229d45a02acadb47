"""The operator's HTTP endpoint: Prometheus metrics and liveness, on one port.

Connections wait in a selector until their request arrives; only then does a worker thread
take them. Idle connections therefore cost no thread, are closed after ``idle_timeout``, and
at most ``max_connections`` are open at once (the oldest idle one makes room for a new one).
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

Route = Callable[[], tuple[int, str, bytes]]
PostRoute = Callable[[str, bytes], tuple[int, str, bytes]]
"""A POST route (by path prefix, e.g. "/notify/"): the full path and the body, already size-checked."""

IDLE_TIMEOUT = 10.0  # seconds a connection may stay silent, before and during its request
MAX_CONNECTIONS = 32  # open at once, waiting or being answered
WORKERS = 4  # threads answering requests; a route waits at most 5 s for the event loop
POLL = 0.25  # seconds between sweeps for idle connections and the stop flag
MAX_POST = 1024 * 1024  # bytes a POST body may have; more is refused unread (413)
TEXT = "text/plain; charset=utf-8"


class _Listener(HTTPServer):
    # A burst of connections waits in the kernel's backlog instead of being retried by the client.
    request_queue_size = 128


class HttpServer:
    """A tiny HTTP server with a fixed route table and a bounded number of connections and threads."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 routes: dict[str, Route] | None = None, *, idle_timeout: float = IDLE_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, posts: dict[str, PostRoute] | None = None,
                 max_post: int = MAX_POST) -> None:
        table: dict[str, Route] = {
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda: (200, "text/plain; charset=utf-8", b"ok\n"),
            **(routes or {}),
        }

        class Handler(BaseHTTPRequestHandler):
            timeout = idle_timeout  # a request that starts but never finishes frees its worker

            def do_GET(self) -> None:
                route = table.get(self.path.split("?", 1)[0])
                if route is None:
                    status, ctype, body = 404, "text/plain; charset=utf-8", b"not found\n"
                else:
                    status, ctype, body = route()
                self._answer(status, ctype, body)

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                route = next((r for prefix, r in (posts or {}).items() if path.startswith(prefix)), None)
                length = self.headers.get("Content-Length", "")
                self.close_connection = True  # a refused body is left unread: the connection cannot be reused
                if route is None:
                    self._answer(404, TEXT, b"not found\n")
                elif not length.isdigit() or len(length) > 12:
                    self._answer(411, TEXT, b"Content-Length required\n")
                elif int(length) > max_post:
                    self._answer(413, TEXT, f"body larger than {max_post} bytes\n".encode())
                else:
                    self._answer(*route(path, self.rfile.read(int(length))))

            def _answer(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("http: " + format, *args)

        self._handler = Handler
        # Binds (and fails on a taken port) here; its serve_forever is not used.
        self._server = _Listener((host, port), Handler)
        self.port = self._server.server_address[1]
        self._idle_timeout = idle_timeout
        self._max_connections = max_connections
        self._busy: set[socket.socket] = set()  # handed to a worker
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="http")
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            busy, self._busy = list(self._busy), set()
        for conn in busy:  # a worker still using one gets an OSError and ends
            conn.close()
        self._server.server_close()

    # ------------------------------------------------------------------ internals

    def _serve(self) -> None:
        listener = self._server.socket
        waiting: dict[socket.socket, float] = {}  # accept time; insertion order is age
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(POLL):
                    conn: socket.socket = key.fileobj  # type: ignore[assignment]
                    if conn is listener:
                        self._accept(sel, waiting)
                    else:
                        sel.unregister(conn)
                        del waiting[conn]
                        self._dispatch(conn, key.data)
                deadline = time.monotonic() - self._idle_timeout
                for conn in [c for c, at in waiting.items() if at < deadline]:
                    self._drop(sel, waiting, conn)
            for conn in list(waiting):
                self._drop(sel, waiting, conn)

    def _accept(self, sel: selectors.BaseSelector, waiting: dict[socket.socket, float]) -> None:
        try:
            conn, address = self._server.socket.accept()
        except OSError:
            return
        with self._lock:
            busy = len(self._busy)
        if busy + len(waiting) >= self._max_connections:
            if not waiting:
                conn.close()  # every slot is answering a request: refuse
                return
            self._drop(sel, waiting, next(iter(waiting)))  # the oldest silent client makes room
        waiting[conn] = time.monotonic()
        sel.register(conn, selectors.EVENT_READ, address)

    def _dispatch(self, conn: socket.socket, address: object) -> None:
        with self._lock:
            self._busy.add(conn)
        try:
            self._pool.submit(self._handle, conn, address)
        except RuntimeError:  # shutting down
            self._done(conn)

    def _handle(self, conn: socket.socket, address: object) -> None:
        try:
            self._handler(conn, address, self._server)
        except OSError as exc:  # the client went away mid-answer
            log.debug("http: %s", exc)
        except Exception:  # a broken route must not take the worker with it
            log.exception("http: request failed")
        finally:
            self._done(conn)

    def _done(self, conn: socket.socket) -> None:
        self._server.shutdown_request(conn)
        with self._lock:
            self._busy.discard(conn)

    @staticmethod
    def _drop(sel: selectors.BaseSelector, waiting: dict[socket.socket, float], conn: socket.socket) -> None:
        sel.unregister(conn)
        del waiting[conn]
        conn.close()
