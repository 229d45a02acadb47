"""Broker outages: the gateway never dies, loses nothing, and restores the retained tree."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.config import Broker
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from tests.helpers import (
    GatewayProcess,
    Mosquitto,
    Subscriber,
    barrier,
    brightsky_config,
    expected_tree,
    free_port,
    fresh_fixture,
    retained_tree,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]


@pytest.fixture
def config(tmp_path: Path, upstream) -> Path:
    # The shipped reconnect defaults, not the tests' quick ones: "within 5 s" must hold as shipped.
    return brightsky_config(tmp_path / "topics.yaml", upstream, fast_reconnect=False, every="1s", jitter="0s")


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
def test_broker_killed_and_restarted(tmp_path: Path, config: Path, upstream, persistence: bool):
    broker = Mosquitto(tmp_path, persistence=persistence).start()
    proc = GatewayProcess(config, broker.port)
    try:
        expected = expected_tree(config, {"soest/brightsky/temperature"})
        retained_tree(broker.port, expected)
        for outage in (0.5, 6.0):  # short, and longer than the backoff cap
            broker.stop(kill=True)
            # A value that changes while the broker is away must not be lost.
            new_value = f"{10.25 + outage}"
            body = fresh_fixture("brightsky/normal.json").replace(
                b'"temperature":24.3', f'"temperature":{new_value}'.encode())
            upstream.serve("/current_weather", body)
            time.sleep(outage)  # the outage itself, shorter and longer than the reconnect backoff cap
            broker.start()
            back = time.monotonic()
            sub = Subscriber(broker.port, "soest/#", "homeassistant/#")
            sub.wait_for("soest/brightsky/temperature", new_value, timeout=5.5)
            sub.close()
            tree = retained_tree(broker.port, expected, timeout=max(0.5, 5.5 - (time.monotonic() - back)))
            assert set(tree) >= expected
            assert tree["soest/gateway/status"] == b"online"
        assert proc.proc.poll() is None
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()
        broker.stop()


def test_no_broker_at_startup(tmp_path: Path, config: Path):
    port = free_port()
    proc = GatewayProcess(config, port)
    try:
        # A second failed attempt: the first did not kill it, it keeps retrying.
        wait_until(lambda: proc.log.count("cannot reach MQTT broker") >= 2, 15)
        assert proc.proc.poll() is None
        broker = Mosquitto(tmp_path, port=port).start()
        try:
            try:
                tree = retained_tree(port, expected_tree(config, {"soest/brightsky/temperature"}), timeout=10)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the gateway's log:\n{proc.log[-4000:]}") from None
            assert tree["soest/brightsky/temperature"] == b"24.3"
        finally:
            proc.terminate()
            broker.stop()
    finally:
        if proc.proc.poll() is None:
            proc.kill()


def test_connection_dropped_during_a_burst(tmp_path: Path):
    """5,000 retained topics, three rounds of values, the broker killed mid-burst: last values win."""
    broker = Mosquitto(tmp_path).start()
    link = MqttLink(Broker(port=broker.port), client_id="burst", will_topic="burst/gateway/status",
                    metrics=Metrics(), reconnect_min=0.1, reconnect_max=0.5)
    link.start()
    assert link.wait_connected(5)
    # The link re-sends everything it holds on every connect.
    link._on_connect = lambda first: link.republish()
    topics = [f"burst/sensor/{i}" for i in range(5000)]
    try:
        for round_ in range(3):
            for i, topic in enumerate(topics):
                link.publish(topic, f"{round_}-{i}".encode(), TopicClass.STATE)
                if round_ == 1 and i == 2500:
                    broker.stop(kill=True)
                    broker.start()
        assert link.wait_connected(10)
        sub = Subscriber(broker.port, "burst/sensor/#")
        wait_until(lambda: len({m.topic for m in sub.snapshot()}) >= len(topics), 15)
        # Everything the link sent is acknowledged, so the broker forwarded it before the barrier:
        # no older value can still be on its way.
        wait_until(lambda: link.flush(5), 30)
        end = barrier(sub, broker.port, topic="burst/sensor/barrier")
        latest = {m.topic: m for m in sub.snapshot()[:end]}
        wrong = [t for i, t in enumerate(topics) if latest[t].payload != f"2-{i}".encode()]
        assert wrong == []
        sub.close()
    finally:
        link.stop()
        broker.stop()


def test_batch_larger_than_the_mqtt_packet_id_space(tmp_path: Path):
    """70,000 retained messages in one batch: more than paho's 65,535 message ids. None is dropped."""
    broker = Mosquitto(tmp_path).start()
    link = MqttLink(Broker(port=broker.port), client_id="big", will_topic="big/gateway/status", metrics=Metrics())
    link.start()
    try:
        assert link.wait_connected(5)
        count = 70_000
        link.publish_many(((f"big/e/{i}", str(i).encode()) for i in range(count)), TopicClass.STATE)
        assert link.flush(120)
        sub = Subscriber(broker.port, "big/e/#")
        wait_until(lambda: len(sub.snapshot()) >= count, 60)
        assert {m.topic for m in sub.snapshot()} == {f"big/e/{i}" for i in range(count)}
        sub.close()
    finally:
        link.stop()
        broker.stop()
