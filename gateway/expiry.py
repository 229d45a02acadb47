"""MQTT 5 message expiry, done by the gateway on a connection without it (MQTT 3.1.1).

Under MQTT 5 the broker drops a retained state or attributes value ``expire_after`` seconds after
its last publish, so old data never greets a new subscriber as if it were current. MQTT 3.1.1
keeps retained values forever. This module remembers that moment for every state and attributes
topic and, while the connection cannot carry message expiry, publishes an empty retained message
(a clear) then, with the same QoS. A cleared topic is cleared again after every reconnect: the
node may be another one of a cluster, or a broker restored from a snapshot older than the clear.
Under MQTT 5 it sends nothing; the broker does the same by itself.

The moments count from the gateway's own publishes (a new value, a heartbeat, a restored value),
not from the re-sends after a reconnect: a re-send restores the broker's copy, it does not make
the data newer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gateway import topics
from gateway.outbox import TopicClass

if TYPE_CHECKING:
    from gateway.catalog import SourceSpec
    from gateway.metrics import Metrics
    from gateway.mqtt import MqttLink
    from gateway.store import Store

log = logging.getLogger("gateway.app")

# What is due within this many seconds goes with the timer that fires: one wake-up (and one log
# line) for the states and attributes a run published a few milliseconds apart.
EARLY = 0.05
# The deadline of a topic that has expired already, in the data directory.
EXPIRED = 0


class Deadlines:
    """When each topic's retained value would expire, per source. No clock, no broker.

    All topics of one source share one lifetime, so their deadlines come in the order they were
    refreshed: an insertion-ordered dict per source, where a refresh moves the topic to the end,
    keeps the earliest first at O(1) per publish, without a heap that grows with every heartbeat.
    A refresh must therefore not be earlier than the source's previous ones.
    """

    def __init__(self) -> None:
        self._by_source: dict[str, dict[str, float]] = {}

    def refresh(self, source: str, topic_names: Iterable[str], deadline: float) -> None:
        group = self._by_source.setdefault(source, {})
        for topic in topic_names:
            group.pop(topic, None)
            group[topic] = deadline

    def get(self, source: str, topic: str) -> float | None:
        group = self._by_source.get(source)
        return group.get(topic) if group is not None else None

    def earliest(self) -> float | None:
        firsts = [next(iter(group.values())) for group in self._by_source.values() if group]
        return min(firsts) if firsts else None

    def due(self, now: float) -> list[tuple[str, str]]:
        """Remove and return (source, topic) of every deadline at or before ``now``."""
        out: list[tuple[str, str]] = []
        for source, group in self._by_source.items():
            while group:
                topic, deadline = next(iter(group.items()))
                if deadline > now:
                    break
                del group[topic]
                out.append((source, topic))
        return out

    def __len__(self) -> int:
        return sum(len(group) for group in self._by_source.values())


def topic_class(topic: str) -> TopicClass:
    # An entity key can never be "attributes" (topics.RESERVED_ENTITY_KEYS), so the suffix decides.
    return TopicClass.ATTRIBUTES if topic.endswith("/" + topics.ATTRIBUTES) else TopicClass.STATE


def restored_deadline(raw: object, wall: float, lifetime: float) -> float | None:
    """Seconds from now until a saved deadline (0 = expired already); None if ``raw`` is none.

    A deadline further away than one lifetime cannot come from a real publish (it was in the
    past), so it is cut to one lifetime: a tampered file cannot keep a value alive for longer.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return min(max(raw - wall, 0.0), lifetime)


