"""The last 24 hours for the status page's pictures: values per entity and fetches per source. Bounded memory.

Values are downsampled to one point per ``VALUE_SLOT`` (the last value in each slot), kept only
for numeric states and only for the first ``MAX_ENTITIES`` entities that publish one: at
100,000 entities a history for each would cost more than the entities themselves. Fetches are
kept per ``FETCH_SLOT``: the worst outcome in the slot (error > ok > not modified) and the data
age after it. Each ring is two or three fixed ``array``s, so memory is known up front:
``ENTITY_BYTES`` per entity with history and ``SOURCE_BYTES`` per source (measured with
tracemalloc in tests/gateway/test_history.py).
"""

from __future__ import annotations

import math
from array import array
from typing import Any

DAY = 86400
VALUE_SLOT = 900  # 15 minutes: 96 points a day
FETCH_SLOT = 300  # 5 minutes: 288 slots a day
MAX_ENTITIES = 2_000
OUTCOMES = ("not_modified", "ok", "error")  # in rising severity; the index is what a slot keeps
ENTITY_BYTES = 1_200
SOURCE_BYTES = 3_300


class Ring:
    """``DAY / slot`` slots; each holds a value and the slot number it belongs to (0: empty)."""

    __slots__ = ("extra", "slot", "slots", "values")

    def __init__(self, slot: int, extra: bool = False) -> None:
        self.slot = slot
        n = DAY // slot
        self.slots = array("I", bytes(4 * n))
        self.values = array("f", bytes(4 * n))
        self.extra = array("b", bytes(n)) if extra else None

    def put(self, when: float, value: float, code: int | None = None) -> None:
        number = int(when // self.slot)
        i = number % len(self.slots)
        if self.extra is not None and code is not None:
            if self.slots[i] == number and self.extra[i] > code:
                code = self.extra[i]  # keep the worst outcome of the slot
            self.extra[i] = code
        self.slots[i] = number
        self.values[i] = value

    def points(self, now: float) -> list[list[Any]]:
        """[[slot start, value(, code)], ...] of the last day, oldest first."""
        first = int(now // self.slot) - len(self.slots) + 1
        out: list[list[Any]] = []
        for i in sorted(range(len(self.slots)), key=lambda j: self.slots[j]):
            number = self.slots[i]
            if number < first:
                continue
            value = round(float(self.values[i]), 3)
            row: list[Any] = [number * self.slot, None if math.isnan(value) else value]
            if self.extra is not None:
                row.append(OUTCOMES[self.extra[i]])
            out.append(row)
        return out


class History:
    """What the status page draws; owned by the event loop (the HTTP thread asks through it)."""

    def __init__(self, max_entities: int = MAX_ENTITIES) -> None:
        self.max_entities = max_entities
        self.entities: dict[str, Ring] = {}
        self.fetches: dict[str, Ring] = {}

    def value(self, topic: str, payload: bytes, when: float) -> None:
        """A published state; numbers only (ON/OFF, text and timestamps have no line to draw)."""
        ring = self.entities.get(topic)
        if ring is None:
            if len(self.entities) >= self.max_entities:
                return
            number = _number(payload)
            if number is None:
                return
            ring = self.entities[topic] = Ring(VALUE_SLOT)
        else:
            number = _number(payload)
            if number is None:
                return
        ring.put(when, number)

    def fetch(self, source: str, outcome: str, data_age: float | None, when: float) -> None:
        if outcome not in OUTCOMES:
            return
        ring = self.fetches.get(source)
        if ring is None:
            ring = self.fetches[source] = Ring(FETCH_SLOT, extra=True)
        ring.put(when, math.nan if data_age is None else data_age, OUTCOMES.index(outcome))

    def document(self, now: float) -> dict[str, Any]:
        """For /api/history: ``entities`` by state topic ([t, value]) and ``sources`` ([t, data age, outcome])."""
        return {"value_slot_s": VALUE_SLOT, "fetch_slot_s": FETCH_SLOT,
                "entities": {t: ring.points(now) for t, ring in self.entities.items()},
                "sources": {k: ring.points(now) for k, ring in self.fetches.items()}}


def _number(payload: bytes) -> float | None:
    if len(payload) > 32:
        return None
    try:
        number = float(payload)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
