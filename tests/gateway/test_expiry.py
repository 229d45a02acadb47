"""The rule for each value's message expiry, and the deadlines that stand in for it, without a broker."""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import Broker, load
from gateway.expiry import EXPIRED, Deadlines, Expiry, longest_life, remaining, restored_deadline, topic_class
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from gateway.store import Store
from tests.helpers import ROOT, free_port

T = "soest/brightsky/temperature"
A = f"{T}/attributes"


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)


def expiry_for(enabled: bool = True) -> Expiry:
    # A link that is never started: nothing here connects, so nothing is sent.
    metrics = Metrics()
    link = MqttLink(Broker(port=free_port()), client_id="t-expiry", will_topic=None, metrics=metrics)
    return Expiry(link, Store(heartbeat=900), metrics, enabled)


@pytest.mark.parametrize(("left", "expiry"), [
    (7200.0, 7200), (7199.2, 7200), (0.4, 1), (0.0, 1),  # rounded up, at least 1 s
    (-0.01, None), (-3600.0, None),  # stale: not published
])
def test_the_expiry_is_what_is_left_of_the_life(left: float, expiry: int | None):
    assert remaining(1_000_000.0 + left, 1_000_000.0) == expiry


def test_deadlines_come_out_in_order_and_a_refresh_moves_them():
    d = Deadlines()
    d.refresh("a", ["a/1", "a/2"], 10.0)
    d.refresh("b", ["b/1"], 12.0)
    d.refresh("a", ["a/3"], 15.0)
    d.refresh("a", ["a/1"], 20.0)  # a/1 now expires last
    d.refresh("a", ["a/4"], 11.0)  # earlier than the source's previous ones: each entity has its own
    assert d.earliest() == 10.0
    assert d.due(9.9) == []
    assert d.due(10.0) == [("a", "a/2")]
    assert d.due(11.0) == [("a", "a/4")]
    assert d.earliest() == 12.0
    assert sorted(d.due(16.0)) == [("a", "a/3"), ("b", "b/1")]
    assert (d.get("a", "a/1"), d.get("a", "a/2"), d.get("c", "x")) == (20.0, None, None)
    assert len(d) == 1
    assert d.due(math.inf) == [("a", "a/1")]
    assert d.earliest() is None


def test_refreshes_do_not_grow_the_heap():
    d = Deadlines()
    for i in range(10_000):  # heartbeats of three topics
        d.refresh("a", ["a/1", "a/2", "a/3"], float(i))
    assert len(d) == 3
    assert len(d._heap) <= 2 * 3 + 64 + 3
    assert d.due(9_999.0) == [("a", "a/1"), ("a", "a/2"), ("a", "a/3")]


@pytest.mark.parametrize(("raw", "left"), [
    (1000.0, 0.0),      # in the past: expired already
    (1030, 30.0),
    (1000.0 + 1e9, 60.0),  # further than one lifetime: cut to it
    (True, None), (None, None), ("1030", None), (math.nan, None), (math.inf, None), ([1030], None),
])
def test_restored_deadline(raw: object, left: float | None):
    assert restored_deadline(raw, wall=1000.0, lifetime=60.0) == left


def test_topic_class():
    assert (topic_class(T), topic_class(A)) == (TopicClass.STATE, TopicClass.ATTRIBUTES)


