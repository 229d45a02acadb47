"""Change detection, heartbeat, kept values and plausibility, without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import load
from gateway.records import Reading
from gateway.runs import evaluate
from gateway.store import Store
from tests.helpers import ROOT

T0 = datetime(2026, 6, 21, 14, 30, tzinfo=UTC)


@pytest.fixture
def source() -> catalog.SourceSpec:
    return catalog.build(load(ROOT / "topics.yaml"), ADAPTERS).sources["brightsky"]


def states(out) -> dict[str, str]:
    return {t: p.decode() for t, p in out.states}


def test_change_detection_and_heartbeat(source):
    store = Store(heartbeat=900)
    first = evaluate(source, store, [Reading("temperature", 21.0, T0)], T0, "u", mono=0)
    assert states(first) == {"soest/brightsky/temperature": "21"}
    same = evaluate(source, store, [Reading("temperature", 21.0, T0)], T0, "u", mono=60)
    assert states(same) == {}
    assert same.attributes == []  # only fetched_at would differ
    t1 = T0 + timedelta(minutes=10)  # fetched when observed: a reading from the future would be rejected
    changed = evaluate(source, store, [Reading("temperature", 21.5, t1)], t1, "u", mono=120)
    assert states(changed) == {"soest/brightsky/temperature": "21.5"}
    later = evaluate(source, store, [Reading("temperature", 21.5, T0)], T0, "u", mono=120 + 900)
    assert states(later) == {"soest/brightsky/temperature": "21.5"}


def test_heartbeat_skips_stale_data(source):
    store = Store(heartbeat=60)
    evaluate(source, store, [Reading("temperature", 21.0, T0)], T0, "u", mono=0)
    assert store.due_for_heartbeat([source], mono=30, now=T0) == []
    assert store.due_for_heartbeat([source], mono=61, now=T0 + timedelta(minutes=5)) == [
        ("soest/brightsky/temperature", b"21")]
    # max_age is 2 h: older data is never re-sent as if it were fresh.
    assert store.due_for_heartbeat([source], mono=200, now=T0 + timedelta(hours=3)) == []


def test_null_keeps_last_value_and_notes_it(source):
    store = Store(heartbeat=900)
    evaluate(source, store, [Reading("irradiance", 768.0, T0)], T0, "u", mono=0)
    t1 = T0 + timedelta(minutes=10)
    out = evaluate(source, store, [Reading("irradiance", None, t1)], t1, "u", mono=600)
    assert out.states == []
    (topic, payload), = out.attributes
    attrs = json.loads(payload)
    assert topic == "soest/brightsky/irradiance/attributes"
    assert attrs["value_missing_since"] == t1.isoformat()
    assert attrs["observed_at"] == T0.isoformat()  # of the value still shown
    assert attrs["unit"] == "W/m²"


def test_null_first_publishes_nothing_as_state(source):
    store = Store(heartbeat=900)
    out = evaluate(source, store, [Reading("irradiance", None, T0)], T0, "u", mono=0)
    assert out.states == []
    assert all(b"None" not in p for _, p in out.attributes)


def test_implausible_value_is_rejected_not_published(source):
    store = Store(heartbeat=900)
    evaluate(source, store, [Reading("temperature", 21.0, T0)], T0, "u", mono=0)
    out = evaluate(source, store, [Reading("temperature", 85.0, T0)], T0, "u", mono=10)
    assert out.states == []
    assert [(e.key, r) for e, r in out.rejected] == [("temperature", "above_range")]
    attrs = json.loads(out.attributes[0][1])
    assert attrs["rejected"]["value"] == "85"
    assert attrs["rejected"]["reason"] == "above_range"


def test_attributes_carry_provenance(source):
    store = Store(heartbeat=900)
    out = evaluate(source, store, [Reading("temperature", 21.0, T0)], T0 + timedelta(minutes=3), "https://x/y?z=1", 0)
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
    out = evaluate(source, store, [Reading("temperature", 21.0, T0, attributes=huge)], T0, "u", mono=0)
    (_, payload), = out.attributes
    assert len(payload) <= 12_000
    attrs = json.loads(payload)
    assert attrs["attributes_dropped"] == ["warnings"]
    assert attrs["small"] == 1
    assert attrs["fetched_at"]


def test_unchanged_old_data_is_not_resent_as_a_heartbeat(source):
    """A re-evaluated body keeps its old observed_at: the value must not be re-sent as current."""
    store = Store(heartbeat=60)
    evaluate(source, store, [Reading("temperature", 21.0, T0)], T0, "u", mono=0)
    later = T0 + timedelta(hours=3)  # max_age is 2 h
    out = evaluate(source, store, [Reading("temperature", 21.0, T0)], later, "u", mono=1000)
    assert out.states == []
    fresh = evaluate(source, store, [Reading("temperature", 21.0, later)], later, "u", mono=2000)
    assert states(fresh) == {"soest/brightsky/temperature": "21"}


def test_restored_stale_values_are_sent_again_once_fresh(source):
    store = Store(heartbeat=900)
    now_wall = T0 + timedelta(hours=5)
    saved = {"soest_brightsky_temperature": ["21", 21.0, T0.isoformat(), None]}
    assert store.restore([source], saved, mono=100, now=now_wall) == []  # too old to put back
    # The same value, freshly observed, goes out at once: the broker no longer holds it.
    out = evaluate(source, store, [Reading("temperature", 21.0, now_wall)], now_wall, "u", mono=101)
    assert states(out) == {"soest/brightsky/temperature": "21"}


def test_empty_text_is_no_value(source):
    from gateway.payloads import encode_value

    assert encode_value("   ") is None
    assert encode_value(datetime(2026, 1, 1)) is None  # naive timestamps are not published


# --------------------------------------------------------------------------- time is data


def test_reading_from_the_future_is_rejected(source):
    """One reading dated 2126 must not become the entity's observed_at (staleness would trust it)."""
    store = Store(heartbeat=900)
    evaluate(source, store, [Reading("temperature", 21.0, T0)], T0, "u", mono=0)
    future = datetime(2126, 1, 1, tzinfo=UTC)
    out = evaluate(source, store, [Reading("temperature", 22.0, future)], T0, "u", mono=10)
    assert out.states == []
    assert [(e.key, r) for e, r in out.rejected] == [("temperature", "future")]
    attrs = json.loads(out.attributes[0][1])
    assert attrs["rejected"] == {"value": "22", "reason": "future", "at": T0.isoformat()}
    assert attrs["observed_at"] == T0.isoformat()
    assert store.newest_observed(source) == T0
    # Four hours on (max_age is 2 h) the value is stale, as if the 2126 reading never came.
    assert [e.key for e in store.stale(source, T0 + timedelta(hours=4))] == ["temperature"]


