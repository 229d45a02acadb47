"""MQTT-side input is bounded: HA births, the refresh button and oversized command payloads.

A real Mosquitto, the real gateway process and real subscribers; Bright Sky from a fixture server.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import (
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    brightsky_config,
    publish,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]

BIRTH_DELAY = 0.4  # tests.helpers.write_config
CONFIGS = "homeassistant/+/soest/+/config"
BIG = 1024 * 1024


def count(log: str, needle: str) -> int:
    return log.count(needle)


TEMPERATURE_CONFIG = "homeassistant/sensor/soest/soest_brightsky_temperature/config"


def started(broker: Mosquitto, proc: GatewayProcess, sub: Subscriber) -> None:
    """The first announce is over: logged, and (the log comes when it is queued) arrived."""
    sub.wait_for("soest/brightsky/status", "online", timeout=15)
    wait_until(lambda: "published" in proc.log and "retained messages" in proc.log, 10)
    if any(f.startswith("homeassistant/") for f in sub.filters):
        sub.wait_for(TEMPERATURE_CONFIG)


class Births:
    """A client sending ``online`` to homeassistant/status every ``period`` seconds until stopped."""

    def __init__(self, port: int, period: float) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stop = threading.Event()
        self.sent = 0
        self.period = period
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.client.publish("homeassistant/status", "online", qos=1)
            self.sent += 1
            self.stop.wait(self.period)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()


def press_until_taken(broker: Mosquitto, proc: GatewayProcess, presses: int) -> None:
    """Presses closer than 2 s apart are ignored: press until the gateway took ``presses`` in all."""

    def taken() -> bool:
        publish(broker.port, "soest/gateway/refresh", "PRESS")
        return count(proc.log, "refresh: fetching") >= presses

    wait_until(taken, 10, interval=0.5)


def test_a_birth_storm_does_not_postpone_the_reannounce(tmp_path: Path, broker: Mosquitto,
                                                        upstream: FixtureServer):
    """Births every 0.1 s: the configs still go out again within 2 × birth_delay of the first."""
    proc = GatewayProcess(brightsky_config(tmp_path / "t.yaml", upstream), broker.port)
    sub = Subscriber(broker.port, "soest/brightsky/status", CONFIGS)
    births = None
    try:
        started(broker, proc, sub)
        mark = sub.mark()
        births = Births(broker.port, 0.1)
        # The deadline is the feature: 2 × birth_delay, plus generous slack for a busy machine.
        sub.wait_for(TEMPERATURE_CONFIG, timeout=2 * BIRTH_DELAY + 4, after=mark)
        assert not births.stop.is_set()  # still storming when it came
        assert births.sent > 1
    finally:
        if births is not None:
            births.close()
        sub.close()
        proc.terminate()
    assert "Traceback" not in proc.log


def test_oversized_command_payloads_have_no_effect(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer):
    proc = GatewayProcess(brightsky_config(tmp_path / "t.yaml", upstream), broker.port)
    sub = Subscriber(broker.port, "soest/brightsky/status", CONFIGS)
    try:
        started(broker, proc, sub)
        requests = len(upstream.requests)
        mark = sub.mark()
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            for topic, word in (("soest/gateway/refresh", b"PRESS"), ("homeassistant/status", b"online")):
                client.publish(topic, word + b" " * BIG, qos=1).wait_for_publish(10)
            # The positive marker, in order after the big ones: one small birth is answered.
            client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()
        sub.wait_for("homeassistant/sensor/soest/soest_brightsky_temperature/config", timeout=10, after=mark)
        wait_until(lambda: "re-announced" in proc.log, 5)
        assert count(proc.log, "Home Assistant came online") == 1
        assert count(proc.log, "refresh: fetching") == 0
        assert len(upstream.requests) == requests
        # A small press afterwards still works.
        publish(broker.port, "soest/gateway/refresh", "PRESS")
        wait_until(lambda: "refresh: fetching" in proc.log, 10)
        assert count(proc.log, "refresh: fetching") == 1
    finally:
        sub.close()
        proc.terminate()
    assert proc.proc.returncode == 0
    assert "Traceback" not in proc.log


def test_refresh_respects_each_sources_own_minimum(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer):
    """Bright Sky (every 10 min: not within 60 s of its last run) is not refetched; the sun
    (computed locally, no upstream to spare) is, and is the positive marker."""
    proc = GatewayProcess(brightsky_config(tmp_path / "t.yaml", upstream), broker.port)
    sub = Subscriber(broker.port, "soest/brightsky/status", "soest/sun/last_fetch")
    try:
        started(broker, proc, sub)
        assert len(upstream.requests) == 1
        for press in (1, 2):
            mark = sub.mark()
            press_until_taken(broker, proc, press)
            sub.wait_for("soest/sun/last_fetch", timeout=10, after=mark)
        assert count(proc.log, "refresh: fetching 1 of 2 sources now (sun); fetched too recently: brightsky") == 2
        assert len(upstream.requests) == 1
    finally:
        sub.close()
        proc.terminate()
    assert "Traceback" not in proc.log
