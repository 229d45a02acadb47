"""When a state or attributes value leaves the broker: at the end of its data's life.

A value's life ends when its observation turns stale, ``observed_at + max_age`` (``ends_at``).
Every publish of it (the first, each heartbeat, a restored value, a re-send after a reconnect)
carries the MQTT 5 message expiry ``remaining(ends_at, now)``: the seconds left, rounded up, at
least 1; a value that is stale already is not published. So the broker drops it within a second
of going stale, however it got there, and a heartbeat never makes old data look newer.

MQTT 3.1.1 has no message expiry and keeps retained values forever. This module remembers that
same moment (the publish + its expiry, as an MQTT 5 broker counts it) for every state and
attributes topic and, while the connection cannot carry message expiry, publishes an empty
retained message (a clear) then, with the same QoS. A cleared topic is cleared again after every
reconnect: the node may be another one of a cluster, or a broker restored from a snapshot older
than the clear. Under MQTT 5 it sends nothing; the broker does the same by itself.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gateway import topics
from gateway.checks import MAX_CLOCK_SKEW
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

Message = tuple[str, bytes]


def remaining(ends_at: float, now: float) -> int | None:
    """The MQTT 5 message expiry of a value whose life ends at ``ends_at`` (epoch seconds), sent at ``now``.

    The seconds left, rounded up, at least 1 (0 would mean "no expiry" to paho); None once the
    value is stale (``now`` past ``ends_at``), which must not be published at all. The one place
    of the rule that README and docs/topics.md state.
    """
    left = ends_at - now
    if left < 0 or not math.isfinite(left):
        return None
    return max(1, math.ceil(left))


class Deadlines:
    """When each topic's retained value expires, per source. No clock, no broker.

    Topics of one source expire at different moments (each entity has its own ``observed_at``),
    so a heap finds the earliest; a refresh leaves the old entry behind as garbage, which is
    skipped when it comes up and swept out once it outnumbers the live ones, so the heap does not
    grow with every heartbeat.
    """

    def __init__(self) -> None:
        self._at: dict[str, tuple[str, float]] = {}  # topic -> (source, deadline)
        self._heap: list[tuple[float, str]] = []

    def refresh(self, source: str, topic_names: Iterable[str], deadline: float) -> None:
        for topic in topic_names:
            self._at[topic] = (source, deadline)
            heapq.heappush(self._heap, (deadline, topic))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [(at, topic) for topic, (_, at) in self._at.items()]
            heapq.heapify(self._heap)

    def get(self, source: str, topic: str) -> float | None:
        entry = self._at.get(topic)
        return entry[1] if entry is not None and entry[0] == source else None

    def _drop_garbage(self) -> None:
        heap = self._heap
        while heap and self._at.get(heap[0][1], (None, None))[1] != heap[0][0]:
            heapq.heappop(heap)

    def earliest(self) -> float | None:
        self._drop_garbage()
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[tuple[str, str]]:
        """Remove and return (source, topic) of every deadline at or before ``now``."""
        out: list[tuple[str, str]] = []
        while (at := self.earliest()) is not None and at <= now:
            _, topic = heapq.heappop(self._heap)
            source, _ = self._at.pop(topic)
            out.append((source, topic))
        return out

    def __len__(self) -> int:
        return len(self._at)


def topic_class(topic: str) -> TopicClass:
    # An entity key can never be "attributes" (topics.RESERVED_ENTITY_KEYS), so the suffix decides.
    return TopicClass.ATTRIBUTES if topic.endswith("/" + topics.ATTRIBUTES) else TopicClass.STATE


def state_topic_of(topic: str) -> str:
    """The state topic of a state or attributes topic: both live as long as the entity's value."""
    return topic.removesuffix("/" + topics.ATTRIBUTES)


def longest_life(spec: SourceSpec) -> float:
    """The most a value can have left: max_age, from an observation up to MAX_CLOCK_SKEW ahead, rounded up."""
    return spec.max_age + MAX_CLOCK_SKEW.total_seconds() + 1


def restored_deadline(raw: object, wall: float, lifetime: float) -> float | None:
    """Seconds from now until a saved deadline (0 = expired already); None if ``raw`` is none.

    A deadline further away than the longest life a value can have cannot come from a real
    publish, so it is cut to that: a tampered file cannot keep a value alive for longer.
    """
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return min(max(raw - wall, 0.0), lifetime)


class Expiry:
    """Decides each value's expiry, and clears retained values when MQTT 5 would have dropped them.

    Event loop only.
    """

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

    def ends(self, spec: SourceSpec, messages: Iterable[Message],
             wall: float) -> tuple[list[Message], dict[str, float] | None]:
        """The messages still fresh at ``wall`` and when each one's life ends (None: nothing expires).

        A state or attributes message lives as long as its entity's value: ``observed_at +
        max_age``. Attributes of an entity that never had a value (notes only) are as new as the
        fetch that wrote them. A stale state is not published, and the store hears that the broker
        does not hold it, so the next fresh reading goes out even if its text is the same.
        """
        batch = list(messages)
        if not self.enabled:
            return batch, None
        fresh: list[Message] = []
        ends: dict[str, float] = {}
        for topic, payload in batch:
            observed = self.store.observed(state_topic_of(topic))
            end = (observed if observed is not None else wall) + spec.max_age
            if remaining(end, wall) is None:
                if topic_class(topic) is TopicClass.STATE:
                    self.store.lost(topic)
                continue
            fresh.append((topic, payload))
            ends[topic] = end
        return fresh, ends

    def sent(self, spec: SourceSpec, ends: Mapping[str, float] | None, wall: float) -> None:
        """The gateway published these states or attributes of ``spec`` at ``wall``, living until ``ends``.

        The deadline is the publish plus its message expiry, where an MQTT 5 broker drops it.
        """
        if not self.enabled or not ends:
            return
        mono = time.monotonic()
        for topic, end in ends.items():
            left = remaining(end, wall)
            if left is not None:
                self.deadlines.refresh(spec.key, [topic], mono + left)
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
            for entity in spec.entities:
                row: Any = saved.get(entity.unique_id)
                if not isinstance(row, list) or len(row) != 2:
                    continue
                for topic, raw in zip((entity.state_topic, entity.attributes_topic), row, strict=True):
                    left = restored_deadline(raw, wall, longest_life(spec))
                    if left == 0.0:
                        self.expired[topic] = topic_class(topic)
                    elif left is not None:
                        self.deadlines.refresh(spec.key, [topic], mono + left)
        self._arm()
