"""The running gateway: wires config, store, pipeline, broker link, scheduler and HTTP together.

A run of a source reads top-down: ``collect`` (fetch → parse, in a worker thread) → ``runs.settle``
(check → store, on the event loop) → ``Publisher.publish``. Discovery's lifecycle lives in
``announce``, the refresh button in ``refresh``, the status page in ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from gateway import __version__, push, runs, status
from gateway.announce import REGISTRY_FILE, Announcer
from gateway.catalog import Catalog, SourceSpec
from gateway.config import Broker
from gateway.expiry import Expiry
from gateway.fetch import HostPolicy
from gateway.http import HttpServer, Route
from gateway.memory import limit_malloc_arenas, prestart_threads, release_startup_memory, trim_heap
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.notify import Notifier
from gateway.outbox import TopicClass
from gateway.owned import OWNED_FILE, OwnedTopics
from gateway.payloads import encode_json
from gateway.persist import StateFile
from gateway.pipeline import collect
from gateway.publisher import Publisher
from gateway.refresh import RefreshButton, is_press
from gateway.runs import SourceState
from gateway.saved import SavedValues
from gateway.schedule import realign, start_scheduler
from gateway.standby import Identity
from gateway.store import Store

log = logging.getLogger(__name__)

JSON = "application/json"
# Commands (a button press, HA's birth message) are a few bytes; longer ones are dropped on the
# MQTT thread before they cost the event loop anything.
MAX_COMMAND_PAYLOAD = 64
# With this many entities the first runs wait, at most ANNOUNCE_FIRST_S, for the discovery announce:
# parsing thousands of values at once starves the connect and the read-back of the GIL (at 10,000
# the connect came 1.1 s after start). A few hundred cost milliseconds, and their first values are
# not held back for it. A broker that is down holds nothing back either: values are kept and sent.
ANNOUNCE_FIRST_ENTITIES = 1000
ANNOUNCE_FIRST_S = 1.0


class Gateway:
    """One gateway instance. ``run`` returns when ``stop`` is set."""

    def __init__(self, catalog: Catalog, broker: Broker, *, http_host: str = "127.0.0.1",
                 http_port: int | None = None, metrics: Metrics | None = None,
                 data_dir: Path | None = None, standby: bool = False) -> None:
        self.catalog = catalog
        self.settings = catalog.settings
        self.metrics = metrics or Metrics()
        self.metrics.prepare(catalog.sources.values())
        self.store = Store(self.settings.mqtt.heartbeat)
        self.sources = {key: SourceState() for key in catalog.sources}
        self.hosts = HostPolicy(self.settings.http.per_host_interval)
        self.started_at = datetime.now(UTC).replace(microsecond=0)
        self.started_mono = time.monotonic()
        self.scheduler: AsyncIOScheduler | None = None
        self.announced = asyncio.Event()
        self._announce_first = len(catalog.entities()) >= ANNOUNCE_FIRST_ENTITIES
        self._http_host = http_host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers = max(2, len(catalog.sources) + 1)  # one to spare for saving the state file
        self._executor = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fetch")
        self.first_runs = runs.FirstRuns(catalog)
        self._first_connect_done = False
        self._stopping = False
        self._dirty = False
        self._info = b""  # the info document last published
        self._restored = False
        mqtt = self.settings.mqtt
        self.me = me = Identity(catalog, standby, secrets.token_hex(3))
        self.link = MqttLink(
            broker, client_id=me.client_id, will_topic=me.will_topic, metrics=self.metrics, qos=mqtt.qos,
            keepalive=mqtt.keepalive, reconnect_min=mqtt.reconnect_min, reconnect_max=mqtt.reconnect_max,
            on_connect=self._on_connect_threadsafe, on_message=self._on_message_threadsafe)
        self.expiry = Expiry(self.link, self.store, self.metrics, mqtt.message_expiry, lambda: bool(self.scheduler))
        self.publisher = Publisher(self.link, self.metrics, self.expiry)
        self.refresh = RefreshButton(catalog.sources, self.sources, self._run_now)
        self.notifier = Notifier(self, lambda: self._loop if self.scheduler else None, http_port is not None)
        # Bound here, so a taken port is a start-up error and not a crash inside the event loop.
        self.http = HttpServer(http_host, http_port, self.metrics.registry, self._routes(),
                               posts=self.notifier.routes) if http_port is not None else None
        self.saved = SavedValues(catalog, self.store, self.sources, self.link, self.publisher, data_dir)
        self.announcer = Announcer(catalog, self.link,
                                   StateFile(data_dir, REGISTRY_FILE) if data_dir is not None else None)
        self.roles = me.roles(self.link, catalog, self.serve, self.unserve)
        self.owned = OwnedTopics(catalog, StateFile(data_dir, OWNED_FILE) if data_dir else None, self.metrics)
        self.push = push.PushLinks(catalog, self.sources, self.store, self.publisher, self._run_now)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        limit_malloc_arenas()
        self._loop = asyncio.get_running_loop()
        prestart_threads(self._executor, self._workers)
        if self.http is not None:
            self.http.start()
            log.info("status page and metrics on http://%s:%s/", self._http_host, self.http.port)
        if self.settings.mqtt.discovery:
            self.link.subscribe(self.announcer.birth_topic)
        if self.settings.mqtt.refresh_button:
            self.link.subscribe(self.catalog.refresh_topic)
        self.roles.start()
        self.link.start()
        log.info("gateway %s for %s: %d sources, %d entities, base topic '%s'", __version__,
                 self.settings.city.name, len(self.catalog.sources), len(self.catalog.entities()),
                 self.catalog.base)
        try:
            await stop.wait()
        finally:
            self._stopping = True
            self.roles.stop()
            self.unserve()
            await asyncio.to_thread(self.link.stop)
            if self._restored:  # a standby that never served must not overwrite what an earlier run saved
                self.saved.save()
            if self.http is not None:
                self.http.stop()
            # Fetches hanging on upstream would keep the executor's threads, and so the process, alive.
            self.hosts.close()
            for source in self.sources.values():
                source.session.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            log.info("gateway stopped")

    def serve(self) -> None:
        """Start publishing: saved values (on the first call), the gateway's own topics, every source now."""
        if self._restored:  # again, after a step-down: what went stale meanwhile must not go out again
            now, mono = datetime.now(UTC), time.monotonic()
            for spec in self.catalog.sources.values():
                self.publisher.heartbeat(spec, self.store, mono, now)
        else:
            self._restored = True
            self.saved.restore()
        self._publish_static()
        self.scheduler = start_scheduler(self.catalog, self.run_source, self.tick)

    def unserve(self) -> None:
        """Stop publishing (shutdown, or a standby that lost a split brain): no runs, no re-announce."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        self.push.stop()
        self.announcer.cancel()

    def _run_now(self, key: str) -> None:
        job = self.scheduler.get_job(key) if self.scheduler is not None else None
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))

    def _next_run(self, key: str) -> datetime | None:
        job = self.scheduler.get_job(key) if self.scheduler is not None else None
        return job.next_run_time if job is not None else None

    def _publish_static(self) -> None:
        """Retained messages known before any fetch: info and diagnostic counters."""
        self._publish_info()
        self.link.publish(self.catalog.version_topic, __version__.encode(), TopicClass.INFO)
        self.link.publish(self.catalog.started_topic, self.started_at.isoformat().encode(), TopicClass.INFO)
        for key, spec in self.catalog.sources.items():
            self.link.publish(spec.fetch_errors_topic, str(self.sources[key].errors_total).encode(),
                              TopicClass.DIAGNOSTIC)
            self.metrics.entities.labels(source=key).set(len(spec.entities))

    def _publish_info(self) -> None:
        """Again when it changed (role, the connection's protocol or node); replaces the copy the outbox keeps."""
        mqtt = {"protocol": self.link.protocol, "node": "{}:{}".format(*self.link.address)} \
            if self.link.connected else None
        info = encode_json(status.info(self.catalog, self.started_at, self.me.instance, self.roles.role, mqtt))
        if info != self._info:
            self._info = info
            self.link.publish(self.catalog.gateway_info_topic, info, TopicClass.INFO)

    # ------------------------------------------------------------------ HTTP

    def _routes(self) -> dict[str, Route]:
        def on_loop(func: Callable[[], Any]) -> Any:
            async def call() -> Any:
                return func()

            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=5)

        def view() -> status.View:
            return status.View(self.catalog, self.sources, self.store, self.link, self.started_at,
                               self.started_mono, self._next_run, self.me.instance, self.roles.role,
                               self.push.describe)

        return status.routes(on_loop, view, self.publisher.history)

    # ------------------------------------------------------------------ broker events

    def _on_connect_threadsafe(self, first: bool) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._on_connect()))

    def _on_message_threadsafe(self, topic: str, payload: bytes, retain: bool) -> None:
        """On the MQTT thread: a reconciliation read takes its messages; commands go to the event loop."""
        if self.roles.offer(topic, payload, retain) or self.announcer.reader.offer(topic, payload, retain) \
                or len(payload) > MAX_COMMAND_PAYLOAD:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_message, topic, payload, retain)

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        if self.scheduler is None:
            return
        if topic == self.announcer.birth_topic:
            self.announcer.on_birth(payload)
        elif topic == self.catalog.refresh_topic and is_press(payload, retain):
            self.refresh.press(time.monotonic())

    async def _on_connect(self) -> None:
        self.roles.connected()
        if self.scheduler is None:
            return
        first = not self._first_connect_done
        self._first_connect_done = True
        self._publish_info()
        if self.settings.mqtt.discovery:
            if first:
                # Changed configs went out during reconciliation; unchanged ones are on the broker.
                await self.announcer.reconcile(self._executor, lambda: self._stopping or self.scheduler is None)
            else:
                self.announcer.send_all()
        if self._stopping or self.scheduler is None:
            return
        # After a reconnect everything goes again (the broker may have lost its retained store);
        # on the first connect only what was kept while we were not yet connected.
        count = self.link.republish(unsent_only=first) + self.expiry.on_connect()
        log.info("published %d retained messages (discovery %d)", count, self.announcer.config_count)
        if not self.announced.is_set():
            self.announced.set()
            release_startup_memory()
        await self.owned.clear_orphans(self.link, self._executor)

    # ------------------------------------------------------------------ sources

    async def run_source(self, key: str) -> None:
        """Fetch, parse, check, store and publish one source; every failure stays inside this source."""
        assert self._loop is not None
        if self._announce_first and not self.announced.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.announced.wait(), ANNOUNCE_FIRST_S)
        spec = self.catalog.sources[key]
        state = self.sources[key]
        state.runs += 1
        state.last_run = time.monotonic()
        fetched_at = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        try:
            result = await self._loop.run_in_executor(
                self._executor, collect, spec, state.session, state.options, state.validators, fetched_at, self.hosts,
                self.settings.http.max_bytes)
        except asyncio.CancelledError:
            log.debug("%s: fetch cancelled by shutdown", key)
            return
        except Exception as exc:
            outcome = runs.settle_error(spec, state, exc)
        else:
            result = self.push.polled(key, self.notifier.polled(key, result), fetched_at)  # newer pushed values stay
            outcome = runs.settle(spec, state, self.store, result, fetched_at, time.monotonic())
        finally:
            self.metrics.fetch_duration.labels(source=key).observe(time.perf_counter() - started)
        if self.scheduler is None:  # stepped down while this fetch ran
            return
        self._dirty |= self.publisher.publish(spec, outcome)
        realign(self.scheduler, spec, state, outcome)
        self.first_runs.done(key, self.store)

    async def tick(self) -> None:
        """Heartbeat fresh states, forget stale ones, re-evaluate time-dependent bodies, save the state."""
        now = datetime.now(UTC)
        mono = time.monotonic()
        for spec in self.catalog.sources.values():
            self.publisher.heartbeat(spec, self.store, mono, now)
        trim_heap()
        if (self._dirty or self.push.take_dirty()) and self.saved.file is not None:
            self._dirty = False
            # The fetch pool has a thread to spare for this; no lazily started default executor.
            assert self._loop is not None
            await self._loop.run_in_executor(self._executor, self.saved.file.save, self.saved.doc())
        for key, spec in self.catalog.sources.items():
            try:
                self._dirty |= reevaluate(spec, self.sources[key], self.store, self.publisher, now, mono)
            except Exception:  # one broken adapter must not stop the tick for the others
                log.exception("%s: re-evaluation failed", key)


def reevaluate(spec: SourceSpec, state: SourceState, store: Store, publisher: Publisher, now: datetime,
               mono: float) -> bool:
    """A tick's work for one source: time-dependent values parsed again, availability by data age.

    True if values changed (the state file is then due)."""
    dirty = False
    if state.body is not None and state.last_success is not None:
        values = runs.reevaluate(spec, state, store, now, mono)
        if values is not None:
            dirty = publisher.publish(spec, runs.Outcome(spec.key, values=values))
    # Also before the first fetch: values restored from the data directory may be stale.
    if state.online is not False and store.newest_observed(spec) is not None:
        online = runs.status_change(spec, state, store, now)
        if online is not None:
            publisher.set_available(spec, online)
    return dirty
