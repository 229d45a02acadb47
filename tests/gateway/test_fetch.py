"""The HTTP path against a real local server: every fault becomes a FetchError with a kind."""

from __future__ import annotations

import time

import pytest

from gateway.errors import FetchError
from gateway.fetch import USER_AGENT, HostPolicy, Validators, fetch, make_session
from gateway.records import Request


def get(upstream, path: str = "/data", **kw):
    return fetch(make_session(), Request(url=upstream.url + path, params={"a": "1"}), timeout=kw.pop("timeout", 2),
                 **kw)


def test_ok_sends_user_agent_and_params(upstream):
    upstream.serve("/data", {"x": 1}, headers={"Content-Type": "application/json", "ETag": '"v1"'})
    resp = get(upstream)
    assert resp.status == 200
    assert resp.body == b'{"x": 1}'
    assert resp.validators.etag == '"v1"'
    path, headers = upstream.requests[-1]
    assert path == "/data?a=1"
    assert headers["User-Agent"] == USER_AGENT
    assert "soest-mqtt-gateway/" in USER_AGENT


def test_conditional_request_304(upstream):
    upstream.serve("/data", b"", status=304, headers={})
    resp = get(upstream, validators=Validators(etag='"v1"', last_modified="Sun, 21 Jun 2026 14:30:00 GMT"))
    assert resp.body is None
    _, headers = upstream.requests[-1]
    assert headers["If-None-Match"] == '"v1"'
    assert headers["If-Modified-Since"] == "Sun, 21 Jun 2026 14:30:00 GMT"


@pytest.mark.parametrize(("status", "kind"), [(500, "http_5xx"), (503, "http_5xx"), (404, "http_4xx"),
                                              (429, "http_429")])
def test_http_errors(upstream, status: int, kind: str):
    upstream.serve("/data", {"detail": "nope"}, status=status, headers={"Retry-After": "120"})
    with pytest.raises(FetchError) as info:
        get(upstream)
    assert info.value.kind == kind
    assert info.value.retry_after == 120.0


def test_timeout(upstream):
    upstream.serve("/data", {"x": 1}, delay=1.5)
    with pytest.raises(FetchError) as info:
        get(upstream, timeout=0.3)
    assert info.value.kind == "timeout"


def test_connection_reset(upstream):
    upstream.serve("/data", b"", reset=True)
    with pytest.raises(FetchError) as info:
        get(upstream)
    assert info.value.kind in ("reset", "connection")


def test_connection_refused():
    with pytest.raises(FetchError) as info:
        fetch(make_session(), Request(url="http://127.0.0.1:9/x"), timeout=1)
    assert info.value.kind == "connection"


def test_html_page(upstream):
    upstream.serve("/data", "<html>maintenance</html>", headers={"Content-Type": "text/html; charset=utf-8"})
    with pytest.raises(FetchError) as info:
        get(upstream)
    assert info.value.kind == "html_page"


def test_wrong_content_type(upstream):
    upstream.serve("/data", b"\x89PNG", headers={"Content-Type": "image/png"})
    with pytest.raises(FetchError) as info:
        get(upstream)
    assert info.value.kind == "content_type"


def test_size_cap(upstream):
    upstream.serve("/data", b"[" + b"1," * 5000 + b"1]")
    with pytest.raises(FetchError) as info:
        get(upstream, max_bytes=1000)
    assert info.value.kind == "too_large"


def test_host_policy_spaces_requests_and_honours_retry_after(upstream):
    policy = HostPolicy(min_interval=0.3)
    upstream.serve("/data", {"x": 1})
    session = make_session()
    stamps = []
    for _ in range(2):
        fetch(session, Request(url=upstream.url + "/data"), timeout=2, policy=policy)
        stamps.append(time.monotonic())
    assert stamps[1] - stamps[0] >= 0.29
    upstream.serve("/data", {"detail": "slow down"}, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(FetchError) as first:
        fetch(session, Request(url=upstream.url + "/data"), timeout=2, policy=policy)
    assert first.value.kind == "http_429"
    served = len(upstream.requests)
    # Any source asking the same host now is refused locally, without a request.
    with pytest.raises(FetchError) as second:
        fetch(session, Request(url=upstream.url + "/other"), timeout=2, policy=policy)
    assert second.value.kind == "rate_limited"
    assert len(upstream.requests) == served
