"""The resident's bridge of docs/deployment.md, run as written against the city broker's own config.

The bridge block is read out of the docs, so the test fails when the docs drift; only the values
that cannot be the same on this machine are replaced (``bridge_for_test``), and the city broker is
the project's mosquitto.conf and acl with the test certificates.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import (
    FILTERS,
    ROOT,
    TEST_CERTS,
    GatewayProcess,
    Mosquitto,
    Msg,
    Subscriber,
    barrier,
    expected_tree,
    publish,
    retained_tree,
    wait_until,
    write_config,
)
from tests.sources import serve_default_sources

pytestmark = pytest.mark.broker

USERS = {"gateway": "gw-Secret-42", "alice": "alice-pw", "bob": "bob-pw"}
RESIDENT = ("alice", "alice-pw")
GATEWAY = ("gateway", USERS["gateway"])
SECTION = "## Bridging the city broker into a home broker"
# The docs' retry delay (10 s, backing off to 120 s) would make the restart test wait that long for
# the bridge; docs/deployment.md says this value is tuned here.
TEST_RESTART_TIMEOUT = "1 2"


def documented_bridge() -> list[str]:
    """The bridge config of the docs' section, without comments and blank lines."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    assert SECTION in text, f"docs/deployment.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", section, re.S | re.M)
    assert blocks, "the bridge section has no config block"
    lines = [line.strip() for line in blocks[0].splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ca_directory(where: Path) -> Path:
    """A --capath style directory holding the test CA, as /etc/ssl/certs holds the public CAs."""
    where.mkdir()
    digest = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(TEST_CERTS / "ca.crt")],
                            check=True, capture_output=True, text=True).stdout.strip()
    (where / f"{digest}.0").symlink_to(TEST_CERTS / "ca.crt")
    return where


def bridge_for_test(lines: list[str], city_tls_port: int, capath: Path) -> list[str]:
    """The documented bridge with only this machine's host, port, CA, credentials and retry delay."""
    substitutions = {
        "address": f"localhost:{city_tls_port}",  # the test certificate is for localhost
        "bridge_capath": str(capath),
        "remote_username": RESIDENT[0],
        "remote_password": RESIDENT[1],
        "restart_timeout": TEST_RESTART_TIMEOUT,
    }
    out = []
    for line in lines:
        key = line.split(None, 1)[0]
        if key in substitutions:
            line = f"{key} {substitutions.pop(key)}"
        out.append(line)
    assert not substitutions, f"the documented bridge no longer sets {sorted(substitutions)}"
    return out


@dataclass
class City:
    broker: Mosquitto
    resident: Mosquitto
    gateway: GatewayProcess
    expected: set[str]
    served: dict[str, str]


@pytest.fixture
def city(tmp_path: Path, upstream) -> Iterator[City]:
    served = serve_default_sources(upstream, upstream.url)
    config = write_config(tmp_path / "topics.yaml", upstream.url)
    (tmp_path / "city").mkdir()
    (tmp_path / "home").mkdir()
    # mosquitto.conf persists retained messages, and so does the city broker here: its restart
    # must come back with the tree, as a real one does.
    broker = Mosquitto(tmp_path / "city", "mosquitto.conf", users=USERS, persistence=True).start()
    gateway = GatewayProcess(config, broker.port, env={"GATEWAY_MQTT_USERNAME": GATEWAY[0],
                                                        "GATEWAY_MQTT_PASSWORD": GATEWAY[1]})
    bridge = bridge_for_test(documented_bridge(), broker.ports[8883], ca_directory(tmp_path / "cas"))
    # A home broker as the docs describe it: local.conf (anonymous on loopback, a large queue).
    resident = Mosquitto(tmp_path / "home", "local.conf", extra=bridge).start()
    try:
        yield City(broker, resident, gateway, expected_tree(config, served), served)
    finally:
        gateway.terminate()
        resident.stop()
        broker.stop()
    assert "Traceback" not in gateway.log


def city_tree(port: int) -> dict[str, bytes]:
    """The city broker's retained tree as a resident sees it (``retained_tree`` needs write access)."""
    sub = Subscriber(port, *FILTERS, username="bob", password=USERS["bob"])
    try:
        end = barrier(sub, port, *GATEWAY)
        return {m.topic: m.payload for m in sub.snapshot()[:end] if m.retain}
    finally:
        sub.close()


def expiry_of(port: int, topic: str, username: str | None = None, password: str | None = None) -> int | None:
    """The MQTT 5 message expiry left on a retained message (``Subscriber`` keeps no properties)."""
    got: list[int | None] = []
    arrived = threading.Event()

    def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        got.append(getattr(msg.properties, "MessageExpiryInterval", None))
        arrived.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert arrived.wait(5), f"no retained message on {topic}"
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0]


