"""The status HTTP server under idle and abandoned connections (in process, real sockets)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from gateway.http import HttpServer
from tests.helpers import wait_until

IDLE = 1.0


@pytest.fixture
def server() -> Iterator[HttpServer]:
    srv = HttpServer("127.0.0.1", 0, CollectorRegistry(), idle_timeout=IDLE, max_connections=32)
    srv.start()
    yield srv
    srv.stop()


def healthz(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as resp:
        return resp.read()


def idle_sockets(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed ``s`` (EOF or reset), waiting at most the socket's timeout."""
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_hold_no_threads_and_healthz_still_answers(server: HttpServer):
    before = threading.active_count()
    socks = idle_sockets(server.port, 100)
    try:
        started = time.monotonic()
        assert healthz(server.port) == b"ok\n"
        assert time.monotonic() - started < 2.0  # no waiting for an idle client to leave
        # Today each idle socket holds a thread until its client leaves (517 threads for 500).
        assert threading.active_count() - before <= 8
    finally:
        for s in socks:
            s.close()


def test_idle_connections_are_closed_after_the_timeout(server: HttpServer):
    socks = idle_sockets(server.port, 20)
    try:
        for s in socks:
            s.settimeout(IDLE + 5)  # the feature's own deadline, with generous slack
        assert all(closed_by_server(s) for s in socks)
        assert healthz(server.port) == b"ok\n"
    finally:
        for s in socks:
            s.close()


def test_a_request_that_never_finishes_is_closed(server: HttpServer):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=IDLE + 5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never end
        assert closed_by_server(s)
    finally:
        s.close()


def test_connections_beyond_the_limit_are_bounded(server: HttpServer):
    socks = idle_sockets(server.port, 100)
    try:
        wait_until(lambda: sum(1 for s in socks[:60] if not_open(s)) >= 60, timeout=5)
        # The newest connections are the ones kept; a request on one of them is answered.
        socks[-1].sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        socks[-1].settimeout(5)
        assert socks[-1].recv(4096).startswith(b"HTTP/1.0 200")
    finally:
        for s in socks:
            s.close()


def not_open(s: socket.socket) -> bool:
    s.settimeout(0.01)
    try:
        return s.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False
