"""Change detection, heartbeat, kept values and plausibility, without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from gateway import catalog
from gateway.config import load
from gateway.records import Reading
from gateway.store import Store
from tests.helpers import ROOT

T0 = datetime(2026, 6, 21, 14, 30, tzinfo=UTC)


@pytest.fixture
def source() -> catalog.SourceSpec:
    return catalog.build(load(ROOT / "topics.yaml")).sources["brightsky"]


def states(out) -> dict[str, str]:
    return {t: p.decode() for t, p in out.states}


def test_change_detection_and_heartbeat(source):
    store = Store(heartbeat=900)
    first = store.apply(source, [Reading("temperature", 21.0, T0)], T0, "u", now=0)
    assert states(first) == {"soest/brightsky/temperature": "21"}
    same = store.apply(source, [Reading("temperature", 21.0, T0)], T0, "u", now=60)
    assert states(same) == {}
    assert same.attributes == []  # only fetched_at would differ
    changed = store.apply(source, [Reading("temperature", 21.5, T0 + timedelta(minutes=10))], T0, "u", now=120)
    assert states(changed) == {"soest/brightsky/temperature": "21.5"}
    later = store.apply(source, [Reading("temperature", 21.5, T0)], T0, "u", now=120 + 900)
    assert states(later) == {"soest/brightsky/temperature": "21.5"}


def test_heartbeat_skips_stale_data(source):
    store = Store(heartbeat=60)
    store.apply(source, [Reading("temperature", 21.0, T0)], T0, "u", now=0)
    assert store.due_for_heartbeat([source], now=30, wall=T0) == []
    assert store.due_for_heartbeat([source], now=61, wall=T0 + timedelta(minutes=5)) == [
        ("soest/brightsky/temperature", b"21")]
    # max_age is 2 h: older data is never re-sent as if it were fresh.
    assert store.due_for_heartbeat([source], now=200, wall=T0 + timedelta(hours=3)) == []


def test_null_keeps_last_value_and_notes_it(source):
    store = Store(heartbeat=900)
    store.apply(source, [Reading("irradiance", 768.0, T0)], T0, "u", now=0)
    t1 = T0 + timedelta(minutes=10)
    out = store.apply(source, [Reading("irradiance", None, t1)], t1, "u", now=600)
    assert out.states == []
    (topic, payload), = out.attributes
    attrs = json.loads(payload)
    assert topic == "soest/brightsky/irradiance/attributes"
    assert attrs["value_missing_since"] == t1.isoformat()
    assert attrs["observed_at"] == T0.isoformat()  # of the value still shown
    assert attrs["unit"] == "W/m²"


def test_null_first_publishes_nothing_as_state(source):
    store = Store(heartbeat=900)
    out = store.apply(source, [Reading("irradiance", None, T0)], T0, "u", now=0)
    assert out.states == []
    assert all(b"None" not in p for _, p in out.attributes)


def test_implausible_value_is_rejected_not_published(source):
    store = Store(heartbeat=900)
    store.apply(source, [Reading("temperature", 21.0, T0)], T0, "u", now=0)
    out = store.apply(source, [Reading("temperature", 85.0, T0)], T0, "u", now=10)
    assert out.states == []
    assert [(e.key, r) for e, r in out.rejected] == [("temperature", "above_range")]
    attrs = json.loads(out.attributes[0][1])
    assert attrs["rejected"]["value"] == "85"
    assert attrs["rejected"]["reason"] == "above_range"


def test_attributes_carry_provenance(source):
    store = Store(heartbeat=900)
    out = store.apply(source, [Reading("temperature", 21.0, T0)], T0 + timedelta(minutes=3), "https://x/y?z=1", 0)
    attrs = json.loads(out.attributes[0][1])
    assert attrs["observed_at"] == T0.isoformat()
    assert attrs["fetched_at"] == (T0 + timedelta(minutes=3)).isoformat()
    assert attrs["source_url"] == "https://x/y?z=1"
    assert "Deutscher Wetterdienst" in attrs["attribution"]
    assert attrs["license"]
    assert attrs["unit"] == "°C"


def test_oversized_attributes_are_shrunk(source):
    store = Store(heartbeat=900)
    huge = {"warnings": ["x" * 400] * 100, "small": 1}
    out = store.apply(source, [Reading("temperature", 21.0, T0, attributes=huge)], T0, "u", now=0)
    (_, payload), = out.attributes
    assert len(payload) <= 12_000
    attrs = json.loads(payload)
    assert attrs["attributes_dropped"] == ["warnings"]
    assert attrs["small"] == 1
    assert attrs["fetched_at"]


def test_unchanged_old_data_is_not_resent_as_a_heartbeat(source):
    """A re-evaluated body keeps its old observed_at: the value must not be re-sent as current."""
    store = Store(heartbeat=60)
    store.apply(source, [Reading("temperature", 21.0, T0)], T0, "u", now=0)
    later = T0 + timedelta(hours=3)  # max_age is 2 h
    out = store.apply(source, [Reading("temperature", 21.0, T0)], later, "u", now=1000)
    assert out.states == []
    fresh = store.apply(source, [Reading("temperature", 21.0, later)], later, "u", now=2000)
    assert states(fresh) == {"soest/brightsky/temperature": "21"}


def test_restored_stale_values_are_sent_again_once_fresh(source):
    store = Store(heartbeat=900)
    now_wall = T0 + timedelta(hours=5)
    saved = {"soest_brightsky_temperature": ["21", 21.0, T0.isoformat(), None]}
    assert store.restore([source], saved, now=100, wall=now_wall) == []  # too old to put back
    # The same value, freshly observed, goes out at once: the broker no longer holds it.
    out = store.apply(source, [Reading("temperature", 21.0, now_wall)], now_wall, "u", now=101)
    assert states(out) == {"soest/brightsky/temperature": "21"}


def test_empty_text_is_no_value(source):
    from gateway.payloads import encode_value

    assert encode_value("   ") is None
    assert encode_value(datetime(2026, 1, 1)) is None  # naive timestamps are not published
