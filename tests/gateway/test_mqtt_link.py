"""The broker link against real brokers: protocol choice, a list of nodes, SUBACK checks.

Everything here is observed from outside: what a subscriber receives, on which node, with which
protocol; or what the link reports (``protocol``, ``address``, ``failed_subscriptions``).
"""

from __future__ import annotations

import logging
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import Broker
from gateway.flow import FAR_WINDOW_MAX, NEAR_WINDOW
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from gateway.retained import RetainedReader
from tests.delay_proxy import DelayProxy
from tests.helpers import Mosquitto, Subscriber, barrier, free_port, late_will, publish, wait_until

pytestmark = pytest.mark.broker

STATUS = "soest/gateway/status"


def _link(broker: Broker, **kwargs) -> MqttLink:
    kwargs.setdefault("will_topic", STATUS)
    kwargs.setdefault("metrics", Metrics())
    link = MqttLink(broker, client_id="t-link", reconnect_min=0.1, reconnect_max=0.5, **kwargs)
    link.start()
    return link


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Mosquitto(tmp_path / "a").start()
    b = Mosquitto(tmp_path / "b").start()
    yield a, b
    a.stop()
    b.stop()


@pytest.mark.parametrize(("choice", "spoken"), [("auto", "5"), ("5", "5"), ("3.1.1", "3.1.1")])
def test_the_protocol_is_chosen_and_reported(broker: Mosquitto, choice: str, spoken: str):
    link = _link(Broker(port=broker.port, protocol=choice))
    try:
        assert link.wait_connected(5)
        assert link.protocol == spoken
        sub = Subscriber(broker.port, "soest/#")
        link.publish("soest/x/state", b"1", TopicClass.STATE, ends_at=time.time() + 600)
        msg = sub.wait_for("soest/x/state", b"1")
        assert (msg.qos, link.expiry_supported) == (1, spoken == "5")
        sub.close()
    finally:
        link.stop()


def _expiry_of_retained(port: int, topic: str) -> int | None:
    """The MessageExpiryInterval a fresh MQTT 5 subscriber sees on a retained message."""
    got: list[paho.MQTTMessage] = []
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = lambda c, u, m: (got.append(m), done.set())
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(topic, qos=1)
    try:
        assert done.wait(5), f"no retained message on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    assert got[0].retain
    return getattr(got[0].properties, "MessageExpiryInterval", None)


@pytest.mark.parametrize(("choice", "expiry"), [("5", True), ("3.1.1", False)])
def test_message_expiry_goes_out_only_over_mqtt_5(broker: Mosquitto, choice: str, expiry: bool):
    link = _link(Broker(port=broker.port, protocol=choice))
    try:
        assert link.wait_connected(5)
        link.publish("soest/x/state", b"1", TopicClass.STATE, ends_at=time.time() + 599.5)
        assert link.flush(5)
    finally:
        link.stop()
    seen = _expiry_of_retained(broker.port, "soest/x/state")
    assert (seen is not None and 590 <= seen <= 600) if expiry else seen is None


def test_a_resend_after_a_reconnect_carries_what_is_left_of_the_life(broker: Mosquitto):
    """The outbox keeps when the data goes stale, not an interval: a re-send never makes it newer."""
    link = _link(Broker(port=broker.port, protocol="5"), on_connect=lambda first: first or link.republish())
    try:
        assert link.wait_connected(5)
        sent = time.time()
        link.publish_many([("soest/x/long", b"1"), ("soest/x/short", b"2"), ("soest/x/forever", b"3")],
                          TopicClass.STATE, {"soest/x/long": sent + 600, "soest/x/short": sent + 2.5})
        link.publish("soest/x/stale", b"4", TopicClass.STATE, ends_at=sent - 1)  # not sent, not kept
        assert link.flush(5)
        assert _expiry_of_retained(broker.port, "soest/x/short") in (2, 3)
        broker.stop()  # no persistence: the broker forgets every retained message
        time.sleep(max(0.0, sent + 4 - time.time()))  # "short" goes stale meanwhile
        broker.start()
        sub = Subscriber(broker.port, STATUS)
        sub.wait_for(STATUS, "online", timeout=10)
        sub.close()
        wait_until(lambda: "soest/x/long" in _retained_topics(broker.port), 10)
        left = _expiry_of_retained(broker.port, "soest/x/long")
        assert left is not None
        assert 600 - (time.time() - sent) - 2 <= left <= 600 - 4 + 1
        assert _expiry_of_retained(broker.port, "soest/x/forever") is None
        assert _retained_topics(broker.port) == {"soest/x/long", "soest/x/forever"}
    finally:
        link.stop()


