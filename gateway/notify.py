"""Subscriptions of sources whose platform pushes changes (NGSI-LD, NGSI-v2), and the /notify/<source> route.

A thread keeps each subscription alive while the gateway serves (a standby holds none): it creates
it, asks for it at every check (a platform that restarted has forgotten it: it is created again),
renews it at half its lifetime, and deletes it when the gateway stops serving or the process exits.
A notification is accepted only for the subscription id the platform gave this gateway, applied to
the last polled entities, and published on the event loop like a fetch's readings. Polling goes on
at the source's schedule: it is the fallback when notifications stop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import requests

from gateway import runs
from gateway.adapter_api import Call, Subscription
from gateway.catalog import Catalog, SourceSpec
from gateway.errors import ParseError, SourceError
from gateway.fetch import clean, make_session
from gateway.http import PostRoute
from gateway.metrics import Metrics
from gateway.payloads import encode_json
from gateway.pipeline import Collected, parse
from gateway.publisher import Publisher
from gateway.runs import SourceState
from gateway.store import Store

log = logging.getLogger(__name__)

ROUTE = "/notify/"
JSON = "application/json"
MAX_ANSWER = 64 * 1024  # bytes read of a subscription call's answer; only its status and headers matter
GONE = (404, 410)
IDLE_CHECK = 1.0  # seconds between looks at whether the gateway serves, while it does not


class Host(Protocol):
    """What the notifier uses of the gateway (gateway.app.Gateway): the event loop owns all of it."""

    catalog: Catalog
    sources: dict[str, SourceState]
    store: Store
    publisher: Publisher
    metrics: Metrics


@dataclass(slots=True)
class Subscribed:
    """One source's subscription as this gateway knows it."""

    spec: SourceSpec
    kind: Subscription
    endpoint: str
    id: str | None = None  # as the platform knows it; None until created
    expires: datetime | None = None
    last_body: bytes | None = None  # the last polled (or notified) entities
    notifications: int = 0  # accepted since start


