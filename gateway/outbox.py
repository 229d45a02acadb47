"""The latest retained payload per topic: what goes to the broker again after every connect.

Nothing queues up while the broker is away; each topic keeps only its newest payload, with the
moment its data goes stale (its MQTT 5 message expiry is what is left until then at each send,
see gateway.expiry) and the connection ("epoch") it last went out on.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from enum import IntEnum


class TopicClass(IntEnum):
    """Classes of retained topics, in the order they are re-sent after a connect."""

    AVAILABILITY = 0
    INFO = 1
    DISCOVERY = 2
    STATE = 3
    ATTRIBUTES = 4
    DIAGNOSTIC = 5

    @property
    def label(self) -> str:
        return self.name.lower()


Kept = tuple[str, bytes, float | None]  # topic, payload, end of life (epoch seconds; None: never expires)


class Outbox:
    """Thread-safe: publishers write from the event loop, the MQTT thread reads on connect."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: list[dict[str, tuple[bytes, float | None, int]]] = [{} for _ in TopicClass]
        # Clears are kept too: a clear that went to a dying connection must not be lost, and
        # re-sending an empty retained message is harmless.
        self._clears: set[str] = set()

    def keep(self, topic: str, payload: bytes, cls: TopicClass, ends_at: float | None, epoch: int) -> None:
        """Remember ``payload`` (empty = a clear) as sent on ``epoch`` (0 = not sent yet)."""
        with self._lock:
            if payload:
                self._kept[cls][topic] = (payload, ends_at, epoch)
                self._clears.discard(topic)
            else:
                self._kept[cls].pop(topic, None)
                self._clears.add(topic)

    def keep_many(self, messages: Iterable[tuple[str, bytes]], cls: TopicClass,
                  ends: Mapping[str, float] | None, epoch: int) -> None:
        """``ends``: when each topic's data goes stale; a topic not in it never expires."""
        with self._lock:
            kept = self._kept[cls]
            for topic, payload in messages:
                kept[topic] = (payload, ends.get(topic) if ends else None, epoch)

    def forget(self, topics: Iterable[str], cls: TopicClass) -> None:
        """Stop re-sending these (their data went stale)."""
        with self._lock:
            kept = self._kept[cls]
            for topic in topics:
                kept.pop(topic, None)

    def due(self, classes: Iterable[TopicClass], epoch: int, *,
            unsent_only: bool = False) -> tuple[list[str], list[tuple[TopicClass, list[Kept]]]]:
        """The clears and kept messages to send on connection ``epoch``, marking them sent on it.

        ``unsent_only`` skips what already went out on this connection.
        """
        wanted = sorted(set(classes))
        with self._lock:
            clears = sorted(self._clears) if TopicClass.DISCOVERY in wanted else []
            out = []
            for cls in wanted:
                kept = self._kept[cls]
                items = [(t, p, x) for t, (p, x, e) in kept.items() if not (unsent_only and e == epoch)]
                for topic, payload, ends_at in items:
                    kept[topic] = (payload, ends_at, epoch)
                out.append((cls, items))
        return clears, out