def test_dump_and_restore_keep_the_deadlines_of_configured_entities(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    first = expiry_for()
    wall = time.time()
    first.sent(spec, {T: wall + 600.0}, wall)
    first.sent(spec, {A: wall + 600.0}, wall)
    first.expired["soest/brightsky/humidity"] = TopicClass.STATE
    saved = first.dump(cat.sources.values())
    assert saved["soest_brightsky_temperature"][0] == pytest.approx(wall + 600, abs=1)
    assert saved["soest_brightsky_humidity"] == [EXPIRED, None]
    saved |= {"soest_brightsky_pressure": ["soon", 1e300], "soest_gone_entity": [1.0, 1.0],
              "soest_brightsky_dew_point": [wall + 1e6, True], "soest_brightsky_visibility": [1.0]}
    second = expiry_for()
    second.restore(cat.sources.values(), saved)
    mono = time.monotonic()
    assert second.deadlines.get("brightsky", T) == pytest.approx(mono + 600, abs=1)
    assert second.deadlines.get("brightsky", A) == pytest.approx(mono + 600, abs=1)
    # A tampered deadline is cut to the longest life a value can have (max_age, observed a little
    # ahead of our clock); wrong types and foreign entities are ignored.
    assert longest_life(spec) == spec.max_age + 301
    assert second.deadlines.get("brightsky", "soest/brightsky/dew_point") == pytest.approx(
        mono + longest_life(spec), abs=1)
    assert second.deadlines.get("brightsky", "soest/brightsky/pressure/attributes") == pytest.approx(
        mono + longest_life(spec), abs=1)
    assert second.deadlines.get("brightsky", "soest/brightsky/pressure") is None
    assert second.expired == {"soest/brightsky/humidity": TopicClass.STATE}  # a row must be a pair
    assert len(second.deadlines) == 4


def test_a_new_publish_takes_a_topic_off_the_expired_list(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    expiry = expiry_for()
    expiry.expired[T] = TopicClass.STATE
    expiry.sent(spec, {T: time.time() + 60}, time.time())
    assert expiry.expired == {}


def test_nothing_is_tracked_without_message_expiry(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    expiry = expiry_for(enabled=False)
    expiry.store.state(spec.entities[0]).observed_at = datetime.now(UTC) - timedelta(days=1)
    messages = [(T, b"21"), (A, b"{}")]
    assert expiry.ends(spec, messages, time.time()) == (messages, None)  # stale, and sent without expiry
    expiry.sent(spec, {T: time.time() + 60}, time.time())
    expiry.restore(cat.sources.values(), {"soest_brightsky_humidity": [EXPIRED, EXPIRED]})
    assert (len(expiry.deadlines), expiry.expired) == (0, {})


def test_each_value_lives_until_its_observation_is_max_age_old(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    expiry = expiry_for()
    wall = time.time()
    now = datetime.fromtimestamp(wall, UTC)
    temperature, humidity, pressure = spec.entities[:3]
    for entity, age in ((temperature, 60.0), (humidity, spec.max_age + 1)):
        st = expiry.store.state(entity)
        st.text, st.published, st.observed_at = "1", 5.0, now - timedelta(seconds=age)
    messages = [(temperature.state_topic, b"1"), (temperature.attributes_topic, b"{}"),
                (humidity.state_topic, b"1"), (humidity.attributes_topic, b"{}"),
                (pressure.attributes_topic, b"{}")]  # notes only: no value yet
    fresh, ends = expiry.ends(spec, messages, wall)
    assert fresh == [messages[0], messages[1], messages[4]]  # the stale humidity is not published
    assert ends == {temperature.state_topic: pytest.approx(wall - 60 + spec.max_age),
                    temperature.attributes_topic: pytest.approx(wall - 60 + spec.max_age),
                    pressure.attributes_topic: pytest.approx(wall + spec.max_age)}
    # The store knows the broker does not hold the stale value: a fresh one goes out even if equal.
    assert expiry.store.state(humidity).published == float("-inf")
    assert expiry.store.state(temperature).published == 5.0


def test_the_timer_fires_at_the_deadline_not_at_the_next_tick(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    expiry = expiry_for()
    st = expiry.store.state(spec.entities[0])
    st.text, st.published, st.attrs_digest = "21", 5.0, 123

    async def scenario() -> float:
        started = time.monotonic()
        wall = time.time()
        # 0.3 s left: the message expiry is rounded up to 1 s, and the clear comes when MQTT 5 drops it.
        expiry.sent(spec, {T: wall + 0.3, A: wall + 0.3}, wall)
        while T not in expiry.expired:
            assert time.monotonic() - started < 5, "the timer never fired"
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took >= 1 - 0.06
    assert expiry.expired == {T: TopicClass.STATE, A: TopicClass.ATTRIBUTES}
    # The next fresh reading goes out even though it is unchanged (and its attributes with it).
    assert (st.published, st.attrs_digest) == (float("-inf"), 123)
