"""A gateway started with --standby: runs its lease (gateway.lease) on the event loop and acts on it.

A standby publishes nothing and holds no Last Will on the shared status topic (its death would
say ``offline`` for the active instance). It fetches nothing either: upstream APIs see one client,
and a takeover starts every source at once anyway. Taking over sets the status Will and reconnects
(a Will cannot change within a connection), then the gateway serves: saved values, its own topics,
every source now, discovery. Stepping down stops serving and reconnects without the Will; it sends
no ``offline``, because the winner is online.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gateway import topics
from gateway.catalog import Catalog
from gateway.lease import LEASE_LEAF, MAX_BEAT_PAYLOAD, Event, Lease, Role, instance_id
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass

log = logging.getLogger("gateway.app")


class Solo:
    """A gateway without --standby: active from the start, as if there were no lease at all."""

    role = Role.ACTIVE

    def __init__(self, serve: Callable[[], None]) -> None:
        self._serve = serve

    def start(self) -> None:
        self._serve()

    def stop(self) -> None:
        pass

    def offer(self, topic: str, payload: bytes, retain: bool) -> bool:
        return False

    def connected(self) -> None:
        pass


class Identity:
    """Who this instance is: its id (in the lease, ``info`` and the status page) and its MQTT client id."""

    def __init__(self, catalog: Catalog, standby: bool, token: str) -> None:
        self.standby = standby
        self.instance = instance_id(token)
        configured = catalog.settings.mqtt.client_id
        # Two instances of one config must not share a client id: the broker would drop each for the other.
        self.client_id = (f"{configured}-{token}" if standby else configured) if configured \
            else f"{catalog.settings.city.slug}-gateway-{token}"
        # A standby's death must not say "offline" for the active one: no Will until it takes over.
        self.will_topic = None if standby else catalog.gateway_status_topic

    def roles(self, link: MqttLink, catalog: Catalog, serve: Callable[[], None],
              unserve: Callable[[], None]) -> Standby | Solo:
        if not self.standby:
            return Solo(serve)
        return Standby(link, catalog, Lease(self.instance, catalog.settings.mqtt.lease), serve, unserve)


class Standby:
    """Heartbeats while active, takeover after a silent lease, step-down on a lost split brain."""

    def __init__(self, link: MqttLink, catalog: Catalog, lease: Lease, serve: Callable[[], None],
                 unserve: Callable[[], None]) -> None:
        self.link = link
        self.lease = lease
        self.topic = topics.gateway_topic(catalog.base, LEASE_LEAF)
        self.status_topic = catalog.gateway_status_topic
        self._serve = serve
        self._unserve = unserve
        self._role = lease.role  # the role acted on, which the lease may have left already
        self._seen = (False, 0)  # the link's (connected, connections) the lease last heard of
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def role(self) -> Role:
        return self._role

    def start(self) -> None:
        """On the event loop, before the link connects."""
        self._loop = asyncio.get_running_loop()
        self.link.subscribe(self.topic)
        self._task = self._loop.create_task(self._run())
        log.info("standby: instance %s waits %gs for a heartbeat on %s before it takes over", self.lease.instance,
                 self.lease.lease, self.topic)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def offer(self, topic: str, payload: bytes, retain: bool) -> bool:
        """On the MQTT thread: True if the message was on the lease topic (and is taken care of here)."""
        if topic != self.topic:
            return False
        # Oversized ones are not heartbeats and do not cost the event loop. Retained ones go on: the
        # lease decides what they prove (on NATS every live heartbeat arrives flagged retained).
        if len(payload) <= MAX_BEAT_PAYLOAD and self._loop is not None:
            self._loop.call_soon_threadsafe(self._heard, payload, retain)
        return True

    def connected(self) -> None:
        """On the event loop, after every connect: an active instance beats at once."""
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            self._follow_connection(now)
            event = self.lease.tick(now, datetime.now(UTC))
            if event is not None:
                self._apply(event)
            beat = self.lease.beat(now)
            if beat is not None:
                self.link.send(self.topic, beat.encode(), TopicClass.AVAILABILITY)
            self._wake.clear()
            # Bounded, so that a lost connection is noticed without a callback for it.
            timeout = min(self.lease.due_in(time.monotonic()), self.lease.lease / 10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _follow_connection(self, now: float) -> None:
        seen = (self.link.connected, self.link.connections)
        if seen == self._seen:
            return
        self._seen = seen
        if seen[0]:
            self.lease.connected(now)
        else:
            self.lease.disconnected()

    def _heard(self, payload: bytes, retain: bool) -> None:
        event = self.lease.heard(payload, retain, time.monotonic())
        if event is not None:
            self._apply(event)
            self._wake.set()

    def _apply(self, event: Event) -> None:
        log.info("%s", event.line)
        if event.role is self._role:
            return
        self._role = event.role
        if event.role is Role.ACTIVE:
            self.link.set_will(self.status_topic)
            self.link.reconnect()
            self._serve()
        else:
            self._unserve()
            self.link.set_will(None)
            self.link.reconnect()
