"""RetainedReader and purge against a real Mosquitto."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from gateway.config import Broker
from gateway.errors import PublishError
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.retained import RetainedReader, purge
from tests.helpers import Mosquitto, Subscriber, free_port, publish

pytestmark = pytest.mark.broker

FILTERS = ("soest/#", "homeassistant/+/node/+/config")
MARKER = "soest/gateway/sync/test-read"


def _link(port: int, on_message: Callable[[str, bytes, bool], object]) -> MqttLink:
    link = MqttLink(Broker(port=port), client_id="t-read", will_topic=None, metrics=Metrics(),
                    reconnect_min=0.1, reconnect_max=0.2, on_message=on_message)
    link.start()
    assert link.wait_connected(5)
    return link


@pytest.fixture
def link_and_reader(broker: Mosquitto) -> Iterator[tuple[MqttLink, RetainedReader]]:
    reader = RetainedReader(FILTERS, MARKER)
    link = _link(broker.port, reader.offer)
    yield link, reader
    link.stop()


def test_every_retained_message_under_two_filters_is_read(broker: Mosquitto, link_and_reader):
    link, reader = link_and_reader
    ours = {"soest/brightsky/temperature": b"24.3", "soest/gateway/info": b"{}",
            "homeassistant/sensor/node/temp/config": b'{"name":"t"}'}
    for topic, payload in ours.items():
        publish(broker.port, topic, payload, retain=True)
    publish(broker.port, "homeassistant/sensor/other/temp/config", "{}", retain=True)
    publish(broker.port, "other/topic", "keep", retain=True)
    sub = Subscriber(broker.port, "#")
    assert reader.read(link, timeout=5) == {t: hash(p) for t, p in ours.items()}
    marker = sub.wait_for(MARKER)  # the marker went out as a plain message, after the retained ones
    assert (marker.retain, marker.qos) == (False, 1)
    # will_topic=None: the link announced nothing of its own; the probe went out and was cleared.
    probe = f"{MARKER}/probe/read-1"
    sub.wait_for(probe, b"")
    assert [(m.topic, m.payload) for m in sub.snapshot() if not m.retain] == [
        (probe, b"read-1"), (MARKER, b"read-1"), (probe, b"")]
    sub.close()
    assert probe not in retained_topics(broker.port)
    # The subscriptions of the read are gone: a new retained message is not taken any more.
    publish(broker.port, "soest/late", "x", retain=True)
    assert not reader.offer("soest/late", b"x", True)
    assert reader.offer(MARKER, b"stale", False)  # a marker is always the reader's


def retained_topics(port: int) -> list[str]:
    sub = Subscriber(port, "#")
    publish(port, "zz/end", "marker")  # everything retained arrives before this
    sub.wait_for("zz/end")
    topics = [m.topic for m in sub.snapshot() if m.retain]
    sub.close()
    return topics


def test_a_read_ends_with_none_when_the_broker_stops_before_the_marker(broker: Mosquitto):
    # Big QoS 1 messages: Mosquitto keeps most of them (and the marker) queued while the first
    # ones wait for acknowledgements, so killing it at the first one loses the marker for sure.
    for i in range(150):
        publish(broker.port, f"soest/bulk/{i}", b"x" * 40_000, retain=True)
    reader = RetainedReader(FILTERS, MARKER)

    def on_message(topic: str, payload: bytes, retain: bool) -> bool:
        if retain and broker.proc is not None:
            broker.stop(kill=True)  # on paho's thread: nothing more is read until the broker is gone
        return reader.offer(topic, payload, retain)

    link = _link(broker.port, on_message)
    try:
        started = time.monotonic()
        assert reader.read(link, timeout=30) is None
        assert time.monotonic() - started < 10  # noticed the drop, did not sit out the timeout
    finally:
        link.stop()


def test_a_read_on_a_disconnected_link_is_incomplete():
    reader = RetainedReader(FILTERS, MARKER)
    link = MqttLink(Broker(port=free_port()), client_id="t-none", will_topic=None, metrics=Metrics())
    assert reader.read(link, timeout=5) is None


def test_purge_clears_ours_including_a_message_bigger_than_the_gateway_accepts(broker: Mosquitto):
    publish(broker.port, "soest/big", b"x" * 100_000, retain=True)
    publish(broker.port, "soest/brightsky/temperature", "24.3", retain=True)
    publish(broker.port, "other/topic", "keep", retain=True)
    cleared = purge(Broker(port=broker.port), list(FILTERS), client_id="t-purge")
    assert cleared == ["soest/big", "soest/brightsky/temperature"]
    sub = Subscriber(broker.port, "#")
    publish(broker.port, "zz/after", "marker")  # everything retained arrives before this
    sub.wait_for("zz/after")
    assert [m.topic for m in sub.snapshot() if m.retain] == ["other/topic"]
    sub.close()


def test_purge_of_an_unreachable_broker_is_one_error():
    port = free_port()
    with pytest.raises(PublishError, match=f"cannot reach MQTT broker 127.0.0.1:{port}: "):
        purge(Broker(port=port), list(FILTERS), client_id="t-purge", timeout=5)
