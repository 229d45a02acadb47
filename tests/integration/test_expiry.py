"""Issues #11 and #17: a retained value leaves the broker when its observation passes max_age.

Every state and attributes publish carries the value's remaining life, ``observed_at + max_age
− now``, as MQTT 5 message expiry. Under MQTT 3.1.1 the gateway clears (empty retained) every
state and attributes topic at the moment MQTT 5 expiry would have dropped it, clears it again
after a reconnect, and clears the topics of entities removed from the config. Under MQTT 5 it
sends no clears: the broker expires. The sources get a max_age of a few seconds, so the values
go stale within the test; one scenario runs over both protocols at once and compares them.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from gateway.owned import OWNED_FILE
from tests.helpers import (
    GatewayProcess,
    Mosquitto,
    Subscriber,
    barrier,
    free_port,
    fresh_fixture,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.broker

MAX_AGE = 4
HEARTBEAT = 2
EXPIRE_AFTER = max(MAX_AGE, 2 * HEARTBEAT)  # SourceSpec.expire_after
# A clear must never come early; it may come late by the machine's scheduling noise.
EARLY, LATE = 0.5, 2.0
DIAGNOSTIC_LEAVES = ("status", "last_fetch", "fetch_errors")
TEMPERATURE = "soest/brightsky/temperature"


class TimedSubscriber(Subscriber):
    """A live subscriber that also notes when each message arrived (wall clock, as observed_at)."""

    def __init__(self, port: int, *filters: str) -> None:
        self.arrivals: list[tuple[float, str, bytes]] = []
        super().__init__(port, *filters, live=True)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        with self._lock:
            self.arrivals.append((time.time(), msg.topic, msg.payload))

    def timeline(self, topic: str) -> list[tuple[float, bytes]]:
        with self._lock:
            return [(at, payload) for at, t, payload in self.arrivals if t == topic]


def short_lived(path: Path, upstream, *, sun: bool = False) -> Path:
    """Bright Sky fetched every second, fresh each time, going stale MAX_AGE s after upstream dies."""
    upstream.serve("/current_weather", lambda: fresh_fixture("brightsky/normal.json"))

    def edit(data: dict[str, Any]) -> None:
        keep = ("brightsky", "sun") if sun else ("brightsky",)
        data["sources"] = {k: v for k, v in data["sources"].items() if k in keep}
        data["sources"]["brightsky"].update(every="1s", jitter="0s", max_age=f"{MAX_AGE}s")
        data["mqtt"]["heartbeat"] = f"{HEARTBEAT}s"

    return write_config(path, upstream.url, edit=edit)


def gateway(config: Path, port: int, protocol: str, **env: str) -> GatewayProcess:
    return GatewayProcess(config, port, env={"GATEWAY_MQTT_PROTOCOL": protocol, **env})


def kill_upstream(upstream) -> None:
    upstream.serve("/current_weather", {"detail": "down"}, status=500)


def value_topics(sub: TimedSubscriber) -> list[str]:
    """State and attributes topics of Bright Sky that had a value."""
    return sorted({t for m in sub.snapshot() if m.payload and (t := m.topic).startswith("soest/brightsky/")
                   and t.rsplit("/", 1)[1] not in DIAGNOSTIC_LEAVES})


def retained(port: int, topic_filter: str = "soest/#") -> dict[str, bytes]:
    """The broker's retained store under ``topic_filter``, as a new subscriber receives it."""
    sub = Subscriber(port, topic_filter)
    try:
        sub.sync()
        return {m.topic: m.payload for m in sub.snapshot() if m.retain}
    finally:
        sub.close()


