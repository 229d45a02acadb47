"""AckWindow: publishers wait while too many QoS 1 messages are unacknowledged; paho's thread never."""

from __future__ import annotations

import threading
import time

import pytest

from gateway.config import ConfigError, load_broker
from gateway.flow import FAR_WINDOW_MAX, NEAR_WINDOW, AckWindow, window_for


def _full(limit: int = 10) -> AckWindow:
    window = AckWindow(limit)
    for _ in range(limit):
        window.sent()
    return window


def _waited(window: AckWindow, timeout: float, alive: bool = True) -> float:
    started = time.monotonic()
    window.wait_for_room(lambda: alive, timeout)
    return time.monotonic() - started


def test_a_full_window_holds_a_publisher_until_its_timeout():
    assert _waited(_full(), 0.5) >= 0.45
    assert _waited(AckWindow(10), 30) < 5  # room: no wait at all


def test_acknowledging_half_the_window_releases_a_waiting_publisher():
    window = _full()
    released: list[float] = []
    waiter = threading.Thread(target=lambda: released.append(_waited(window, 30)))
    waiter.start()
    for _ in range(6):  # 4 left: below half of 10
        window.acked()
    waiter.join(10)
    assert len(released) == 1
    assert released[0] < 5


def test_a_lost_connection_releases_waiting_publishers():
    window = _full()
    released: list[float] = []
    waiter = threading.Thread(target=lambda: released.append(_waited(window, 30)))
    waiter.start()
    window.reset()
    waiter.join(10)
    assert len(released) == 1
    assert released[0] < 5
    assert _waited(window, 30, alive=False) < 5  # and a dead link never holds anyone


def test_the_network_thread_never_waits():
    window = _full()
    took: list[float] = []

    def network_thread() -> None:
        window.on_network_thread()  # what the link calls from paho's on_connect
        took.append(_waited(window, 30))

    thread = threading.Thread(target=network_thread)
    thread.start()
    thread.join(10)
    assert len(took) == 1
    assert took[0] < 5
    assert _waited(window, 0.3) >= 0.25  # other threads still do


def test_the_window_grows_with_the_brokers_ack_latency():
    assert window_for(0.0003) == NEAR_WINDOW  # Mosquitto on loopback
    assert window_for(0.008) == NEAR_WINDOW  # ... on a busy machine: no reconnect for that
    assert window_for(0.027) == 675  # a replicated JetStream write: 730 msg/s at 20, now ~25,000/s
    assert window_for(5.0) == FAR_WINDOW_MAX


def test_the_inflight_setting_is_auto_or_a_number():
    assert load_broker({}).inflight == "auto"
    assert load_broker({"GATEWAY_MQTT_INFLIGHT": "500"}).inflight == 500
    with pytest.raises(ConfigError, match=r"GATEWAY_MQTT_INFLIGHT: '0' is not 'auto' or a number of messages"):
        load_broker({"GATEWAY_MQTT_INFLIGHT": "0"})
