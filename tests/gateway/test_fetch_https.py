"""HTTPS through the watched connection pools: every real upstream is HTTPS, the fixtures are not."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.fetch import fetch, make_session
from gateway.records import Request
from tests.helpers import ROOT

CERTS = ROOT / "mosquitto" / "certs" / "test"


@pytest.fixture
def https_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERTS / "server.crt", CERTS / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_an_https_fetch_goes_through_the_watched_pool(https_server: int, monkeypatch: pytest.MonkeyPatch):
    # requests lets these override session.verify; the test CA must be the one that counts.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    session = make_session()
    session.verify = str(CERTS / "ca.crt")
    for _ in range(2):  # the second request reuses the pooled connection
        response = fetch(session, Request(f"https://127.0.0.1:{https_server}/data"), timeout=5)
        assert response.status == 200
        assert response.body == b'{"ok": true}'