def scrape(http_port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def cleared(sub: TimedSubscriber, topics: list[str], timeout: float) -> None:
    for topic in topics:
        sub.wait_for(topic, b"", timeout=timeout)


# --------------------------------------------------------------------------- on time, under 3.1.1


def test_a_dead_upstream_clears_its_values_on_time_under_3_1_1(tmp_path: Path, broker: Mosquitto, upstream):
    http_port = free_port()
    sub = TimedSubscriber(broker.port, "soest/brightsky/#")
    proc = gateway(short_lived(tmp_path / "t.yaml", upstream), broker.port, "3.1.1",
                   GATEWAY_HTTP_PORT=str(http_port))
    try:
        sub.wait_for(TEMPERATURE, "24.3")
        sub.wait_for(f"{TEMPERATURE}/attributes")
        kill_upstream(upstream)
        sub.wait_for("soest/brightsky/status", "offline", timeout=MAX_AGE + 5)
        topics = value_topics(sub)
        assert {TEMPERATURE, f"{TEMPERATURE}/attributes"} <= set(topics)
        cleared(sub, topics, timeout=MAX_AGE + LATE + 5)
        last = [m for m in sub.on(f"{TEMPERATURE}/attributes") if m.payload][-1]
        observed = datetime.fromisoformat(last.json()["observed_at"])
        ends = observed.timestamp() + MAX_AGE
        for topic in topics:
            clear_at = next(at for at, payload in sub.timeline(topic) if not payload)
            # MQTT 5 expiry would have dropped it when its observation turned MAX_AGE old (the
            # expiry is rounded up to whole seconds), however recently a heartbeat re-sent it.
            assert ends - EARLY <= clear_at <= ends + 1 + LATE, topic
            clear = sub.on(topic)[-1]
            assert (clear.payload, clear.retain, clear.qos) == (b"", True, 1), topic
        store = retained(broker.port)
        assert not set(topics) & set(store), "a new subscriber still gets an expired value"
        assert store["soest/brightsky/status"] == b"offline"  # the rest of the tree is there
        text = wait_until(lambda: (t := scrape(http_port)) and t, 10)
        assert f'gateway_retained_clears_total{{reason="expired"}} {float(len(topics))}' in text
        # Upstream heals: the same value as before goes out again, although it did not change.
        mark = sub.mark()
        upstream.serve("/current_weather", lambda: fresh_fixture("brightsky/normal.json"))
        sub.wait_for(TEMPERATURE, "24.3", timeout=10, after=mark)
        sub.wait_for(f"{TEMPERATURE}/attributes", timeout=10, after=mark)
        assert retained(broker.port, TEMPERATURE) == {TEMPERATURE: b"24.3"}
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()
        sub.close()


def test_mqtt_5_leaves_expiry_to_the_broker(tmp_path: Path, broker: Mosquitto, upstream):
    http_port = free_port()
    sub = TimedSubscriber(broker.port, "soest/brightsky/#")
    proc = gateway(short_lived(tmp_path / "t.yaml", upstream), broker.port, "5", GATEWAY_HTTP_PORT=str(http_port))
    try:
        sub.wait_for(TEMPERATURE, "24.3")
        kill_upstream(upstream)
        sub.wait_for("soest/brightsky/status", "offline", timeout=MAX_AGE + 5)
        # The positive marker: the broker itself dropped the value and its attributes.
        wait_until(lambda: not {TEMPERATURE, f"{TEMPERATURE}/attributes"} & set(retained(broker.port)),
                   MAX_AGE + EXPIRE_AFTER + 10, interval=0.3)
        end = barrier(sub, broker.port, topic="soest/brightsky/barrier")
        assert [m.topic for m in sub.snapshot()[:end] if not m.payload] == [], "the gateway sent clears"
        assert 'gateway_retained_clears_total{reason="expired"} 0.0' in scrape(http_port)
    finally:
        proc.terminate()
        sub.close()


# --------------------------------------------------------------------------- restarts


def test_restart_with_entities_removed_clears_their_topics_under_3_1_1(tmp_path: Path, broker: Mosquitto,
                                                                       upstream):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    config = write_config(tmp_path / "t.yaml", upstream.url, edit=lambda d: d.update(
        sources={k: v for k, v in d["sources"].items() if k in ("brightsky", "sun")}))
    proc = gateway(config, broker.port, "3.1.1")
    try:
        wait_until(lambda: {TEMPERATURE, "soest/sun/elevation"} <= set(retained(broker.port)), 15, interval=0.3)
    finally:
        proc.terminate()
    owned = json.loads((tmp_path / "data" / OWNED_FILE).read_text())["topics"]
    assert {TEMPERATURE, "soest/sun/status"} <= set(owned)
    # Without the temperature entity and without the whole sun source:
    write_config(config, upstream.url, edit=lambda d: d.update(sources={"brightsky": {
        **d["sources"]["brightsky"],
        "entities": {k: v for k, v in d["sources"]["brightsky"]["entities"].items() if k != "temperature"}}}))
    before = retained(broker.port)
    gone = sorted(t for t in before if t.startswith(("soest/sun/", f"{TEMPERATURE}")))
    assert {TEMPERATURE, f"{TEMPERATURE}/attributes", "soest/sun/status", "soest/sun/elevation",
            "soest/sun/fetch_errors"} <= set(gone)
    sub = TimedSubscriber(broker.port, "soest/#")
    proc = gateway(config, broker.port, "3.1.1")
    try:
        cleared(sub, gone, timeout=15)
        store = retained(broker.port)
        assert not set(gone) & set(store)
        assert store["soest/brightsky/dew_point"] == before["soest/brightsky/dew_point"]  # the rest stays
        assert all(m.retain and m.qos == 1 for t in gone for m in sub.on(t) if not m.payload)
        # Phase two: once the broker took the clears, the registry forgets them.
        wait_until(lambda: TEMPERATURE not in json.loads((tmp_path / "data" / OWNED_FILE).read_text())["topics"])
    finally:
        proc.terminate()
        sub.close()


def test_values_a_stopped_gateway_left_are_cleared_when_it_comes_back(tmp_path: Path, broker: Mosquitto,
                                                                      upstream):
    config = short_lived(tmp_path / "t.yaml", upstream)
    sub = TimedSubscriber(broker.port, "soest/brightsky/#")
    proc = gateway(config, broker.port, "3.1.1")
    try:
        sub.wait_for(TEMPERATURE, "24.3")
        kill_upstream(upstream)
    finally:
        proc.terminate()  # saves when each value would expire
    stopped = time.monotonic()
    topics = value_topics(sub)
    # Nobody clears them while the gateway is away: MQTT 3.1.1 keeps yesterday's temperature.
    time.sleep(max(0.0, EXPIRE_AFTER + 1 - (time.monotonic() - stopped)))  # until past every deadline
    assert retained(broker.port, TEMPERATURE) == {TEMPERATURE: b"24.3"}
    mark = sub.mark()
    proc = gateway(config, broker.port, "3.1.1")
    try:
        for topic in topics:
            sub.wait_for(topic, b"", timeout=15, after=mark)
        assert not set(topics) & set(retained(broker.port))
    finally:
        proc.terminate()
        sub.close()


def test_values_restored_from_the_data_directory_carry_what_is_left_of_their_life(tmp_path: Path,
                                                                                  broker: Mosquitto, upstream):
    """Issue #17: a value put back at start lives until its observation turns max_age old, not longer."""
    kill_upstream(upstream)  # only the data directory has values
    config = write_config(tmp_path / "t.yaml", upstream.url, edit=lambda d: d.update(sources={
        "brightsky": {**d["sources"]["brightsky"], "every": "1s", "jitter": "0s", "max_age": "2h"}}))
    now = datetime.now(UTC).replace(microsecond=0)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "state.json").write_text(json.dumps({"version": 1, "saved_at": now.isoformat(), "entities": {
        "soest_brightsky_temperature": ["21.5", 21.5, (now - timedelta(hours=1)).isoformat(), None],
        "soest_brightsky_humidity": ["55", 55.0, (now - timedelta(hours=2, seconds=5)).isoformat(), None],
    }}))
    ends = (now - timedelta(hours=1)).timestamp() + 7200
    proc = gateway(config, broker.port, "5")
    try:
        wait_until(lambda: TEMPERATURE in retained(broker.port), 15, interval=0.2)
        payload, expiry = read_retained(broker.port, TEMPERATURE)
        assert payload == b"21.5"
        assert expiry is not None
        assert abs(expiry - (ends - time.time())) <= 2, expiry
        assert "soest/brightsky/humidity" not in retained(broker.port)  # stale: not put back
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
def test_expired_values_stay_cleared_after_a_broker_restart(tmp_path: Path, upstream, persistence: bool):
    broker = Mosquitto(tmp_path, persistence=persistence).start()
    config = short_lived(tmp_path / "t.yaml", upstream)
    proc = gateway(config, broker.port, "3.1.1")
    try:
        sub = TimedSubscriber(broker.port, "soest/brightsky/#")
        sub.wait_for(TEMPERATURE, "24.3")
        if persistence:
            # A snapshot of the broker that still holds the fresh values (Mosquitto saves on SIGTERM).
            broker.stop()
            broker.start()
            wait_until(lambda: retained(broker.port, TEMPERATURE) == {TEMPERATURE: b"24.3"}, 10, interval=0.3)
            sub.close()
            sub = TimedSubscriber(broker.port, "soest/brightsky/#")
        kill_upstream(upstream)
        sub.wait_for(TEMPERATURE, b"", timeout=MAX_AGE + EXPIRE_AFTER + LATE + 5)
        sub.wait_for(f"{TEMPERATURE}/attributes", b"", timeout=5)
        sub.close()
        broker.stop(kill=True)  # with persistence: the cleared values come back from the old snapshot
        if persistence:
            # The same snapshot, seen by a broker the gateway does not know: the stale copy is real.
            other = Mosquitto(tmp_path, persistence=True).start()
            try:
                assert retained(other.port, TEMPERATURE) == {TEMPERATURE: b"24.3"}
            finally:
                other.stop(kill=True)
        broker.start()
        sub = TimedSubscriber(broker.port, "soest/gateway/status")
        sub.wait_for("soest/gateway/status", "online", timeout=10)
        sub.close()
        # The outbox went out again (the source's status), the expired values did not come back.
        wait_until(lambda: (tree := retained(broker.port)).get("soest/brightsky/status") == b"offline"
                   and not {TEMPERATURE, f"{TEMPERATURE}/attributes"} & set(tree), 10, interval=0.3)
        wait_until(lambda: "expired retained values again (MQTT 3.1.1)" in proc.log, 10)
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()
        broker.stop()