def _retained_topics(port: int) -> set[str]:
    sub = Subscriber(port, "soest/x/#")
    try:
        sub.sync()
        return {m.topic for m in sub.snapshot() if m.retain and m.payload}
    finally:
        sub.close()


class _ClosingServer:
    """Accepts TCP connections and closes each at once, as RabbitMQ does with an MQTT 5 CONNECT."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.recv(1024)  # the CONNECT
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_a_connection_closed_before_connack_is_logged_with_a_hint(caplog: pytest.LogCaptureFixture):
    server = _ClosingServer()
    refused: list[str] = []
    caplog.set_level(logging.INFO, logger="gateway.mqtt")
    link = _link(Broker(port=server.port), on_connect_failed=lambda reason, was_refused: refused.append(reason))
    try:
        # auto: MQTT 5 first, then 3.1.1 on the same node; both closed: one error with a hint.
        wait_until(lambda: refused, timeout=10)
        assert server.accepted >= 2
        text = caplog.text
        assert "closed the connection before answering CONNECT (MQTT 5); trying MQTT 3.1.1" in text
        assert "check GATEWAY_MQTT_PROTOCOL (auto, 5 or 3.1.1), the credentials and TLS" in text
        assert not link.connected
    finally:
        link.stop()
        server.close()


def test_the_first_reachable_node_of_a_list_is_used(broker: Mosquitto):
    dead = free_port()
    link = _link(Broker(host=f"127.0.0.1:{dead},127.0.0.1:{broker.port}"))
    try:
        assert link.wait_connected(10)
        assert link.address == ("127.0.0.1", broker.port)
    finally:
        link.stop()


def test_a_node_that_never_answers_connect_is_left_for_the_next(broker: Mosquitto,
                                                               caplog: pytest.LogCaptureFixture):
    """It takes the TCP connection and then says nothing (a NATS node waiting for a new leader does)."""
    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.extend(silent.accept()[0] for _ in range(10)), daemon=True).start()
    caplog.set_level(logging.INFO, logger="gateway.mqtt")
    silent_port = silent.getsockname()[1]
    link = _link(Broker(host=f"127.0.0.1:{silent_port},127.0.0.1:{broker.port}"))
    sub = Subscriber(broker.port, STATUS, live=True)
    try:
        assert link.wait_connected(10)
        assert link.address == ("127.0.0.1", broker.port)
        assert sub.wait_for(STATUS, "online").retain
        assert f"MQTT broker 127.0.0.1:{silent_port} did not answer CONNECT within 1.5 s (MQTT 5); " \
               "trying the next node" in caplog.text
        assert "closed the connection before answering" not in caplog.text  # we closed it, not the broker
    finally:
        link.stop()
        sub.close()
        silent.close()
        for conn in held:
            conn.close()


def test_losing_a_node_moves_to_the_next_and_says_online_there(two_brokers: tuple[Mosquitto, Mosquitto]):
    a, b = two_brokers
    links: list[MqttLink] = []
    # As the gateway does: on every connect, the kept retained messages go out again.
    nodes = Broker(host=f"127.0.0.1:{a.port},127.0.0.1:{b.port}")
    link = _link(nodes, on_connect=lambda first: links and links[0].republish())
    links.append(link)
    try:
        assert link.wait_connected(10)
        assert link.address == ("127.0.0.1", a.port)
        link.publish("soest/x/state", b"kept", TopicClass.STATE)
        link.subscribe("soest/gateway/refresh")
        sub_b = Subscriber(b.port, "soest/#")
        a.stop(kill=True)
        # The other node gets the status and the kept retained state.
        sub_b.wait_for(STATUS, b"online", timeout=10)
        sub_b.wait_for("soest/x/state", b"kept", timeout=10)
        assert link.address == ("127.0.0.1", b.port)
        # ... and the subscriptions were made again there.
        wait_until(lambda: link.subscriptions.states().get("soest/gateway/refresh") == "granted", timeout=5)
        sub_b.close()
    finally:
        link.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_late_last_will_on_our_status_is_answered_with_online(broker: Mosquitto, protocol: str):
    """The split-brain case of issue #11: a rival's old session ends after our ``online``, and the
    broker publishes its Will, ``offline``, on our status topic while we serve."""
    metrics = Metrics()
    link = _link(Broker(port=broker.port, protocol=protocol), metrics=metrics)
    live = Subscriber(broker.port, STATUS, live=True)
    try:
        mark = _listening_to_its_status(link, live)
        late_will(broker.port, STATUS)
        will = live.wait_for(STATUS, b"offline", after=mark)
        assert will.retain
        answer = live.wait_for(STATUS, b"online", after=live.snapshot().index(will) + 1, timeout=5)
        assert (answer.retain, answer.qos) == (True, 1)
        assert _retained_status(broker.port) == b"online"  # what a newcomer sees
        assert metrics.registry.get_sample_value("gateway_status_offline_answered_total") == 1
    finally:
        link.stop()
    # Our own offline at shutdown stays: the link does not contradict itself.
    assert _retained_status(broker.port) == b"offline"
    live.close()


def _listening_to_its_status(link: MqttLink, live: Subscriber) -> int:
    """Once the link is connected, said online and is subscribed to its status: a mark in ``live`` after that."""
    assert link.wait_connected(5)
    live.wait_for(STATUS, b"online")
    wait_until(lambda: link.subscriptions.states().get(STATUS) == "granted", timeout=5)
    return live.mark()


def _retained_status(port: int) -> bytes:
    sub = Subscriber(port, STATUS)
    try:
        return sub.wait_for(STATUS).payload
    finally:
        sub.close()


def test_a_flood_of_offline_gets_one_answer_per_hold_and_the_last_word(broker: Mosquitto):
    metrics = Metrics()
    link = _link(Broker(port=broker.port), metrics=metrics)
    live = Subscriber(broker.port, STATUS, live=True)
    try:
        mark = _listening_to_its_status(link, live)
        started = time.monotonic()
        for _ in range(30):
            publish(broker.port, STATUS, b"offline", retain=True)
        flood = time.monotonic() - started
        wait_until(lambda: live.snapshot()[-1].payload == b"online", timeout=5)
        answers = [m for m in live.snapshot()[mark:] if m.payload == b"online"]
        # At most one answer per second of flooding, plus the one for the last offline.
        assert 1 <= len(answers) <= flood + 2
        assert metrics.registry.get_sample_value("gateway_status_offline_answered_total") == len(answers)
    finally:
        link.stop()
        live.close()


def test_a_link_without_a_will_does_not_answer(broker: Mosquitto):
    """A standby (and a one-off tool like purge) has no status of its own to defend."""
    link = _link(Broker(port=broker.port), will_topic=None)
    live = Subscriber(broker.port, STATUS, "soest/test/#", live=True)
    try:
        assert link.wait_connected(5)
        mark = barrier(live, broker.port)  # nothing retained on the status topic: a link without a will says nothing
        late_will(broker.port, STATUS)
        live.wait_for(STATUS, b"offline", after=mark)
        time.sleep(1.5)  # longer than the guard's hold and its 0.25 s tick: an answer would be here
        end = barrier(live, broker.port)
        assert [m.payload for m in live.snapshot()[mark:end] if m.topic == STATUS] == [b"offline"]
    finally:
        link.stop()
        live.close()


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[int]:
    """One nats-server with MQTT (3.1.1 only); it refuses topic filters with '.' or spaces (SUBACK 0x80)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        pytest.skip("nats-server is not installed (scripts/ensure-nats installs it)")
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"server_name: t1\nlisten: 127.0.0.1:{free_port()}\n"
                    f"jetstream {{ store_dir: {tmp_path}/js }}\nmqtt {{ listen: 127.0.0.1:{port} }}\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port), timeout=10)
        yield port
    finally:
        proc.kill()
        proc.wait(10)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_auto_falls_back_to_3_1_1_once_on_a_broker_that_refuses_5(nats: int, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="gateway.mqtt")
    link = _link(Broker(port=nats))
    try:
        assert link.wait_connected(15)
        assert link.protocol == "3.1.1"
        assert caplog.text.count("refused MQTT 5 (unsupported version); trying MQTT 3.1.1") == 1
        assert f"connected to MQTT broker 127.0.0.1:{nats} (MQTT 3.1.1)" in caplog.text
    finally:
        link.stop()


