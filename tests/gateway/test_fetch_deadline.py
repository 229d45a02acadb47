"""The fetch timeout is a total deadline, and a closed session ends its fetches at once.

requests' own timeouts are per socket read: each of these upstreams kept the old fetch alive
for as long as it kept dripping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from gateway.errors import FetchError
from gateway.fetch import HostPolicy, fetch, make_session
from gateway.records import Request
from tests.rawhttp import RawServer, drip, silent

TIMEOUT = 1.0
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def body_drip(conn, stop):
    conn.sendall(HEAD + b"Content-Length: 100000\r\n\r\n")
    drip(conn, stop, b"[" + b"1," * 50000, 0.2)


def header_drip(conn, stop):
    drip(conn, stop, HEAD + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n", 0.2)


def unbounded_drip(conn, stop):
    # No Content-Length: the body ends when the connection closes, so a cut must not look like the end.
    conn.sendall(HEAD + b"Connection: close\r\n\r\n")
    drip(conn, stop, b"[" + b"1," * 50000, 0.2)


@pytest.fixture
def raw() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


@pytest.mark.parametrize("handler", [body_drip, header_drip, unbounded_drip, silent],
                         ids=["body", "headers", "body-without-length", "silent"])
def test_dripping_upstream_times_out_within_the_deadline(raw, handler):
    server = RawServer(handler)
    raw.append(server)
    started = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch(make_session(), Request(url=server.url + "/x"), timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    assert info.value.kind == "timeout"
    assert elapsed < TIMEOUT + 1.0, elapsed


def test_closing_the_session_aborts_a_hanging_fetch(raw):
    server = RawServer(silent)
    raw.append(server)
    session = make_session()
    caught: list[BaseException] = []

    def run() -> None:
        try:
            fetch(session, Request(url=server.url + "/x"), timeout=300)
        except BaseException as exc:
            caught.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.requests
    session.close()
    worker.join(3)
    assert not worker.is_alive()
    assert isinstance(caught[0], FetchError)
    assert caught[0].kind == "cancelled"
    with pytest.raises(FetchError) as again:
        fetch(session, Request(url=server.url + "/x"), timeout=300)
    assert again.value.kind == "cancelled"


def test_closing_the_host_policy_wakes_a_waiting_fetch():
    policy = HostPolicy(min_interval=0)
    policy.back_off("http://127.0.0.1:9/x", 250)
    caught: list[BaseException] = []

    def run() -> None:
        try:
            policy.acquire("http://127.0.0.1:9/x", max_wait=300)
        except BaseException as exc:
            caught.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    policy.close()
    worker.join(3)
    assert not worker.is_alive()
    assert isinstance(caught[0], FetchError)
    assert caught[0].kind == "cancelled"