def test_small_clock_skew_is_accepted(source):
    from gateway.checks import MAX_CLOCK_SKEW

    store = Store(heartbeat=900)
    ahead = T0 + MAX_CLOCK_SKEW - timedelta(seconds=1)
    out = evaluate(source, store, [Reading("temperature", 21.0, ahead)], T0, "u", mono=0)
    assert states(out) == {"soest/brightsky/temperature": "21"}
    assert out.rejected == []


def test_naive_timestamp_is_rejected_not_a_crash(source):
    store = Store(heartbeat=900)
    out = evaluate(source, store, [Reading("temperature", 21.0, T0.replace(tzinfo=None))], T0, "u", mono=0)
    assert out.states == []
    assert [r for _, r in out.rejected] == ["no_timezone"]


# --------------------------------------------------------------------------- the data directory


def test_restored_future_observed_at_is_dropped(source):
    store = Store(heartbeat=900)
    saved = {"soest_brightsky_temperature": ["21", 21.0, "2126-01-01T00:00:00+00:00", None]}
    assert store.restore([source], saved, mono=0, now=T0) == []
    assert store.newest_observed(source) is None
    assert "soest/brightsky/temperature" not in store.entities


@pytest.mark.parametrize("row", [
    ["", None, T0.isoformat(), None],                 # an empty retained publish deletes the topic
    ["   ", None, T0.isoformat(), None],
    ["x" * 10_000, None, T0.isoformat(), None],        # longer than any state we publish
    ["85", 85.0, T0.isoformat(), None],                # above the plausible range
    ["21", 35.0, T0.isoformat(), None],                # text and number disagree
    ["21", True, T0.isoformat(), None],
], ids=["empty", "blank", "long", "range", "mismatch", "bool"])
def test_restored_values_pass_the_fresh_checks(source, row):
    store = Store(heartbeat=900)
    assert store.restore([source], {"soest_brightsky_temperature": row}, mono=0, now=T0) == []
    assert "soest/brightsky/temperature" not in store.entities


def test_restored_option_and_binary_values_are_checked():
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    with_options = next(e for e in cat.entities() if e.measurement.options)
    binary = next(e for e in cat.entities() if e.component == "binary_sensor")
    sources = [cat.sources[with_options.source], cat.sources[binary.source]]
    store = Store(heartbeat=900)
    saved = {with_options.unique_id: ["not-an-option", None, T0.isoformat(), None],
             binary.unique_id: ["MAYBE", None, T0.isoformat(), None]}
    assert store.restore(sources, saved, mono=0, now=T0) == []
    good = {with_options.unique_id: [with_options.measurement.options[0], None, T0.isoformat(), None],
            binary.unique_id: ["ON", None, T0.isoformat(), None]}
    restored = {t for _, msgs in store.restore(sources, good, mono=0, now=T0) for t, _ in msgs}
    assert restored == {with_options.state_topic, binary.state_topic}


def test_restored_good_value_comes_back(source):
    store = Store(heartbeat=900)
    saved = {"soest_brightsky_temperature": ["21.5", 21.5, T0.isoformat(), "2126-01-01T00:00:00+00:00"]}
    assert store.restore([source], saved, mono=0, now=T0 + timedelta(minutes=5)) == [
        (source, [("soest/brightsky/temperature", b"21.5")])]
    st = store.entities["soest/brightsky/temperature"]
    assert st.missing_since is None  # a future "missing since" is no more trusted than a future value