class Expiry:
    """Clears retained states and attributes when MQTT 5 expiry would have dropped them. Event loop only."""

    def __init__(self, link: MqttLink, store: Store, metrics: Metrics, enabled: bool,
                 serving: Callable[[], bool] = lambda: True) -> None:
        self.link = link
        # A standby that stepped down clears nothing: the topics are the active instance's now.
        self.serving = serving
        self.store = store
        # mqtt.message_expiry: false means the values are meant to stay; nothing to stand in for.
        self.enabled = enabled
        self.deadlines = Deadlines()
        # Topics cleared by expiry and not published since; cleared again after each reconnect.
        self.expired: dict[str, TopicClass] = {}
        self._cleared = metrics.clears.labels(reason="expired")
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def lifetime(self, spec: SourceSpec) -> int | None:
        """The MQTT 5 message expiry of the source's states and attributes (None: they never expire)."""
        return spec.expire_after if self.enabled else None

    def sent(self, spec: SourceSpec, messages: Iterable[tuple[str, bytes]]) -> None:
        """The gateway published these states or attributes of ``spec`` just now."""
        if not self.enabled:
            return
        names = [topic for topic, _ in messages]
        if not names:
            return
        self.deadlines.refresh(spec.key, names, time.monotonic() + spec.expire_after)
        if self.expired:
            for topic in names:
                self.expired.pop(topic, None)
        self._arm()

    # ------------------------------------------------------------------ timer

    def _arm(self) -> None:
        """One timer, at the earliest deadline; a later refresh of that topic only makes it fire for nothing.

        Armed from the event loop, at the first publish or connect: deadlines restored before the
        loop runs wait for that (the first fetches start at once).
        """
        at = self.deadlines.earliest()
        if at is None or at >= self._timer_at:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        due = self.deadlines.due(time.monotonic() + EARLY)
        by_class: dict[TopicClass, list[str]] = {TopicClass.STATE: [], TopicClass.ATTRIBUTES: []}
        for _, topic in due:
            by_class[topic_class(topic)].append(topic)
        for cls, names in by_class.items():
            self.link.forget(names, cls)  # not re-sent after a reconnect
        clear = self._clears_needed()
        by_source: dict[str, int] = {}
        for source, topic in due:
            cls = topic_class(topic)
            if cls is TopicClass.STATE:
                self.store.lost(topic)
            self.expired[topic] = cls
            if clear:
                self._clear(topic, cls)
            by_source[source] = by_source.get(source, 0) + 1
        for source, count in by_source.items():
            log.info("%s: %d retained values passed their expiry%s", source, count,
                     "; cleared them (MQTT 3.1.1 has no message expiry)" if clear else "")
        self._arm()

    # ------------------------------------------------------------------ clearing

    def _clears_needed(self) -> bool:
        return self.link.connected and not self.link.expiry_supported and self.serving()

    def _clear(self, topic: str, cls: TopicClass) -> None:
        self.link.send(topic, b"", cls)
        self._cleared.inc()

    def on_connect(self) -> int:
        """Clear again what has expired: this broker may hold an old copy. Returns the count."""
        self._arm()
        if not self.expired or not self._clears_needed():
            return 0
        for topic, cls in list(self.expired.items()):
            self._clear(topic, cls)
        log.info("cleared %d expired retained values again (MQTT 3.1.1)", len(self.expired))
        return len(self.expired)

    # ------------------------------------------------------------------ data directory

    def dump(self, sources: Iterable[SourceSpec]) -> dict[str, list[float | None]]:
        """Wall-clock deadlines of every entity's state and attributes, by unique_id (0 = expired)."""
        mono, wall = time.monotonic(), time.time()
        out: dict[str, list[float | None]] = {}
        for spec in sources:
            for entity in spec.entities:
                row = [self._wall(spec.key, topic, mono, wall) for topic in (entity.state_topic,
                                                                             entity.attributes_topic)]
                if row != [None, None]:
                    out[entity.unique_id] = row
        return out

    def _wall(self, source: str, topic: str, mono: float, wall: float) -> float | None:
        if topic in self.expired:
            return EXPIRED
        at = self.deadlines.get(source, topic)
        return None if at is None else round(wall + at - mono, 1)

    def restore(self, sources: Iterable[SourceSpec], saved: object) -> None:
        """Deadlines from the last run: a 3.1.1 broker still holds those values. Call before publishing any.

        Only configured entities are looked up, so the file cannot name a topic that is not ours;
        the worst a tampered one can do is clear a value of ours early, which the next fetch restores.
        """
        if not self.enabled or not isinstance(saved, Mapping):
            return
        mono, wall = time.monotonic(), time.time()
        for spec in sources:
            pending: list[tuple[float, str]] = []
            for entity in spec.entities:
                row: Any = saved.get(entity.unique_id)
                if not isinstance(row, list) or len(row) != 2:
                    continue
                for topic, raw in zip((entity.state_topic, entity.attributes_topic), row, strict=True):
                    left = restored_deadline(raw, wall, spec.expire_after)
                    if left == 0.0:
                        self.expired[topic] = topic_class(topic)
                    elif left is not None:
                        pending.append((mono + left, topic))
            for at, topic in sorted(pending):  # Deadlines wants them in order
                self.deadlines.refresh(spec.key, [topic], at)
        self._arm()
