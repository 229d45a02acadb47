"""HTTP fetching for adapters: a total deadline, a size cap, conditional requests and error kinds.

Blocking (requests); the core runs it in a worker thread. Every failure becomes a FetchError whose
``kind`` is a short, bounded label for metrics.

requests' timeouts are per socket operation, so a server that drips one byte a second would keep
a fetch alive for ever. Each fetch therefore has a guard thread that, at the deadline (or when
the session is closed at shutdown), shuts down the sockets the fetch uses; the blocked recv
returns and the fetch fails as ``timeout`` (or ``cancelled``).
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from gateway import PROJECT_URL, __version__
from gateway.errors import FetchError
from gateway.records import Request

USER_AGENT = f"soest-mqtt-gateway/{__version__} (+{PROJECT_URL})"
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
CHUNK = 8 * 1024  # small, so the deadline is checked often even on a fast drip
JSON_TYPES = ("json", "text/plain", "application/octet-stream")
BINARY_TYPES = ("image/", "audio/", "video/", "font/")
MAX_DETAIL = 160
MAX_VALIDATOR = 256  # an ETag or Last-Modified longer than this is not worth sending back
MAX_RETRY_AFTER = 6 * 3600.0
GUARD_POLL = 0.05  # after the deadline: how often to shut down a connection that was still connecting
VALIDATOR = re.compile(rf"[\x20-\x7e]{{1,{MAX_VALIDATOR}}}")
DELAY_SECONDS = re.compile(r"[0-9]{1,12}")


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
    # Lower-case names; for APIs that say how many results a paged query has (NGSILD-Results-Count).
    headers: Mapping[str, str] = field(default_factory=dict)


class HostPolicy:
    """Per-host politeness shared by all sources: a minimum gap between requests, and Retry-After.

    Thread-safe; fetches run in worker threads. ``close`` wakes every fetch waiting for its turn.
    """

    def __init__(self, min_interval: float = 1.0) -> None:
        self.min_interval = min_interval
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def acquire(self, url: str, max_wait: float) -> None:
        """Wait for this host's turn, or raise FetchError when it asked us to stay away longer."""
        host = urlsplit(url).netloc
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(host, 0.0))
            if start - now > max_wait:
                raise FetchError(url, "rate_limited", f"{host} asked us to wait {start - now:.0f}s more")
            self._next[host] = start + self.min_interval
        if self._closed.wait(max(0.0, start - now)):
            raise FetchError(url, "cancelled", "the gateway is shutting down")

    def back_off(self, url: str, seconds: float) -> None:
        host = urlsplit(url).netloc
        with self._lock:
            self._next[host] = max(self._next.get(host, 0.0), time.monotonic() + seconds)

    def close(self) -> None:
        self._closed.set()


# --------------------------------------------------------------------------- deadline guard


class _Watch:
    """One fetch's deadline: shuts down the fetch's connections when it passes or on abort."""

    def __init__(self, timeout: float) -> None:
        self.reason: str | None = None  # "timeout" or "cancelled" once the guard struck
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._fire = threading.Event()
        self._done = threading.Event()
        self._timeout = timeout
        threading.Thread(target=self._guard, name="fetch-guard", daemon=True).start()

    def attach(self, conn: Any) -> None:
        with self._lock:
            self._conns.append(conn)
        if self.reason is not None:
            _shut(conn)

    def abort(self) -> None:
        self.reason = self.reason or "cancelled"
        self._fire.set()

    def finish(self) -> None:
        self._done.set()
        self._fire.set()

    def _guard(self) -> None:
        self._fire.wait(self._timeout)
        if self._done.is_set():
            return
        self.reason = self.reason or "timeout"
        # A connection still being set up has no socket yet: try again until the fetch gives up.
        while True:
            with self._lock:
                conns = list(self._conns)
            for conn in conns:
                _shut(conn)
            if self._done.wait(GUARD_POLL):
                return