def test_a_refused_subscription_is_reported_and_retried(nats: int, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="gateway.mqtt")
    link = _link(Broker(port=nats, protocol="3.1.1"))
    try:
        assert link.wait_connected(15)
        link.subscribe("soest.bad/#")
        link.subscribe("soest/gateway/refresh")
        wait_until(lambda: link.subscriptions.failed() == ["soest.bad/#"], timeout=10)
        wait_until(lambda: link.subscriptions.states()["soest/gateway/refresh"] == "granted", timeout=10)
        assert "refused the subscription to soest.bad/#" in caplog.text
        # Tried again with backoff (at QoS 0 the second time), and refused again.
        wait_until(lambda: caplog.text.count("refused the subscription to soest.bad/#") >= 2, timeout=10)
    finally:
        link.stop()


def test_a_read_with_a_refused_subscription_is_incomplete(nats: int):
    reader = RetainedReader(["soest/#", "soest.bad/#"], "soest/gateway/sync/t")
    link = _link(Broker(port=nats, protocol="3.1.1"), will_topic=None, on_message=reader.offer)
    try:
        assert link.wait_connected(15)
        assert reader.read(link, timeout=10) is None
        assert reader.problem == "the broker refused the subscription to soest.bad/#"
    finally:
        link.stop()


def test_the_protocol_names_are_checked():
    with pytest.raises(ValueError, match=re.escape("'auto', '5' or '3.1.1'")):
        Broker(protocol="4")  # type: ignore[arg-type]


