"""HTTP fetching for adapters: timeouts, a size cap, conditional requests and error kinds.

Blocking (requests); the core runs it in a worker thread. Every failure becomes a FetchError whose
``kind`` is a short, bounded label for metrics.
"""

from __future__ import annotations

import email.utils
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from gateway import PROJECT_URL, __version__
from gateway.errors import FetchError
from gateway.records import Request

USER_AGENT = f"soest-mqtt-gateway/{__version__} (+{PROJECT_URL})"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
CHUNK = 64 * 1024
JSON_TYPES = ("json", "text/plain", "application/octet-stream")


@dataclass(frozen=True, slots=True)
class Validators:
    """What upstream told us last time, for If-None-Match / If-Modified-Since."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    url: str
    status: int
    body: bytes | None  # None means 304 Not Modified
    validators: Validators


class HostPolicy:
    """Per-host politeness shared by all sources: a minimum gap between requests, and Retry-After.

    Thread-safe; fetches run in worker threads.
    """

    def __init__(self, min_interval: float = 1.0) -> None:
        self.min_interval = min_interval
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, url: str, max_wait: float) -> None:
        """Wait for this host's turn, or raise FetchError when it asked us to stay away longer."""
        host = urlsplit(url).netloc
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, 0.0))
            if start - now > max_wait:
                raise FetchError(url, "rate_limited", f"{host} asked us to wait {start - now:.0f}s more")
            self._next[host] = start + self.min_interval
        if start > now:
            time.sleep(start - now)

    def back_off(self, url: str, seconds: float) -> None:
        host = urlsplit(url).netloc
        with self._lock:
            self._next[host] = max(self._next.get(host, 0.0), time.monotonic() + seconds)


def make_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def fetch(session: requests.Session, request: Request, *, timeout: float,
          validators: Validators | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
          policy: HostPolicy | None = None) -> Response:
    """GET ``request``; raise FetchError for anything but a usable body or a 304."""
    if policy is not None:
        policy.acquire(request.url, max_wait=timeout)
    try:
        return _fetch(session, request, timeout, validators, max_bytes)
    except FetchError as exc:
        if policy is not None and exc.retry_after:
            policy.back_off(request.url, min(exc.retry_after, 6 * 3600))
        raise


def _fetch(session: requests.Session, request: Request, timeout: float, validators: Validators | None,
           max_bytes: int) -> Response:
    headers = {"Accept": request.accept, **request.headers}
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    url = request.url
    try:
        with session.get(url, params=dict(request.params), headers=headers, timeout=(min(timeout, 10.0), timeout),
                         stream=True, allow_redirects=True) as resp:
            url = resp.url
            if resp.status_code == 304:
                return Response(url, 304, None, validators or Validators())
            if resp.status_code >= 400:
                retry = _retry_after(resp.headers.get("Retry-After"))
                kind = "http_429" if resp.status_code == 429 else f"http_{resp.status_code // 100}xx"
                raise FetchError(url, kind, f"HTTP {resp.status_code} {resp.reason}{_error_excerpt(resp)}",
                                 retry_after=retry)
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(url, "too_large", f"body of {declared} bytes exceeds the {max_bytes}-byte cap")
            ctype = resp.headers.get("Content-Type", "").lower()
            if "html" in ctype and "html" not in request.accept:
                raise FetchError(url, "html_page", "got an HTML page (maintenance or error page?)")
            if "json" in request.accept and ctype and not any(t in ctype for t in JSON_TYPES):
                raise FetchError(url, "content_type", f"expected JSON, got Content-Type {ctype[:60]!r}")
            body = _read_capped(resp, url, max_bytes, timeout)
            return Response(url, resp.status_code, body,
                            Validators(resp.headers.get("ETag"), resp.headers.get("Last-Modified")))
    except FetchError:
        raise
    except requests.exceptions.Timeout:
        raise FetchError(url, "timeout", f"no answer within {timeout:g}s") from None
    except requests.exceptions.ConnectionError as exc:
        kind = "reset" if "reset" in str(exc).lower() or "aborted" in str(exc).lower() else "connection"
        raise FetchError(url, kind, _short(exc)) from None
    except requests.exceptions.RequestException as exc:
        raise FetchError(url, "http", _short(exc)) from None


def _read_capped(resp: requests.Response, url: str, max_bytes: int, timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + 3 * timeout
    try:
        for chunk in resp.iter_content(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(url, "too_large", f"body exceeds the {max_bytes}-byte cap")
            if time.monotonic() > deadline:
                raise FetchError(url, "timeout", "body took too long to arrive")
            chunks.append(chunk)
    except requests.exceptions.ChunkedEncodingError as exc:
        raise FetchError(url, "reset", f"connection broken while reading: {_short(exc)}") from None
    except requests.exceptions.ConnectionError as exc:
        raise FetchError(url, "reset", _short(exc)) from None
    return b"".join(chunks)


def _error_excerpt(resp: requests.Response) -> str:
    """The start of an error body (APIs often say why there), on one line."""
    try:
        head = next(resp.iter_content(200), b"")
    except requests.exceptions.RequestException:
        return ""
    text = " ".join(head.decode("utf-8", "replace").split())
    return f": {text[:160]}" if text and not text.lstrip().startswith("<") else ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."