def test_resident_broker_gets_the_whole_retained_tree(city: City):
    tree = retained_tree(city.resident.port, city.expected)  # every message with its retain flag set
    assert set(tree) == city.expected
    for topic, value in city.served.items():
        assert tree[topic].decode() == value, topic
    assert tree["soest/gateway/status"] == b"online"
    assert tree["soest/sun/status"] == b"online"
    # The same payloads as on the city broker itself (the sun recomputes only once a minute).
    assert city_tree(city.broker.port) == tree
    # The message expiry crosses the bridge: a value nobody refreshes vanishes at home as well.
    at_city = expiry_of(city.broker.port, "soest/brightsky/temperature", "bob", USERS["bob"])
    at_home = expiry_of(city.resident.port, "soest/brightsky/temperature")
    assert at_city is not None
    assert at_home is not None
    assert 0 < at_home <= at_city


def test_resident_keeps_the_tree_through_a_city_restart(city: City):
    try:
        before = retained_tree(city.resident.port, city.expected)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the gateway's log:\n{city.gateway.log[-4000:]}") from None
    # The home broker's own notice (notifications_local_only): "1" each time the bridge connects.
    bridge_state = "$SYS/broker/connection/alice-home-bridge/state"
    live = Subscriber(city.resident.port, *FILTERS, bridge_state, live=True)
    live.wait_for(bridge_state, "1")
    seen_fetches = {m.payload for m in live.on("soest/sun/last_fetch")} | {before["soest/sun/last_fetch"]}

    city.broker.stop()  # SIGTERM, as systemd stops it: the broker saves its retained store and exits
    during = retained_tree(city.resident.port, city.expected)  # a fresh subscriber at home, city down
    assert set(during) == set(before)
    # The city broker sends its clients' Last Wills as it shuts down, and the bridge, still
    # connected then, usually carries the gateway's "offline" home: the values stay, marked stale.
    assert during["soest/gateway/status"] in (b"online", b"offline")
    assert {t: p for t, p in during.items() if t != "soest/gateway/status"} == \
        {t: p for t, p in before.items() if t != "soest/gateway/status"}

    city.broker.start()  # same port, same persistence file
    mark = live.mark()
    live.wait_for(bridge_state, "1", timeout=15, after=mark)  # reconnected after restart_timeout

    # A value the gateway publishes only after the restart must come through the bridge: a refresh
    # press runs the sun again. A press before the gateway has resubscribed is lost, so press again
    # (the gateway ignores presses less than 2 s apart).
    def new_fetch() -> Msg | None:
        return next((m for m in live.snapshot()[mark:]
                     if m.topic == "soest/sun/last_fetch" and m.payload not in seen_fetches), None)

    fresh = None
    for _ in range(6):
        publish(city.broker.port, "soest/gateway/refresh", "PRESS", username=GATEWAY[0], password=GATEWAY[1])
        try:
            fresh = wait_until(new_fetch, timeout=2.5)
            break
        except AssertionError:
            continue
    assert fresh is not None, "no value published after the city broker's restart reached the home broker"
    assert fresh.retain  # retained as published (bridge_protocol_version mqttv50)
    assert fresh.qos == 1
    live.close()
    after = retained_tree(city.resident.port, city.expected)
    assert after["soest/sun/last_fetch"] == fresh.payload
    assert after["soest/gateway/status"] == b"online"


def test_nothing_a_resident_publishes_reaches_the_city(city: City):
    for line in documented_bridge():
        if line.startswith("topic "):
            assert line.split()[2] == "in", f"the documented bridge sends home data out: {line!r}"
    retained_tree(city.resident.port, city.expected)
    watcher = Subscriber(city.broker.port, "#", username="bob", password=USERS["bob"])
    start = barrier(watcher, city.broker.port, *GATEWAY) + 1
    home = Subscriber(city.resident.port, *FILTERS, live=True)
    spoofed = {"soest/brightsky/temperature": True, "soest/gateway/refresh": False,
               "homeassistant/sensor/soest/soest_fake/config": True, "soest/new/topic": False}
    for topic, retain in spoofed.items():
        publish(city.resident.port, topic, "from-home", retain=retain)
    for topic in spoofed:
        home.wait_for(topic, "from-home")  # the home broker has taken every one of them
    # A marker published at the city after that: had the bridge carried the home's messages out,
    # they would have been at the city broker first.
    end = barrier(watcher, city.broker.port, *GATEWAY)
    assert [m.topic for m in watcher.snapshot()[start:end]] == []
    watcher.close()
    home.close()
    tree = city_tree(city.broker.port)
    assert tree["soest/brightsky/temperature"] == city.served["soest/brightsky/temperature"].encode()
    assert "homeassistant/sensor/soest/soest_fake/config" not in tree