def _shut(conn: Any) -> None:
    # A response that ends with the connection (Connection: close) is read after http.client
    # dropped conn.sock, from the socket the connection remembered at connect time.
    sock = getattr(conn, "sock", None) or getattr(conn, "connected_sock", None)
    if sock is None:
        return
    # The plain socket's shutdown, also for TLS: it wakes a blocked read without tearing down
    # the SSL object under the reading thread. Errors mean it is closed already.
    with contextlib.suppress(OSError, ValueError, TypeError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Inflight:
    """The fetches of one session that are under way; ``abort`` ends them all and refuses new ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: set[_Watch] = set()
        self._local = threading.local()  # the watch of the fetch running in this thread
        self._closed = False

    def begin(self, url: str, timeout: float) -> _Watch:
        watch = _Watch(timeout)
        with self._lock:
            if self._closed:
                watch.finish()
                raise FetchError(url, "cancelled", "the gateway is shutting down")
            self._watches.add(watch)
        self._local.watch = watch
        return watch

    def end(self, watch: _Watch) -> None:
        watch.finish()
        self._local.watch = None
        with self._lock:
            self._watches.discard(watch)

    def attach(self, conn: Any) -> None:
        watch = getattr(self._local, "watch", None)
        if watch is not None:
            watch.attach(conn)

    def abort(self) -> None:
        with self._lock:
            self._closed = True
            watches = list(self._watches)
        for watch in watches:
            watch.abort()


class _Remembering:
    """Keeps the socket after connect: http.client drops ``sock`` after a ``Connection: close`` reply."""

    connected_sock: socket.socket | None = None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.connected_sock = self.sock  # type: ignore[attr-defined]


class _RememberingHTTPConnection(_Remembering, HTTPConnection):
    pass


class _RememberingHTTPSConnection(_Remembering, HTTPSConnection):
    pass


class _Watched:
    """A connection pool that reports each connection it hands out to ``inflight``."""

    inflight: Inflight | None = None

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if self.inflight is not None:
            self.inflight.attach(conn)
        return conn


class _WatchedHTTPPool(_Watched, HTTPConnectionPool):
    ConnectionCls = _RememberingHTTPConnection


class _WatchedHTTPSPool(_Watched, HTTPSConnectionPool):
    ConnectionCls = _RememberingHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools report each connection they hand out to ``inflight``."""

    def __init__(self, inflight: Inflight) -> None:
        self.inflight = inflight
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)

        def factory(cls: type[HTTPConnectionPool]) -> Any:
            def make(host: str, port: int | None = None, **kw: Any) -> HTTPConnectionPool:
                pool = cls(host, port, **kw)
                pool.inflight = self.inflight  # type: ignore[attr-defined]
                return pool
            return make

        self.poolmanager.pool_classes_by_scheme = {"http": factory(_WatchedHTTPPool),
                                                   "https": factory(_WatchedHTTPSPool)}


class Session(requests.Session):
    """A requests session whose fetches can be aborted: ``close`` ends every fetch under way."""

    def __init__(self) -> None:
        super().__init__()
        self.inflight = Inflight()
        for prefix in ("http://", "https://"):
            self.mount(prefix, _WatchedAdapter(self.inflight))

    def close(self) -> None:
        self.inflight.abort()
        super().close()


def make_session() -> requests.Session:
    session = Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


# --------------------------------------------------------------------------- fetching


def fetch(session: requests.Session, request: Request, *, timeout: float,
          validators: Validators | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
          policy: HostPolicy | None = None) -> Response:
    """GET ``request``; raise FetchError for anything but a usable body or a 304.

    ``timeout`` bounds the whole exchange (connect, headers, body), not each socket read.
    """
    if policy is not None:
        policy.acquire(request.url, max_wait=timeout)
    try:
        return _guarded(session, request, timeout, validators, max_bytes)
    except FetchError as exc:
        if policy is not None and exc.retry_after:
            policy.back_off(request.url, min(exc.retry_after, MAX_RETRY_AFTER))
        raise


def _guarded(session: requests.Session, request: Request, timeout: float, validators: Validators | None,
             max_bytes: int) -> Response:
    inflight: Inflight | None = getattr(session, "inflight", None)
    if inflight is None:  # a plain requests session: only the per-read timeouts and the body deadline
        return _fetch(session, request, timeout, validators, max_bytes, time.monotonic() + timeout)
    watch = inflight.begin(request.url, timeout)
    try:
        response = _fetch(session, request, timeout, validators, max_bytes, time.monotonic() + timeout)
    except FetchError as exc:
        if watch.reason is None or exc.kind == watch.reason:
            raise
        raise _struck(exc.url, watch.reason, timeout) from None
    finally:
        inflight.end(watch)
    if watch.reason is not None:  # the shutdown may look like the end of a body without a length
        raise _struck(response.url, watch.reason, timeout)
    return response


def _struck(url: str, reason: str, timeout: float) -> FetchError:
    if reason == "timeout":
        return FetchError(url, "timeout", f"no complete answer within {timeout:g}s")
    return FetchError(url, reason, "the gateway is shutting down")


