"""The running gateway: schedules sources, keeps state, publishes, and follows HA's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import random
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from adapters.base import AdapterOptions
from gateway import __version__, discovery, status, topics
from gateway.catalog import Catalog, SourceSpec
from gateway.config import Broker
from gateway.errors import SourceError
from gateway.fetch import HostPolicy, Validators, make_session
from gateway.http import HttpServer, Route
from gateway.metrics import Metrics
from gateway.mqtt import Kind, MqttLink
from gateway.payloads import encode_json, iso
from gateway.persist import StateFile
from gateway.pipeline import Collected, collect, parse
from gateway.records import Reading
from gateway.schedule import cron_trigger, interval_trigger
from gateway.store import Store

log = logging.getLogger(__name__)

RECONCILE_TIMEOUT = 10.0
REGISTRY_FILE = "discovery.json"
REFRESH_MIN_INTERVAL = 10
JSON = "application/json"
HEARTBEAT_TICK_MAX = 60.0


@dataclass(slots=True)
class SourceState:
    """Runtime health of one source."""

    session: requests.Session = field(default_factory=make_session)
    validators: Validators = field(default_factory=Validators)
    online: bool | None = None
    failures: int = 0
    errors_total: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    options: AdapterOptions | None = None
    body: bytes | None = None
    url: str = ""


class Gateway:
    """One gateway instance. ``run`` returns when ``stop`` is set."""

    def __init__(self, catalog: Catalog, broker: Broker, *, http_host: str = "127.0.0.1",
                 http_port: int | None = None, metrics: Metrics | None = None,
                 data_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.settings = catalog.settings
        self.metrics = metrics or Metrics()
        self.store = Store(self.settings.mqtt.heartbeat)
        self.sources = {key: SourceState() for key in catalog.sources}
        self.hosts = HostPolicy(self.settings.http.per_host_interval)
        self.started_at = datetime.now(UTC).replace(microsecond=0)
        self.started_mono = time.monotonic()
        self.scheduler: AsyncIOScheduler | None = None
        self._first_runs: set[str] = set()
        self._last_refresh = float("-inf")
        # Discovery configs are generated when needed, not kept: at 100,000 entities they would
        # be the biggest thing in memory.
        self.config_count = sum(1 for _ in discovery.iter_configs(catalog)) if self.settings.mqtt.discovery else 0
        self.announced = asyncio.Event()
        self._http_host = http_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=max(2, len(catalog.sources) + 1),
                                            thread_name_prefix="fetch")
        self._sync_token = f"{catalog.base}/{topics.GATEWAY}/sync/{secrets.token_hex(6)}"
        self._sync_event: asyncio.Event | None = None
        self._seen_configs: dict[str, int] | None = None
        self._config_filter = f"{catalog.prefix}/+/{catalog.node_id}/+/config"
        self._birth_topic = f"{catalog.prefix}/status"
        self._announce: asyncio.TimerHandle | None = None
        self._first_connect_done = False
        self._stopping = False
        self._dirty = False
        mqtt = self.settings.mqtt
        self.link = MqttLink(
            broker,
            client_id=mqtt.client_id or f"{self.settings.city.slug}-gateway-{secrets.token_hex(3)}",
            will_topic=catalog.gateway_status_topic, metrics=self.metrics, qos=mqtt.qos,
            keepalive=mqtt.keepalive, reconnect_min=mqtt.reconnect_min, reconnect_max=mqtt.reconnect_max,
            on_connect=self._on_connect_threadsafe, on_message=self._on_message_threadsafe)
        # Bound here, so a taken port is a start-up error and not a crash inside the event loop.
        self.http = HttpServer(http_host, http_port, self.metrics.registry, self._routes()) \
            if http_port is not None else None
        self.state_file = StateFile(data_dir) if data_dir is not None else None
        self.registry_file = StateFile(data_dir, REGISTRY_FILE) if data_dir is not None else None
        self.registry: set[str] = set()
        self._restore()

    # ------------------------------------------------------------------ data directory

    def _restore(self) -> None:
        if self.state_file is None:
            return
        saved = self.state_file.load()
        registry = (self.registry_file.load() if self.registry_file is not None else {}).get("topics")
        self.registry = {t for t in registry if isinstance(t, str)} if isinstance(registry, list) else set()
        entities = saved.get("entities")
        if not isinstance(entities, dict):
            return
        restored = self.store.restore(self.catalog.sources.values(), entities, time.monotonic(), datetime.now(UTC))
        for spec, messages in restored:
            self.link.publish_many(messages, Kind.STATE, self._expiry(spec))
        count = sum(len(m) for _, m in restored)
        if count:
            log.info("restored %d fresh values from %s", count, self.state_file.path)

    def _state_doc(self) -> dict[str, Any]:
        """Built on the event loop, which owns the store; only writing the file may happen elsewhere."""
        return {"saved_at": iso(datetime.now(UTC)), "entities": self.store.dump(self.catalog.sources.values())}

    def _save_registry(self, topics_: set[str]) -> None:
        """The discovery configs we own, for orphan cleanup at the next start (phase two)."""
        if self.registry_file is not None:
            self.registry_file.save({"saved_at": iso(datetime.now(UTC)), "topics": sorted(topics_)})

    def save_state(self) -> None:
        if self.state_file is not None:
            self.state_file.save(self._state_doc())

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._sync_event = asyncio.Event()
        if self.http is not None:
            self.http.start()
            log.info("status page and metrics on http://%s:%s/", self._http_host, self.http.port)
        self._publish_static()
        if self.settings.mqtt.discovery:
            self.link.subscribe(self._birth_topic)
        if self.settings.mqtt.refresh_button:
            self.link.subscribe(self.catalog.refresh_topic)
        self.link.start()
        scheduler = self.scheduler = AsyncIOScheduler(event_loop=self._loop, timezone=UTC)
        for key, spec in self.catalog.sources.items():
            scheduler.add_job(self.run_source, self._trigger(spec), args=[key], id=key, name=key,
                              max_instances=1, coalesce=True, misfire_grace_time=max(1, int(spec.interval)),
                              next_run_time=datetime.now(UTC))
        tick = min(HEARTBEAT_TICK_MAX, max(1.0, self.settings.mqtt.heartbeat / 4))
        scheduler.add_job(self.tick, IntervalTrigger(seconds=tick), id="_tick", max_instances=1, coalesce=True)
        scheduler.start()
        log.info("gateway %s for %s: %d sources, %d entities, base topic '%s'", __version__,
                 self.settings.city.name, len(self.catalog.sources), len(self.catalog.entities()),
                 self.catalog.base)
        try:
            await stop.wait()
        finally:
            self._stopping = True
            scheduler.shutdown(wait=False)
            if self._announce is not None:
                self._announce.cancel()
            await asyncio.to_thread(self.link.stop)
            self.save_state()
            if self.http is not None:
                self.http.stop()
            # Fetches hanging on upstream would keep the executor's threads, and so the process, alive.
            self.hosts.close()
            for source in self.sources.values():
                source.session.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info("gateway stopped")

    # ------------------------------------------------------------------ HTTP

    def _routes(self) -> dict[str, Route]:
        def on_loop(func: Callable[[], Any]) -> Any:
            async def call() -> Any:
                return func()

            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=5)

        busy = 503, JSON, encode_json({"error": "the gateway's event loop did not answer in time"})

        def api() -> tuple[int, str, bytes]:
            try:
                return 200, JSON, encode_json(on_loop(lambda: status.snapshot(self)))
            except (TimeoutError, RuntimeError):
                return busy

        def ready() -> tuple[int, str, bytes]:
            try:
                ok, reasons = status.readiness(on_loop(lambda: status.snapshot(self)))
            except (TimeoutError, RuntimeError):
                return busy
            return (200 if ok else 503), JSON, encode_json({"ready": ok, "reasons": reasons})

        def healthz() -> tuple[int, str, bytes]:
            # Alive means the event loop still answers, not merely that this HTTP thread runs.
            try:
                on_loop(lambda: None)
            except (TimeoutError, RuntimeError):
                return 503, "text/plain; charset=utf-8", b"event loop not responding\n"
            return 200, "text/plain; charset=utf-8", b"ok\n"

        return {
            "/": lambda: (200, "text/html; charset=utf-8", status.PAGE.encode()),
            "/api/status": api,
            "/readyz": ready,
            "/healthz": healthz,
        }

    def _trigger(self, spec: SourceSpec) -> BaseTrigger:
        jitter = spec.config.effective_jitter()
        if spec.config.cron is not None:
            return cron_trigger(spec.config.cron, self.settings.city.timezone, jitter)
        return interval_trigger(spec.interval, jitter)

    def _publish_static(self) -> None:
        """Retained messages known before any fetch: info and diagnostic counters."""
        info = {
            "version": __version__,
            "started_at": iso(self.started_at),
            "city": self.settings.city.model_dump(),
            "base_topic": self.catalog.base,
            "discovery_prefix": self.catalog.prefix if self.settings.mqtt.discovery else None,
            "heartbeat_s": self.settings.mqtt.heartbeat,
            "sources": {
                key: {"adapter": s.adapter.name, "schedule": s.schedule_text(), "interval_s": s.interval,
                      "max_age_s": s.max_age, "expire_after_s": s.expire_after,
                      "entities": [e.key for e in s.entities], "provider": s.adapter.provider,
                      "license": s.license, "attribution": s.attribution}
                for key, s in self.catalog.sources.items()},
        }
        self.link.publish(self.catalog.gateway_info_topic, encode_json(info), Kind.INFO)
        self.link.publish(self.catalog.version_topic, __version__.encode(), Kind.INFO)
        self.link.publish(self.catalog.started_topic, self.started_at.isoformat().encode(), Kind.INFO)
        for key, spec in self.catalog.sources.items():
            self.link.publish(spec.fetch_errors_topic, str(self.sources[key].errors_total).encode(),
                              Kind.DIAGNOSTIC)
            self.metrics.entities.labels(source=key).set(len(spec.entities))

    # ------------------------------------------------------------------ broker events (paho thread)

    def _on_connect_threadsafe(self, first: bool) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._on_connect()))

    def _on_message_threadsafe(self, topic: str, payload: bytes, retain: bool) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_message, topic, payload, retain)

    # ------------------------------------------------------------------ broker events (event loop)

    async def _on_connect(self) -> None:
        first = not self._first_connect_done
        if first:
            self._first_connect_done = True
            if self.settings.mqtt.discovery:
                # Changed configs went out during reconciliation; unchanged ones are on the broker.
                await self._reconcile_discovery()
        elif self.settings.mqtt.discovery:
            self._send_discovery()
        if self._stopping:
            return
        # After a reconnect everything goes again (the broker may have lost its retained store);
        # on the first connect only what was kept while we were not yet connected.
        count = self.link.republish(unsent_only=first)
        log.info("published %d retained messages (discovery %d)", count, self.config_count)
        if not self.announced.is_set():
            self.announced.set()
            release_startup_memory()

    def _send_discovery(self) -> int:
        count = 0
        for topic, payload in discovery.messages(self.catalog):
            self.link.send(topic, payload, Kind.DISCOVERY)
            count += 1
        return count

    async def _reconcile_discovery(self) -> None:
        """Publish only changed configs and clear retained configs of ours that are no longer configured.

        The broker sends retained messages for a new subscription before anything published after
        it, so a marker message of our own tells us the snapshot is complete.
        """
        assert self._sync_event is not None
        self._seen_configs = {}
        self._sync_event.clear()
        self.link.subscribe(self._sync_token)
        self.link.subscribe(self._config_filter)
        self.link.publish(self._sync_token, b"sync", Kind.INFO, retain=False)
        try:
            await asyncio.wait_for(self._sync_event.wait(), RECONCILE_TIMEOUT)
            complete = self.link.connected
        except TimeoutError:
            complete = False
        self.link.unsubscribe(self._config_filter)
        self.link.unsubscribe(self._sync_token)
        seen, self._seen_configs = self._seen_configs, None
        if self._stopping:
            return
        ours: set[str] = set()
        unchanged = 0
        for topic, payload in discovery.messages(self.catalog):
            ours.add(topic)
            if complete and seen.get(topic) == hash(payload):
                unchanged += 1
            else:
                self.link.send(topic, payload, Kind.DISCOVERY)
        if not complete:
            # Phase one only: remember what we published before and no longer own, and clear it
            # on the next start that sees the broker's whole retained store.
            log.warning("could not read the broker's retained discovery configs; published all, "
                        "cleared nothing")
            self._save_registry(self.registry | ours)
            self.registry = set()
            return
        orphans = sorted((set(seen) | self.registry) - ours)
        for topic in orphans:
            self.link.publish(topic, b"", Kind.DISCOVERY)
        self._save_registry(ours)
        self.registry = set()
        log.info("discovery: %d configs (%d unchanged), %d orphaned configs removed",
                 len(ours), unchanged, len(orphans))

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic == self._sync_token:
            if self._sync_event is not None:
                self._sync_event.set()
        elif topic == self._birth_topic:
            if payload.strip().lower() == b"online":
                self._schedule_announce()
        elif topic == self.catalog.refresh_topic:
            # A retained press would fire on every start; HA's button never retains.
            if not retain and payload.strip().upper() in (b"PRESS", b"REFRESH", b""):
                self.refresh_all()
        elif self._seen_configs is not None and retain and topic.endswith("/config") and payload:
            self._seen_configs[topic] = hash(payload)

    def refresh_all(self) -> None:
        """Run every source now (HA's "refresh all sources" button); at most every 10 s."""
        now = time.monotonic()
        if now - self._last_refresh < REFRESH_MIN_INTERVAL or self.scheduler is None:
            log.info("refresh ignored: the last one was less than %ds ago", REFRESH_MIN_INTERVAL)
            return
        self._last_refresh = now
        log.info("refreshing all sources now")
        for key in self.catalog.sources:
            job = self.scheduler.get_job(key)
            if job is not None:
                job.modify(next_run_time=datetime.now(UTC))

    def _schedule_announce(self) -> None:
        assert self._loop is not None
        if self._announce is not None:
            self._announce.cancel()
        delay = random.uniform(0.5, 1.0) * self.settings.mqtt.birth_delay
        log.info("Home Assistant came online; re-announcing in %.1fs", delay)
        self._announce = self._loop.call_later(delay, self._reannounce)

    def _reannounce(self) -> None:
        self._announce = None
        sent = self._send_discovery() if self.settings.mqtt.discovery else 0
        sent += self.link.republish((Kind.AVAILABILITY, Kind.STATE, Kind.ATTRIBUTES, Kind.DIAGNOSTIC))
        log.info("re-announced %d messages to Home Assistant", sent)

    # ------------------------------------------------------------------ sources

    async def run_source(self, key: str) -> None:
        """Fetch, parse and publish one source; every failure stays inside this source."""
        assert self._loop is not None
        spec = self.catalog.sources[key]
        state = self.sources[key]
        state.runs += 1
        fetched_at = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        try:
            result = await self._loop.run_in_executor(self._executor, self._collect, spec, state, fetched_at)
        except SourceError as exc:
            self._failed(spec, state, exc.kind, str(exc), getattr(exc, "retry_after", None))
            return
        except asyncio.CancelledError:
            log.debug("%s: fetch cancelled by shutdown", key)
            return
        except Exception as exc:  # an adapter bug must not take the gateway down
            log.exception("%s: adapter failed unexpectedly", key)
            self._failed(spec, state, "internal", f"{type(exc).__name__}: {exc}", None)
            return
        finally:
            self.metrics.fetch_duration.labels(source=key).observe(time.perf_counter() - started)
        state.options = result.options
        state.validators = result.validators
        if result.readings is None:
            self.metrics.not_modified.labels(source=key).inc()
            self._succeeded(spec, state, fetched_at, outcome="not_modified")
            return
        state.url = result.url
        state.body = result.body if spec.adapter.reevaluate else None
        try:
            self._publish_readings(spec, result.readings, fetched_at, result.url)
        except Exception as exc:  # an adapter handing over something unpublishable
            log.exception("%s: could not publish readings", key)
            self._failed(spec, state, "internal", f"{type(exc).__name__}: {exc}", None)
            return
        self._succeeded(spec, state, fetched_at, outcome="ok")

    def _publish_readings(self, spec: SourceSpec, readings: list[Reading], fetched_at: datetime, url: str) -> None:
        key = spec.key
        out = self.store.apply(spec, readings, fetched_at, url, time.monotonic())
        expiry = self._expiry(spec)
        if out.states:
            self._dirty = True
        self.link.publish_many(out.states, Kind.STATE, expiry)
        self.link.publish_many(out.attributes, Kind.ATTRIBUTES, expiry)
        for entity, reason in out.rejected:
            self.metrics.rejected.labels(source=key, entity=entity.key, reason=reason).inc()
            log.info("%s.%s: rejected implausible value (%s)", key, entity.key, reason)

    def _collect(self, spec: SourceSpec, state: SourceState, fetched_at: datetime) -> Collected:
        return collect(spec, state.session, state.options, state.validators, fetched_at, self.hosts,
                       self.settings.http.max_bytes)

    def _first_run_done(self, key: str) -> None:
        if key in self._first_runs:
            return
        self._first_runs.add(key)
        total = len(self.catalog.sources)
        published = sum(1 for st in self.store.entities.values() if st.text is not None)
        log.info("first run: %d/%d sources tried, %d/%d entities have values", len(self._first_runs), total,
                 published, len(self.catalog.entities()))

    def _succeeded(self, spec: SourceSpec, state: SourceState, fetched_at: datetime, outcome: str) -> None:
        state.failures = 0
        state.last_success = fetched_at
        state.last_error = None
        self.metrics.fetches.labels(source=spec.key, outcome=outcome).inc()
        self.metrics.last_success.labels(source=spec.key).set(fetched_at.timestamp())
        self.link.publish(spec.last_fetch_topic, iso(fetched_at).encode(), Kind.DIAGNOSTIC)  # type: ignore[union-attr]
        self._update_status(spec, state, fetched_at)
        self._first_run_done(spec.key)

    def _failed(self, spec: SourceSpec, state: SourceState, kind: str, detail: str,
                retry_after: float | None) -> None:
        state.failures += 1
        state.errors_total += 1
        state.last_error = f"{kind}: {detail}"
        self.metrics.fetches.labels(source=spec.key, outcome="error").inc()
        self.metrics.fetch_errors.labels(source=spec.key, kind=kind).inc()
        self.link.publish(spec.fetch_errors_topic, str(state.errors_total).encode(), Kind.DIAGNOSTIC)
        if retry_after:
            log.info("%s: upstream asked to retry after %.0fs", spec.key, retry_after)
        level = logging.WARNING if state.failures in (1, spec.config.failure_threshold) else logging.DEBUG
        log.log(level, "%s: fetch failed (%s), %d in a row", spec.key, state.last_error, state.failures)
        self._first_run_done(spec.key)
        if state.failures >= spec.config.failure_threshold:
            self._set_online(spec, state, False, f"{state.failures} failed fetches")
            # Looked-up ids may have changed upstream: look them up again next time.
            state.options = None

    def _update_status(self, spec: SourceSpec, state: SourceState, now: datetime) -> None:
        newest = self.store.newest_observed(spec)
        if newest is None:
            fresh = state.online is True and state.failures == 0
            self._set_online(spec, state, fresh, "no values yet")
            return
        age = (now - newest).total_seconds()
        self._set_online(spec, state, age <= spec.max_age, f"data is {age:.0f}s old (max {spec.max_age:g}s)")

    def _set_online(self, spec: SourceSpec, state: SourceState, online: bool, why: str) -> None:
        if state.online is online:
            return
        state.online = online
        self.metrics.source_up.labels(source=spec.key).set(1 if online else 0)
        self.link.publish(spec.status_topic, (topics.ONLINE if online else topics.OFFLINE).encode(),
                          Kind.AVAILABILITY)
        if online:
            log.info("%s: online", spec.key)
        else:
            log.warning("%s: offline (%s)", spec.key, why)

    def _expiry(self, spec: SourceSpec) -> int | None:
        return spec.expire_after if self.settings.mqtt.message_expiry else None

    async def tick(self) -> None:
        """Heartbeat unchanged fresh states, stop re-sending stale ones, take stale sources offline."""
        now = datetime.now(UTC)
        mono = time.monotonic()
        for spec in self.catalog.sources.values():
            self.link.publish_many(self.store.due_for_heartbeat((spec,), mono, now), Kind.STATE, self._expiry(spec))
            stale = self.store.stale(spec, now)
            if stale:
                self.link.forget([e.state_topic for e in stale], Kind.STATE)
                self.link.forget([e.attributes_topic for e in stale], Kind.ATTRIBUTES)
                self.store.mark_unsent(stale)
        if self._dirty and self.state_file is not None:
            self._dirty = False
            await asyncio.to_thread(self.state_file.save, self._state_doc())
        for key, spec in self.catalog.sources.items():
            state = self.sources[key]
            try:
                if state.body is not None and state.last_success is not None:
                    self._reevaluate(spec, state, now)
                # Also before the first fetch: values restored from the data directory may be stale.
                if state.online is not False and self.store.newest_observed(spec) is not None:
                    self._update_status(spec, state, now)
            except Exception:  # one broken adapter must not stop the tick for the others
                log.exception("%s: re-evaluation failed", key)

    def _reevaluate(self, spec: SourceSpec, state: SourceState, now: datetime) -> None:
        """Parse the last body again: some values change with time alone (expiring warnings)."""
        fetched = state.last_success or now
        try:
            readings = parse(spec.adapter, state.body or b"", state.options or spec.options, now)
        except SourceError:
            return
        # The body is as old as its fetch: a re-evaluation must not make it look newer.
        readings = [r if r.observed_at <= fetched else replace(r, observed_at=fetched) for r in readings]
        self._publish_readings(spec, readings, fetched, state.url)


def release_startup_memory() -> None:
    """Give the memory of start-up transients (config parsing, the first discovery burst) back.

    glibc keeps freed heap memory for reuse; a long-running gateway would otherwise carry its
    start-up peak as resident memory forever.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
