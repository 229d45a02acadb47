"""Upstreams that push: subscribe to their own MQTT broker and put each pushed value through the pipeline.

A SensorThings server (FROST) publishes every new Observation on ``v1.1/Datastreams(<id>)/Observations``.
The REST poll stays: it gives the first values, the Datastream ids (so the topics) and each pushed
value's station and attributes, and it fills the gap after every (re)subscription. A pushed value
goes through the same check → store → publish as a polled one (``runs.evaluate``, the Publisher).

One ``Link`` per source, an asyncio task on the gateway's event loop (aiomqtt), started by ``serve``
and stopped by ``unserve``. Every network step has a deadline (connect, subscribe: the options'
``timeout``; a silent broker: the keepalive), every payload a size bound (``max_payload``, and over
MQTT 5 the broker is told our maximum packet size).

Availability: while the link is down for longer than ``offline_after`` the source is offline
(``SourceState.link_down``), even if polls succeed: residents rely on values arriving within a
second. It comes back online with the first successful poll after the link is up again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import runs
from gateway.adapter_api import Push, UpstreamMqtt
from gateway.catalog import Catalog, SourceSpec
from gateway.errors import SourceError
from gateway.metrics import PUSH_DROP_REASONS, Metrics
from gateway.pipeline import SCHEMA_ERRORS, Collected
from gateway.publisher import Publisher
from gateway.records import Reading
from gateway.runs import Outcome, SourceState
from gateway.store import Store

log = logging.getLogger(__name__)

QOS = 1
MAX_QUEUED = 1_000  # pushed messages waiting for the event loop; more are dropped by aiomqtt, not buffered
TOPIC_OVERHEAD = 1_024  # the packet limit told to an MQTT 5 broker: payload bound plus topic and header
WILDCARDS = frozenset("+#")
MAX_TOPIC = 500


@dataclass(slots=True)
class Track:
    """One subscribed topic: the polled reading it updates, and the newest value published for it."""

    polled: Reading
    last_id: str | None = None
    last_time: datetime | None = None


@dataclass(slots=True)
class Context:
    """What every link shares with the gateway."""

    sources: dict[str, SourceState]
    store: Store
    publisher: Publisher
    poll: Callable[[str], None]  # run the source now, to fill the gap after a (re)subscription
    dirty: bool = False  # states went out since the gateway last saved them

    @property
    def metrics(self) -> Metrics:
        return self.publisher.metrics

    def publish(self, spec: SourceSpec, outcome: Outcome) -> None:
        self.dirty |= self.publisher.publish(spec, outcome)


class PushLinks:
    """The push links of every source whose adapter pushes and whose options name a broker.

    A link starts with its source's first poll while serving (the poll names its topics) and stops with
    ``stop`` (unserve); after a step-down and a new serve, the next poll starts it again.
    """

    def __init__(self, catalog: Catalog, sources: dict[str, SourceState], store: Store, publisher: Publisher,
                 poll: Callable[[str], None]) -> None:
        self.ctx = Context(sources, store, publisher, poll)
        self._stopped = float("-inf")  # time.monotonic() of the last stop
        self.links: dict[str, Link] = {}
        for key, spec in catalog.sources.items():
            push = spec.adapter.push
            settings = push.link(spec.options) if push is not None else None
            if push is not None and settings is not None:
                self.links[key] = Link(spec, push, settings, self.ctx)

    def stop(self) -> None:
        self._stopped = time.monotonic()
        for link in self.links.values():
            link.stop()

    def describe(self, key: str) -> dict[str, Any] | None:
        """The push link of ``key`` for the status page (None: the source does not push)."""
        link = self.links.get(key)
        return None if link is None else link.describe()

    def take_dirty(self) -> bool:
        """True once after pushed states went out: the gateway saves them with its own."""
        dirty, self.ctx.dirty = self.ctx.dirty, False
        return dirty

    def polled(self, key: str, result: Collected, fetched_at: datetime) -> Collected:
        """A poll of ``key``, before it is settled: its readings name the topics and give pushed values their
        station and attributes. Returned without readings older than a value already pushed (a REST answer
        fetched before a push arrived, or a lagging replica), which would undo it."""
        link = self.links.get(key)
        if link is None or result.readings is None:
            return result
        if not link.running and self.ctx.sources[key].last_run > self._stopped:  # not a run from before a stop
            link.start()
        return replace(result, readings=link.polled(result.readings, fetched_at))


class Link:
    """One source's subscription to its upstream broker, reconnecting with backoff until stopped."""

    def __init__(self, spec: SourceSpec, push: Push, settings: UpstreamMqtt, ctx: Context) -> None:
        self.spec = spec
        self.push = push
        self.settings = settings
        self.ctx = ctx
        self.tracks: dict[str, Track] = {}
        self.up = False
        self._ups = 0  # sessions that got as far as subscribing
        self._why = ""  # the last failure, for the log and the offline reason
        self._warned_env = False
        self.running = False
        self._task: asyncio.Task[None] | None = None
        self._offline_timer: asyncio.TimerHandle | None = None
        self._poll_timer: asyncio.TimerHandle | None = None
        self._poll_wanted: datetime | None = None  # a gap-filling poll asked for at this time, not yet done
        self._client_id = f"{spec.key[:40]}-push-{secrets.token_hex(4)}"
        key = spec.key
        ctx.metrics.push_connected.labels(source=key).set(0)
        ctx.metrics.push_messages.labels(source=key)
        for reason in PUSH_DROP_REASONS:
            ctx.metrics.push_dropped.labels(source=key, reason=reason)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.running = True
        self._why = "not connected yet"  # not worth a warning of its own
        self._went_down(self._why)  # the offline clock runs from the first poll
        if self.tracks:
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        self.running = False
        for timer in (self._offline_timer, self._poll_timer):
            if timer is not None:
                timer.cancel()
        self._offline_timer = self._poll_timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.up = False
        self.ctx.metrics.push_connected.labels(source=self.spec.key).set(0)

    def describe(self) -> dict[str, Any]:
        """Whether it is subscribed, to how many topics where, and the last failure while it is not."""
        return {"host": self.settings.host, "running": self.running, "up": self.up, "topics": len(self.tracks),
                "why": None if self.up else self._why or None}

    def polled(self, readings: Sequence[Reading], fetched_at: datetime) -> list[Reading]:
        options = self.ctx.sources[self.spec.key].options or self.spec.options
        tracks: dict[str, Track] = {}
        kept: list[Reading] = []
        for reading in readings:
            topic = self.push.topic(options, reading)
            if topic is not None and (WILDCARDS & set(topic) or len(topic) > MAX_TOPIC):
                log.warning("%s: not subscribing to %r (a wildcard or too long)", self.spec.key, topic[:80])
                topic = None
            if topic is None:
                kept.append(reading)
                continue
            track = self.tracks.get(topic) or Track(reading)
            track.polled = reading
            tracks[topic] = track
            if reading.value is not None and track.last_time is not None and reading.observed_at < track.last_time:
                continue
            kept.append(reading)
            if reading.value is not None:
                track.last_time = reading.observed_at
        if self._poll_wanted is not None and fetched_at >= self._poll_wanted:
            self._poll_wanted = None
        changed = tracks.keys() != self.tracks.keys()
        self.tracks = tracks
        if changed and self.running:
            # The first poll, or new Datastream ids: subscribe afresh.
            if self._task is not None:
                self._task.cancel()
            self._task = asyncio.ensure_future(self._run()) if tracks else None
        return kept

    # ------------------------------------------------------------------ the connection

    async def _run(self) -> None:
        delay = self.settings.reconnect_min
        while True:
            ups = self._ups
            try:
                await self._session()
            except asyncio.CancelledError:
                self._went_down("stopped")
                raise
            except aiomqtt.MqttError as exc:
                self._went_down(f"upstream broker: {exc}")
            except Exception:  # one broken upstream must never take the event loop down
                log.exception("%s: push link failed unexpectedly", self.spec.key)
                self._went_down("internal error")
            if self._ups != ups:  # that session was up: the backoff starts afresh
                delay = self.settings.reconnect_min
            # Jitter: gateways that lost the same upstream broker do not all come back in step.
            await asyncio.sleep(random.uniform(self.settings.reconnect_min, delay))
            delay = min(max(delay * 2, self.settings.reconnect_min), self.settings.reconnect_max)

    async def _session(self) -> None:
        s = self.settings
        topics = list(self.tracks)
        async with self._client() as client:
            codes = await client.subscribe([(t, QOS) for t in topics], timeout=s.timeout)
            refused = [t for t, c in zip(topics, codes, strict=False) if _refused(c)]
            if refused:
                raise aiomqtt.MqttError(f"subscription refused for {', '.join(refused)[:200]}")
            self._came_up(len(topics))
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                try:
                    self.on_message(message.topic.value, payload, datetime.now(UTC), time.monotonic())
                except Exception:  # a value the pipeline cannot take must not cost the link
                    log.exception("%s: pushed message could not be published", self.spec.key)

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        v5 = s.protocol == "5"
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.MaximumPacketSize = s.max_payload + TOPIC_OVERHEAD
        password = os.environ.get(s.password_env) if s.password_env is not None else None
        if s.password_env is not None and password is None and not self._warned_env:
            self._warned_env = True
            log.error("%s: options.mqtt.password_env names %s, which is not set; connecting without password",
                      self.spec.key, s.password_env)
        try:
            context = ssl.create_default_context(cafile=s.ca_file) if s.tls else None
        except (OSError, ssl.SSLError) as exc:  # a missing or unreadable ca_file: retried, the reason logged
            raise aiomqtt.MqttError(f"options.mqtt.ca_file {s.ca_file}: {exc}") from None
        return aiomqtt.Client(
            s.host, s.port or (8883 if s.tls else 1883), username=s.username, password=password,
            identifier=self._client_id, logger=logging.getLogger("gateway.push.mqtt"),
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else True, keepalive=s.keepalive, timeout=s.timeout,
            max_queued_incoming_messages=MAX_QUEUED, properties=properties,
            tls_context=context)

    # ------------------------------------------------------------------ availability

    def _came_up(self, count: int) -> None:
        key = self.spec.key
        self.up = True
        self._ups += 1
        self.ctx.metrics.push_connected.labels(source=key).set(1)
        if self._offline_timer is not None:
            self._offline_timer.cancel()
            self._offline_timer = None
        # Online again once the gap-filling poll succeeds (runs.status_change), not before.
        self.ctx.sources[key].link_down = None
        log.info("%s: push link up, %d topics on %s", key, count, self.settings.host)
        self._ask_for_poll()

    def _ask_for_poll(self) -> None:
        """Fill the gap since the last poll. Asked again once if no poll started meanwhile: the
        scheduler skips a run while the previous one of the source is still going."""
        self._poll_wanted = datetime.now(UTC).replace(microsecond=0)
        self.ctx.poll(self.spec.key)
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        self._poll_timer = asyncio.get_running_loop().call_later(self.spec.config.timeout + 2, self._poll_again)

    def _poll_again(self) -> None:
        self._poll_timer = None
        if self._poll_wanted is not None and self.up:
            self.ctx.poll(self.spec.key)

    def _went_down(self, why: str) -> None:
        if not self.running:
            return
        key = self.spec.key
        if self.up or why != self._why:  # once per kind of failure, not once per retry
            log.warning("%s: push link to %s down (%s)", key, self.settings.host, why)
        self.up = False
        self._why = why
        self.ctx.metrics.push_connected.labels(source=key).set(0)
        if self._offline_timer is None:  # counted from the first failure, not from each retry
            self._offline_timer = asyncio.get_running_loop().call_later(self.settings.offline_after, self._offline)

    def _offline(self) -> None:
        self._offline_timer = None
        if self.up or not self.running:
            return
        key = self.spec.key
        state = self.ctx.sources[key]
        state.link_down = f"push link down for {self.settings.offline_after:g}s ({self._why})"
        online = runs.set_online(self.spec, state, False, state.link_down)
        if online is not None:
            self.ctx.publish(self.spec, Outcome(key, online=online))

    # ------------------------------------------------------------------ messages

    def on_message(self, topic: str, payload: bytes, now: datetime, mono: float) -> None:
        """One pushed message: parse, drop what is malformed, repeated or older, else check → store → publish."""
        key = self.spec.key
        self.ctx.metrics.push_messages.labels(source=key).inc()
        reason, reading, ident = self._judge(topic, payload, now)
        if reason is not None or reading is None:
            self.ctx.metrics.push_dropped.labels(source=key, reason=reason or "malformed").inc()
            log.debug("%s: pushed message on %s dropped (%s)", key, topic[:120], reason)
            return
        track = self.tracks[topic]
        track.last_id, track.last_time = ident, reading.observed_at
        state = self.ctx.sources[key]
        outcome = Outcome(key, values=runs.evaluate(self.spec, self.ctx.store, [reading], now, state.url, mono))
        outcome.online = runs.status_change(self.spec, state, self.ctx.store, now)
        self.ctx.publish(self.spec, outcome)

    def _judge(self, topic: str, payload: bytes, now: datetime) -> tuple[str | None, Reading | None, str | None]:
        track = self.tracks.get(topic)
        if track is None:
            return "malformed", None, None  # a topic we did not subscribe to
        if len(payload) > self.settings.max_payload:
            return "too_large", None, None
        try:
            ident, reading = self.push.parse(payload, track.polled, now)
        except (SourceError, *SCHEMA_ERRORS):
            return "malformed", None, None
        # A push must carry its value and its own time (the adapter uses ``now`` only when upstream gave none).
        if reading.value is None or reading.observed_at is now:
            return "malformed", None, None
        if (ident is not None and ident == track.last_id) or reading.observed_at == track.last_time:
            return "duplicate", None, None
        if track.last_time is not None and reading.observed_at < track.last_time:
            return "out_of_order", None, None
        return None, reading, ident


def _refused(code: object) -> bool:
    """A SUBACK failure: 0x80 over MQTT 3.1.1, a failure reason code over MQTT 5."""
    return bool(getattr(code, "is_failure", False)) if not isinstance(code, int) else code >= 0x80