def _fetch(session: requests.Session, request: Request, timeout: float, validators: Validators | None,
           max_bytes: int, deadline: float) -> Response:
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
            return _read_response(resp, request, validators, max_bytes, deadline)
    except FetchError:
        raise
    except requests.exceptions.Timeout:
        raise FetchError(url, "timeout", f"no answer within {timeout:g}s") from None
    except requests.exceptions.TooManyRedirects:
        raise FetchError(url, "redirect", "too many redirects") from None
    except (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema):
        raise FetchError(url, "redirect", "redirected to an unusable address") from None
    except requests.exceptions.ConnectionError as exc:
        kind = "reset" if "reset" in str(exc).lower() or "aborted" in str(exc).lower() else "connection"
        raise FetchError(url, kind, _short(exc)) from None
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        # ValueError: http.client and urllib3 reject some malformed responses that way.
        raise FetchError(url, "http", _short(exc)) from None


def _read_response(resp: requests.Response, request: Request, validators: Validators | None, max_bytes: int,
                   deadline: float) -> Response:
    url = resp.url
    if resp.status_code == 304:
        return Response(url, 304, None, validators or Validators())
    if resp.status_code >= 400:
        retry = _retry_after(resp.headers.get("Retry-After"))
        kind = "http_429" if resp.status_code == 429 else f"http_{resp.status_code // 100}xx"
        raise FetchError(url, kind, f"HTTP {resp.status_code} {clean(resp.reason or '', 60)}{_error_excerpt(resp)}",
                         retry_after=retry)
    declared = _declared_length(resp.headers.get("Content-Length"))
    if declared is not None and declared > max_bytes:
        raise FetchError(url, "too_large", f"body of {declared} bytes exceeds the {max_bytes}-byte cap")
    ctype = clean(resp.headers.get("Content-Type", ""), 60).lower()
    if "html" in ctype and "html" not in request.accept:
        raise FetchError(url, "html_page", "got an HTML page (maintenance or error page?)")
    if ctype.startswith(BINARY_TYPES):  # nothing an adapter reads is an image or a sound, whatever it asked for
        raise FetchError(url, "content_type", f"expected text, got Content-Type {ctype!r}")
    if "json" in request.accept and ctype and not any(t in ctype for t in JSON_TYPES):
        raise FetchError(url, "content_type", f"expected JSON, got Content-Type {ctype!r}")
    body = _read_capped(resp, url, max_bytes, deadline)
    return Response(url, resp.status_code, body,
                    Validators(_validator(resp.headers.get("ETag")), _validator(resp.headers.get("Last-Modified"))),
                    {k.lower(): clean(v, MAX_DETAIL) for k, v in resp.headers.items()})


def _read_capped(resp: requests.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    """The body, decoded (a gzip bomb meets the cap), in small chunks with the deadline checked between."""
    chunks: list[bytes] = []
    size = 0
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
    except requests.exceptions.ContentDecodingError as exc:
        raise FetchError(url, "bad_encoding", _short(exc)) from None
    except requests.exceptions.ConnectionError as exc:
        raise FetchError(url, "reset", _short(exc)) from None
    return b"".join(chunks)


def _error_excerpt(resp: requests.Response) -> str:
    """The start of an error body (APIs often say why there), on one line."""
    try:
        head = next(resp.iter_content(200), b"")
    except (requests.exceptions.RequestException, OSError, ValueError):
        return ""
    text = clean(head.decode("utf-8", "replace"))
    return f": {text}" if text and not text.startswith("<") else ""


def _declared_length(value: str | None) -> int | None:
    """Content-Length if it is plain ASCII digits; anything else is left to the size cap."""
    if value is None or not DELAY_SECONDS.fullmatch(value.strip()):
        return None
    return int(value.strip())


def _validator(value: str | None) -> str | None:
    """An ETag or Last-Modified worth sending back: printable ASCII of sane length, else None."""
    return value if value is not None and VALIDATOR.fullmatch(value) else None


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (Last-Modified, Retry-After) as an aware datetime; None when absent or unreadable."""
    if not value or not value.isascii():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _retry_after(value: str | None) -> float | None:
    """Seconds from Retry-After (delay-seconds or an HTTP date), capped; None when unreadable."""
    if not value or not value.isascii():
        return None
    value = value.strip()
    if DELAY_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    when = http_date(value)
    if when is None:
        return None
    try:
        seconds = (when - datetime.now(UTC)).total_seconds()
    except OverflowError:
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def clean(text: str, limit: int = MAX_DETAIL) -> str:
    """Upstream text made safe for a log line: no control characters, one line, at most ``limit`` chars."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(exc: BaseException) -> str:
    return clean(str(exc))
