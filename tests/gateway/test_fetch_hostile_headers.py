"""Headers and replies can be anything: each is a classified FetchError or a safe value, never a crash."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest

from gateway.errors import FetchError
from gateway.fetch import MAX_RETRY_AFTER, Validators, fetch, make_session
from gateway.records import Request
from tests.rawhttp import RawServer, reply

BODY = b'{"x": 1}'


@pytest.fixture
def serve() -> Iterator:
    servers: list[RawServer] = []

    def start(raw: bytes) -> RawServer:
        servers.append(server := RawServer(reply(raw)))
        return server

    yield start
    for server in servers:
        server.close()


def ok(*headers: bytes, body: bytes = BODY) -> bytes:
    return b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n" + b"".join(
        h + b"\r\n" for h in headers) + b"\r\n" + body


def get(server: RawServer, **kw):
    return fetch(make_session(), Request(url=server.url + "/x"), timeout=2, **kw)


@pytest.mark.parametrize("value", [b"\xb2", b"\xc2\xb2", b"\xff12", b"soon", b"Sun, 99 Foo 0000 99:99:99 GMT"])
def test_unreadable_retry_after_is_ignored(serve, value: bytes):
    server = serve(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nRetry-After: " + value + b"\r\n\r\n")
    with pytest.raises(FetchError) as info:
        get(server)
    assert info.value.kind == "http_5xx"
    assert info.value.retry_after is None


def test_absurd_retry_after_is_capped(serve):
    server = serve(b"HTTP/1.1 429 Slow\r\nConnection: close\r\nRetry-After: 99999999999\r\n\r\n")
    with pytest.raises(FetchError) as info:
        get(server)
    assert info.value.retry_after == MAX_RETRY_AFTER


@pytest.mark.parametrize("header", [b'ETag: "a\x01b"', b'ETag: "' + b"e" * 10_000 + b'"', b"ETag: \"\xe9\"",
                                    b"Last-Modified: Sun, 21 Jun 2026\x1b[31m 14:30:00 GMT"])
def test_invalid_validators_are_not_kept(serve, header: bytes):
    resp = get(serve(ok(header)))
    assert resp.body == BODY
    assert resp.validators == Validators()


@pytest.mark.parametrize("length", [b"abc", b"-5", b"\xb2", b"1e3"])
def test_malformed_content_length_is_ignored(serve, length: bytes):
    # The body then ends with the connection; the size cap still applies to what arrives.
    assert get(serve(ok(b"Content-Length: " + length))).body == BODY


def test_redirect_loop(serve):
    server = serve(b"HTTP/1.1 302 Found\r\nConnection: close\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(FetchError) as info:
        get(server)
    assert info.value.kind == "redirect"


@pytest.mark.parametrize("target", [b"file:///etc/passwd", b"ftp://example.org/x", b"javascript:alert(1)"])
def test_redirect_to_another_scheme(serve, target: bytes):
    server = serve(b"HTTP/1.1 302 Found\r\nConnection: close\r\nLocation: " + target + b"\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(FetchError) as info:
        get(server)
    assert info.value.kind == "redirect"


def test_gzip_bomb_meets_the_cap_on_decoded_bytes(serve):
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    server = serve(ok(b"Content-Encoding: gzip", b"Content-Length: %d" % len(bomb), body=bomb))
    with pytest.raises(FetchError) as info:
        get(server, max_bytes=1024 * 1024)
    assert info.value.kind == "too_large"


def test_error_details_are_one_clipped_line(serve):
    body = b"error\x1b[2J\r\nFAKE LOG LINE\x00" + b"z" * 2000
    server = serve(b"HTTP/1.1 500 Bad\x1b[31m\rforged \x7f reason\r\nConnection: close\r\n"
                   b"Content-Type: text/plain\r\n\r\n" + body)
    with pytest.raises(FetchError) as info:
        get(server)
    text = str(info.value)
    assert info.value.kind == "http_5xx"
    assert text.isprintable(), repr(text)
    assert "FAKE LOG LINE" in text
    assert len(text) <= len(server.url) + 2 + 250