def test_a_far_broker_gets_a_wider_window_on_the_same_connection(broker: Mosquitto):
    """Acks 30 ms away: the window grows without reconnecting, so the Last Will stays armed throughout."""
    proxy = DelayProxy(broker.port, 0.03)
    sub = Subscriber(broker.port, "soest/#", protocol=paho.MQTTv311)
    metrics = Metrics()
    link = _link(Broker(port=proxy.port, protocol="3.1.1"), metrics=metrics)
    try:
        assert link.wait_connected(5)
        wait_until(lambda: link.in_flight > NEAR_WINDOW, 10)
        assert link.in_flight <= FAR_WINDOW_MAX
        for i in range(1000):
            link.publish(f"soest/far/{i}/state", b"%d" % i, TopicClass.STATE)
        wait_until(lambda: len({m.topic for m in sub.snapshot() if m.topic.startswith("soest/far/")}) == 1000, 20)
        assert sub.on(STATUS)[-1].payload == b"online"
        assert metrics.registry.get_sample_value("gateway_mqtt_reconnects_total") == 0
        proxy.close()  # the connection dies without a DISCONNECT: the broker must send the Will
        assert sub.wait_for(STATUS, "offline").retain is False  # 3.1.1 clears retain on live messages
    finally:
        link.stop()
        proxy.close()
        sub.close()


@pytest.mark.parametrize(("protocol", "window"), [("5", 20), ("3.1.1", 500)])
def test_an_mqtt5_broker_s_receive_maximum_caps_the_window(broker: Mosquitto, protocol: str, window: int):
    """Mosquitto announces Receive Maximum 20 to MQTT 5 clients; 3.1.1 has no such limit."""
    link = _link(Broker(port=broker.port, protocol=protocol, inflight=500))
    try:
        assert link.wait_connected(5)
        assert link.in_flight == window
    finally:
        link.stop()


def test_a_read_back_of_more_retained_messages_than_the_broker_queues_is_complete(tmp_path: Path):
    """A stock Mosquitto queues 1,000 QoS 1 messages per client and drops the rest: 3,000 configs."""
    broker = Mosquitto(tmp_path, extra=["max_queued_messages 1000"]).start()
    topics = [f"homeassistant/sensor/soest/soest_x{i}/config" for i in range(3000)]
    writer = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    writer.connect("127.0.0.1", broker.port)
    writer.loop_start()
    infos = [writer.publish(t, b'{"name":"x"}', qos=1, retain=True) for t in topics]
    reader = RetainedReader(["homeassistant/+/soest/+/config"], "soest/gateway/sync/t")
    link = _link(Broker(port=broker.port), will_topic=None, on_message=reader.offer)
    try:
        for info in infos:
            info.wait_for_publish(10)
        assert link.wait_connected(5)
        seen = reader.read(link, timeout=10)
        assert seen is not None, reader.problem
        assert set(seen) == set(topics)
    finally:
        link.stop()
        writer.disconnect()
        writer.loop_stop()
        broker.stop()
