"""The deadline bookkeeping that stands in for MQTT 5 message expiry, without a broker."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time

import pytest

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import Broker, load
from gateway.expiry import EXPIRED, Deadlines, Expiry, restored_deadline, topic_class
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


def test_deadlines_come_out_in_order_and_a_refresh_postpones():
    d = Deadlines()
    d.refresh("a", ["a/1", "a/2"], 10.0)
    d.refresh("b", ["b/1"], 12.0)
    d.refresh("a", ["a/3"], 15.0)
    d.refresh("a", ["a/1"], 20.0)  # a heartbeat: a/1 now expires last
    assert d.earliest() == 10.0
    assert d.due(9.9) == []
    assert d.due(10.0) == [("a", "a/2")]
    assert d.earliest() == 12.0
    assert sorted(d.due(16.0)) == [("a", "a/3"), ("b", "b/1")]
    assert (d.get("a", "a/1"), d.get("a", "a/2"), d.get("c", "x")) == (20.0, None, None)
    assert len(d) == 1
    assert d.due(math.inf) == [("a", "a/1")]
    assert d.earliest() is None


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
    first.sent(spec, [(T, b"21")])
    first.sent(spec, [(A, b"{}")])
    first.expired["soest/brightsky/humidity"] = TopicClass.STATE
    saved = first.dump(cat.sources.values())
    wall = time.time()
    assert saved["soest_brightsky_temperature"][0] == pytest.approx(wall + spec.expire_after, abs=1)
    assert saved["soest_brightsky_humidity"] == [EXPIRED, None]
    saved |= {"soest_brightsky_pressure": ["soon", 1e300], "soest_gone_entity": [1.0, 1.0],
              "soest_brightsky_dew_point": [wall + 1e6, True], "soest_brightsky_visibility": [1.0]}
    second = expiry_for()
    second.restore(cat.sources.values(), saved)
    mono = time.monotonic()
    assert second.deadlines.get("brightsky", T) == pytest.approx(mono + spec.expire_after, abs=1)
    assert second.deadlines.get("brightsky", A) == pytest.approx(mono + spec.expire_after, abs=1)
    # A tampered deadline is cut to one lifetime; wrong types and foreign entities are ignored.
    assert second.deadlines.get("brightsky", "soest/brightsky/dew_point") == pytest.approx(
        mono + spec.expire_after, abs=1)
    assert second.deadlines.get("brightsky", "soest/brightsky/pressure/attributes") == pytest.approx(
        mono + spec.expire_after, abs=1)
    assert second.deadlines.get("brightsky", "soest/brightsky/pressure") is None
    assert second.expired == {"soest/brightsky/humidity": TopicClass.STATE}  # a row must be a pair
    assert len(second.deadlines) == 4


def test_a_new_publish_takes_a_topic_off_the_expired_list(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    expiry = expiry_for()
    expiry.expired[T] = TopicClass.STATE
    expiry.sent(spec, [(T, b"21")])
    assert expiry.expired == {}


def test_nothing_is_tracked_without_message_expiry(cat: catalog.Catalog):
    spec = cat.sources["brightsky"]
    expiry = expiry_for(enabled=False)
    expiry.sent(spec, [(T, b"21")])
    expiry.restore(cat.sources.values(), {"soest_brightsky_humidity": [EXPIRED, EXPIRED]})
    assert (len(expiry.deadlines), expiry.expired, expiry.lifetime(spec)) == (0, {}, None)


def test_the_timer_fires_at_the_deadline_not_at_the_next_tick(cat: catalog.Catalog):
    spec = dataclasses.replace(cat.sources["brightsky"], expire_after=0.3)
    expiry = expiry_for()
    st = expiry.store.state(spec.entities[0])
    st.text, st.published, st.attrs_digest = "21", 5.0, 123

    async def scenario() -> float:
        started = time.monotonic()
        expiry.sent(spec, [(T, b"21"), (A, b"{}")])
        while T not in expiry.expired:
            assert time.monotonic() - started < 5, "the timer never fired"
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took >= 0.3 - 0.06
    assert expiry.expired == {T: TopicClass.STATE, A: TopicClass.ATTRIBUTES}
    # The next fresh reading goes out even though it is unchanged (and its attributes with it).
    assert (st.published, st.attrs_digest) == (float("-inf"), 123)