class Notifier:
    """The subscriptions of every subscribing source of ``host.catalog``.

    ``serving()`` is the event loop while the gateway publishes, else None (a standby, or stopped).
    ``listening``: whether the gateway's HTTP server runs; without it no platform can notify us.
    """

    def __init__(self, host: Host, serving: Callable[[], asyncio.AbstractEventLoop | None], listening: bool,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), start: bool = True) -> None:
        catalog = host.catalog
        self.subs: dict[str, Subscribed] = {}
        for key, spec in catalog.sources.items():
            kind = spec.adapter.subscription
            base = kind.notify_url(spec.options) if kind is not None else None
            if kind is not None and base is not None:
                self.subs[key] = Subscribed(spec, kind, f"{base.rstrip('/')}{ROUTE}{key}")
        self._host = host
        self._serving = serving
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._session = make_session()
        self._tag = f"{catalog.node_id}-{secrets.token_hex(4)}"  # our ids differ from another gateway's
        if self.subs and not listening:
            log.warning("subscribe needs the HTTP server (GATEWAY_HTTP_PORT) for notifications: polling only")
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        if self.subs and listening and start:
            self._thread.start()
            atexit.register(self.close)  # a clean exit deletes the subscriptions (the thread is a daemon)

    @property
    def routes(self) -> dict[str, PostRoute]:
        return {ROUTE: self.receive} if self.subs else {}

    # ------------------------------------------------------------------ lifecycle

    def close(self, timeout: float = 15.0) -> None:
        """Delete the subscriptions and end the thread (at exit; tests call it)."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self.delete_all()

    def _run(self) -> None:
        interval = min(max(min(s.kind.lifetime(s.spec.options) for s in self.subs.values()) / 4, 1.0), 60.0)
        while not self._closed.is_set():
            serving = self._serving() is not None
            if serving:
                self.check()
            else:
                self.delete_all()  # a standby, or a gateway that stepped down: the active one subscribes
            self._closed.wait(interval if serving else IDLE_CHECK)
        self.delete_all()

    def check(self) -> None:
        """Create what is missing, re-create what the platform forgot, renew what expires soon."""
        for sub in self.subs.values():
            if self._closed.is_set():
                return
            try:
                self._keep(sub)
            except Exception:  # one platform's oddity must not end the thread for the others
                log.exception("%s: subscription check failed", sub.spec.key)

    def _keep(self, sub: Subscribed) -> None:
        now = self._clock()
        if sub.id is not None:
            answer = self._send(sub, "status", sub.id, now)
            if answer is not None and answer[0] in GONE:
                log.warning("%s: the platform no longer has subscription %s; creating it again", sub.spec.key, sub.id)
                self._forget(sub)
            elif sub.expires is not None and sub.expires - now < timedelta(seconds=sub.kind.lifetime(
                    sub.spec.options) / 2):
                self._renew(sub, now)
        if sub.id is None:
            self._create(sub, now)

    def _create(self, sub: Subscribed, now: datetime) -> None:
        ident = f"urn:ngsi-ld:Subscription:{self._tag}-{sub.spec.key}"
        expires = now + timedelta(seconds=sub.kind.lifetime(sub.spec.options))
        answer = self._send(sub, "create", ident, expires)
        if answer is None or answer[0] not in (200, 201, 409):
            log.warning("%s: could not create the subscription (%s); polling only", sub.spec.key,
                        answer[0] if answer else "no answer")
            return
        location = urlsplit(answer[1].get("location", "")).path
        with self._lock:
            sub.id = unquote(location.rsplit("/", 1)[-1]) if location else ident
            sub.expires = expires
        log.info("%s: subscribed (%s, until %s)", sub.spec.key, sub.id, expires.isoformat(timespec="seconds"))

    def _renew(self, sub: Subscribed, now: datetime) -> None:
        assert sub.id is not None
        expires = now + timedelta(seconds=sub.kind.lifetime(sub.spec.options))
        answer = self._send(sub, "renew", sub.id, expires)
        if answer is not None and answer[0] in GONE:
            self._forget(sub)
        elif answer is not None and answer[0] < 300:
            sub.expires = expires
            log.debug("%s: subscription renewed until %s", sub.spec.key, expires.isoformat(timespec="seconds"))

    def _forget(self, sub: Subscribed) -> None:
        with self._lock:
            sub.id, sub.expires = None, None

    def delete_all(self) -> None:
        for sub in self.subs.values():
            if sub.id is not None:
                answer = self._send(sub, "delete", sub.id, self._clock())
                log.info("%s: subscription %s deleted (%s)", sub.spec.key, sub.id, answer[0] if answer else "no answer")
                self._forget(sub)

    def _send(self, sub: Subscribed, action: str, ident: str, expires: datetime) -> tuple[int, dict[str, str]] | None:
        """(status, lower-case headers) of one call, within the source's timeout; None when it failed."""
        call: Call = sub.kind.call(sub.spec.options, sub.spec.config.base_url, action, ident, sub.endpoint, expires)
        timeout = sub.spec.config.timeout
        inflight: Any = getattr(self._session, "inflight", None)
        watch = inflight.begin(call.url, timeout) if inflight is not None else None  # a deadline for the whole call
        try:
            with self._session.request(call.method, call.url, json=call.json, headers=dict(call.headers),
                                       timeout=(min(timeout, 10.0), timeout), stream=True) as resp:
                resp.raw.read(MAX_ANSWER)
                return resp.status_code, {k.lower(): clean(v) for k, v in resp.headers.items()}
        except (requests.RequestException, OSError, ValueError) as exc:
            log.warning("%s: subscription %s failed: %s", sub.spec.key, action, clean(str(exc)))
            return None
        finally:
            if watch is not None:
                inflight.end(watch)

    # ------------------------------------------------------------------ notifications

    def polled(self, key: str, result: Collected) -> Collected:
        """A poll's result, passed on; its entities are what later notifications are applied to."""
        sub = self.subs.get(key)
        if sub is not None and result.body is not None:
            with self._lock:
                sub.last_body = result.body
        return result

    def receive(self, path: str, body: bytes) -> tuple[int, str, bytes]:
        """The /notify/<source> route, on an HTTP worker thread."""
        sub = self.subs.get(path[len(ROUTE):])
        loop = self._serving()
        if sub is None:
            return 404, JSON, encode_json({"error": "no subscribing source of this name"})
        if loop is None:
            self._count(sub, "standby")
            return 503, JSON, encode_json({"error": "this gateway does not publish now (standby)"})
        try:
            ident, entities = sub.kind.notified(body)
        except ParseError as exc:
            self._count(sub, "malformed")
            return 400, JSON, encode_json({"error": clean(str(exc))})
        with self._lock:
            if sub.id is None or ident != sub.id:
                log.info("%s: refused a notification for subscription %s", sub.spec.key, clean(ident, 80))
                self._count(sub, "foreign")
                return 403, JSON, encode_json({"error": "not a subscription of this gateway"})
            merged = sub.kind.merge(sub.last_body, entities)
            sub.last_body = merged
            sub.notifications += 1
        self._count(sub, "accepted")
        loop.call_soon_threadsafe(self._publish, sub.spec, merged)
        return 200, JSON, encode_json({"accepted": len(entities)})

    def _count(self, sub: Subscribed, outcome: str) -> None:
        self._host.metrics.notifications.labels(source=sub.spec.key, outcome=outcome).inc()

    def _publish(self, spec: SourceSpec, body: bytes) -> None:
        """On the event loop: the notified entities' readings, checked, stored and published like a fetch's."""
        host, state = self._host, self._host.sources[spec.key]
        if self._serving() is None:
            return
        now = datetime.now(UTC).replace(microsecond=0)
        options = state.options or spec.options
        try:
            readings = parse(spec.adapter, body, options, now)
        except SourceError as exc:
            log.warning("%s: notification not usable: %s", spec.key, exc)
            return
        result = Collected(state.url or spec.config.base_url, readings, body, options, state.validators)
        host.publisher.publish(spec, runs.settle(spec, state, host.store, result, now, time.monotonic()))
