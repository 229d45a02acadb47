"""Latest good value per entity: change detection, heartbeat, staleness and attributes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gateway.catalog import EntitySpec, SourceSpec
from gateway.checks import check, check_time
from gateway.payloads import OFF, ON, encode_json, encode_value, iso
from gateway.records import Reading


def fetched_suffix(fetched_at: datetime) -> bytes:
    return b',"fetched_at":"' + fetched_at.isoformat(timespec="seconds").encode() + b'"}'


# Home Assistant's recorder drops attribute sets above 16 KiB; stay well below.
MAX_ATTRIBUTES_BYTES = 12_000


def _shrink(attrs: dict[str, Any]) -> bytes:
    """Drop the largest extra attributes until the JSON fits, naming what was dropped."""
    keep = dict(attrs)
    dropped: list[str] = []
    protected = {"observed_at", "station", "unit", "source_url", "license", "attribution"}
    candidates = sorted((k for k in keep if k not in protected), key=lambda k: -len(encode_json({k: keep[k]})))
    for key in candidates:
        del keep[key]
        dropped.append(key)
        encoded = encode_json({**keep, "attributes_dropped": dropped})
        if len(encoded) <= MAX_ATTRIBUTES_BYTES:
            return encoded
    return encode_json({**keep, "attributes_dropped": dropped})


@dataclass(slots=True)
class EntityState:
    """What was last published for one entity."""

    text: str | None = None
    number: float | None = None
    observed_at: datetime | None = None
    published: float = float("-inf")
    attrs_digest: int | None = None
    missing_since: datetime | None = None


@dataclass(slots=True)
class Outgoing:
    """Messages one step produced, split by topic class."""

    states: list[tuple[str, bytes]] = field(default_factory=list)
    attributes: list[tuple[str, bytes]] = field(default_factory=list)
    rejected: list[tuple[EntitySpec, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.states) + len(self.attributes)


class Store:
    """Decides what to publish; it never talks to the broker itself. Keyed by state topic."""

    def __init__(self, heartbeat: float) -> None:
        self.heartbeat = heartbeat
        self.entities: dict[str, EntityState] = {}

    def state(self, entity: EntitySpec) -> EntityState:
        st = self.entities.get(entity.state_topic)
        if st is None:
            st = self.entities[entity.state_topic] = EntityState()
        return st

    def put(self, source: SourceSpec, entity: EntitySpec, reading: Reading, rejected: str | None,
            fetched_at: datetime, source_url: str, mono: float, out: Outgoing) -> None:
        """Store one reading (already judged: ``rejected`` is the reason, or None) and add what must go out."""
        st = self.state(entity)
        notes: dict[str, Any] = {}
        text = encode_value(reading.value)
        if text is None:
            st.missing_since = st.missing_since or fetched_at
        elif rejected is not None:
            out.rejected.append((entity, rejected))
            notes["rejected"] = {"value": text, "reason": rejected, "at": iso(fetched_at)}
            text = None
        else:
            st.missing_since = None
        if st.missing_since is not None:
            notes["value_missing_since"] = iso(st.missing_since)
            notes["note"] = "upstream sent no value; the last good value is kept"
        if text is not None:
            st.observed_at = reading.observed_at
            value = reading.value
            st.number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
            fresh = (fetched_at - reading.observed_at).total_seconds() <= source.max_age
            # An unchanged value is re-sent for the heartbeat only while it is fresh: old data
            # must never look current (a re-evaluated body keeps its old observed_at).
            if text != st.text or (fresh and mono - st.published >= self.heartbeat):
                st.text = text
                st.published = mono
                out.states.append((entity.state_topic, text.encode()))
        attrs: dict[str, Any] = {
            "observed_at": iso(st.observed_at),
            "station": reading.station.as_dict() if reading.station else None,
            "unit": entity.measurement.unit,
            "source_url": source_url,
            "license": source.license,
            "attribution": source.attribution,
            **reading.attributes,
            **notes,
        }
        encoded = encode_json(attrs)
        if len(encoded) > MAX_ATTRIBUTES_BYTES:
            encoded = _shrink(attrs)
        digest = hash(encoded)
        if digest != st.attrs_digest or (out.states and out.states[-1][0] == entity.state_topic):
            st.attrs_digest = digest
            # fetched_at changes on every fetch, so it stays out of the digest; spliced in, not re-encoded.
            out.attributes.append((entity.attributes_topic, encoded[:-1] + fetched_suffix(fetched_at)))

    def due_for_heartbeat(self, sources: Iterable[SourceSpec], mono: float,
                          now: datetime) -> list[tuple[str, bytes]]:
        """States unchanged for a heartbeat interval whose data is still fresh: send them again."""
        out: list[tuple[str, bytes]] = []
        for source in sources:
            max_age = timedelta(seconds=source.max_age)
            for entity in source.entities:
                st = self.entities.get(entity.state_topic)
                if st is None or st.text is None or st.observed_at is None:
                    continue
                if mono - st.published >= self.heartbeat and now - st.observed_at <= max_age:
                    st.published = mono
                    out.append((entity.state_topic, st.text.encode()))
        return out

    def stale(self, source: SourceSpec, now: datetime) -> list[EntitySpec]:
        """Entities whose shown value is older than the source's max_age."""
        max_age = timedelta(seconds=source.max_age)
        return [e for e in source.entities
                if (st := self.entities.get(e.state_topic)) is not None and st.observed_at is not None
                and now - st.observed_at > max_age]

    def dump(self, sources: Iterable[SourceSpec]) -> dict[str, list[Any]]:
        """The shown values by unique_id (stable across topic roots), for the data directory."""
        out: dict[str, list[Any]] = {}
        for source in sources:
            for entity in source.entities:
                st = self.entities.get(entity.state_topic)
                if st is not None and st.text is not None:
                    out[entity.unique_id] = [st.text, st.number, st.observed_at.isoformat() if st.observed_at else None,
                                             st.missing_since.isoformat() if st.missing_since else None]
        return out

    def restore(self, sources: Iterable[SourceSpec], saved: dict[str, Any], mono: float,
                now: datetime) -> list[tuple[SourceSpec, list[tuple[str, bytes]]]]:
        """Load saved values of configured entities; returns the fresh ones to put back on the broker.

        The data directory is trusted no more than upstream: a saved value must pass the checks a
        fresh one passes (text limits, range, options, a timestamp not in the future), or it is dropped.
        """
        out: list[tuple[SourceSpec, list[tuple[str, bytes]]]] = []
        for source in sources:
            max_age = timedelta(seconds=source.max_age)
            fresh: list[tuple[str, bytes]] = []
            for entity in source.entities:
                row = restored_row(saved.get(entity.unique_id), entity, now)
                if row is None:
                    continue
                st = self.state(entity)
                st.text, st.number, st.observed_at, st.missing_since = row
                if now - row[2] <= max_age:
                    st.published = mono
                    fresh.append((entity.state_topic, row[0].encode()))
            if fresh:
                out.append((source, fresh))
        return out

    def mark_unsent(self, entities: Iterable[EntitySpec]) -> None:
        """Their values left the broker (expired): the next good reading goes out even if unchanged."""
        for entity in entities:
            st = self.entities.get(entity.state_topic)
            if st is not None:
                st.published = float("-inf")

    def lost(self, state_topic: str) -> None:
        """The broker no longer holds this state (expired): the next fresh reading goes out even if unchanged.

        Its attributes follow the state then; they need no flag of their own, because a value can
        only expire once it is older than max_age, and its next fresh reading changes observed_at.
        """
        st = self.entities.get(state_topic)
        if st is not None:
            st.published = float("-inf")

    def observed(self, state_topic: str) -> float | None:
        """When the shown value of this entity was observed (epoch seconds), if it has one."""
        st = self.entities.get(state_topic)
        return st.observed_at.timestamp() if st is not None and st.observed_at is not None else None

    def newest_observed(self, source: SourceSpec) -> datetime | None:
        stamps = [st.observed_at for e in source.entities
                  if (st := self.entities.get(e.state_topic)) is not None and st.observed_at is not None]
        return max(stamps) if stamps else None


Restored = tuple[str, float | None, datetime, datetime | None]


def _saved_time(raw: object, now: datetime) -> datetime | None:
    """A saved timestamp, if it is one the gateway would have accepted (aware, not in the future)."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if check_time(moment, now) is None else None


def restored_row(row: object, entity: EntitySpec, now: datetime) -> Restored | None:
    """One saved ``[text, number, observed_at, missing_since]`` row, checked like a fresh reading."""
    if not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str):
        return None
    text, raw_number = row[0], row[1]
    # encode_value is what made the text: the same limits (length, not blank) hold on the way back.
    # A blank text must never come back: an empty retained publish deletes the topic.
    if encode_value(text) != text:
        return None
    number: float | None = None
    if raw_number is not None:
        if isinstance(raw_number, bool) or not isinstance(raw_number, int | float) \
                or encode_value(float(raw_number)) != text:
            return None
        number = float(raw_number)
    if entity.component == "binary_sensor" and text not in (ON, OFF):
        return None
    if check(number if number is not None else text, entity.measurement) is not None:
        return None
    observed = _saved_time(row[2], now)
    if observed is None:
        return None
    return text, number, observed, _saved_time(row[3], now)