# --------------------------------------------------------------------------- both protocols, one moment

BOTH_MAX_AGE = 10
AGE = 3  # the observation's age when upstream starts serving it


class PropertySubscriber(Subscriber):
    """An MQTT 5 subscriber that keeps the Message Expiry Interval each message arrived with."""

    def __init__(self, port: int, *filters: str) -> None:
        self.expiry: dict[str, int | None] = {}
        super().__init__(port, *filters)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.expiry[msg.topic] = getattr(msg.properties, "MessageExpiryInterval", None)
        super()._on_message(client, userdata, msg)


def read_retained(port: int, topic: str) -> tuple[bytes, int | None] | None:
    """What a plain MQTT 5 subscriber that connects now gets on ``topic``: payload and message expiry."""
    sub = PropertySubscriber(port, topic)
    try:
        sub.sync()
        got = [m for m in sub.snapshot() if m.topic == topic and m.retain and m.payload]
        return (got[-1].payload, sub.expiry[topic]) if got else None
    finally:
        sub.close()


def test_both_protocols_drop_a_value_when_its_observation_turns_stale(tmp_path: Path, upstream):
    """Issue #17: the same stale moment, observed_at + max_age, for every subscriber and protocol.

    Upstream keeps serving one observation, so heartbeats re-send an unchanged value: each carries
    what is left of its life (MQTT 5), and the gateway's clear comes at the same moment (3.1.1).
    """
    upstream.serve("/current_weather", {"detail": "not yet"}, status=503)

    def edit(data: dict[str, Any]) -> None:
        data["sources"] = {k: v for k, v in data["sources"].items() if k == "brightsky"}
        data["sources"]["brightsky"].update(every="1s", jitter="0s", max_age=f"{BOTH_MAX_AGE}s")
        data["mqtt"]["heartbeat"] = f"{HEARTBEAT}s"

    sides: dict[str, tuple[Mosquitto, GatewayProcess]] = {}
    try:
        for protocol in ("5", "3.1.1"):
            workdir = tmp_path / protocol
            workdir.mkdir()
            broker = Mosquitto(workdir).start()
            sides[protocol] = broker, gateway(write_config(workdir / "t.yaml", upstream.url, edit=edit),
                                              broker.port, protocol)
        for broker, _ in sides.values():
            wait_until(lambda b=broker: retained(b.port, "soest/gateway/status").get("soest/gateway/status")
                       == b"online", 20, interval=0.2)
        observed = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=AGE)
        ends = observed.timestamp() + BOTH_MAX_AGE
        upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json", observed))
        vanished: dict[str, float] = {}
        seen: dict[str, list[tuple[float, bytes, int | None]]] = {p: [] for p in sides}
        lock = threading.Lock()

        def watch(protocol: str, port: int) -> None:
            """Retained reads until the value is gone, each noting when it was made."""
            while time.time() < ends + 10:
                at = time.time()
                got = read_retained(port, TEMPERATURE)
                with lock:
                    if got is None and seen[protocol]:
                        vanished[protocol] = at
                        return
                    if got is not None:
                        seen[protocol].append((at, *got))
                time.sleep(0.1)

        watchers = [threading.Thread(target=watch, args=(p, b.port)) for p, (b, _) in sides.items()]
        for thread in watchers:
            thread.start()
        for thread in watchers:
            thread.join(30)
        for protocol in sides:
            assert seen[protocol], f"MQTT {protocol}: the value never arrived"
            assert protocol in vanished, f"MQTT {protocol}: the value never left the broker"
            # Gone within a second or two of going stale; never before.
            assert ends - EARLY <= vanished[protocol] <= ends + 1 + LATE, (protocol, vanished[protocol] - ends)
        # A read before the moment found the value: over MQTT 5 with its remaining life as message
        # expiry, however recently a heartbeat re-sent it; MQTT 3.1.1 carries no expiry.
        assert seen["5"][-1][0] >= ends - 2, "no read close before the moment"
        for at, payload, expiry in seen["5"]:
            assert payload == b"24.3"
            assert expiry is not None
            assert abs(expiry - (ends - at)) <= 1.5, (expiry, ends - at)
        assert {(payload, expiry) for _, payload, expiry in seen["3.1.1"]} == {(b"24.3", None)}
        assert abs(vanished["5"] - vanished["3.1.1"]) <= 1 + LATE
        # And it stays gone, though upstream still serves the same (now stale) observation.
        time.sleep(max(0.0, vanished["5"] + 2.5 - time.time()))
        for protocol, (broker, proc) in sides.items():
            assert read_retained(broker.port, TEMPERATURE) is None, protocol
            assert read_retained(broker.port, f"{TEMPERATURE}/attributes") is None, protocol
            assert retained(broker.port, "soest/brightsky/status")["soest/brightsky/status"] == b"offline"
            assert "Traceback" not in proc.log
        # Home Assistant's expire_after stays max(max_age, 2 × heartbeat), counted from each publish.
        config = json.loads(retained(sides["5"][0].port, "homeassistant/#")[
            "homeassistant/sensor/soest/soest_brightsky_temperature/config"])
        assert config["expire_after"] == max(BOTH_MAX_AGE, 2 * HEARTBEAT)
    finally:
        for broker, proc in sides.values():
            proc.terminate()
            broker.stop()
