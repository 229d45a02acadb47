"""The shipped broker config (mosquitto/mosquitto.conf, acl): only the gateway writes city data."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import (
    TEST_CERTS,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    barrier,
    fresh_fixture,
    publish,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]

USERS = {"gateway": "gw-Secret-42", "alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture
def city_broker(tmp_path: Path):
    mosq = Mosquitto(tmp_path, "mosquitto.conf", users=USERS).start()
    yield mosq
    mosq.stop()


def connect_result(port: int, username: str | None, password: str | None) -> str:
    outcome: list[str] = []
    done = threading.Event()

    def on_connect(client, userdata, flags, reason, properties):
        outcome.append(str(reason))
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return outcome[0] if outcome else "no answer"


def test_wrong_password_and_anonymous_are_refused(city_broker: Mosquitto):
    assert connect_result(city_broker.port, "alice", "alice-pw") == "Success"
    assert connect_result(city_broker.port, "alice", "wrong") in ("Bad user name or password", "Not authorized")
    assert connect_result(city_broker.port, None, None) in ("Bad user name or password", "Not authorized")


def test_residents_cannot_publish_city_data(city_broker: Mosquitto):
    port = city_broker.port
    watcher = Subscriber(port, "soest/#", "homeassistant/#", username="bob", password="bob-pw")
    for topic in ("soest/brightsky/temperature", "soest/gateway/status",
                  "homeassistant/sensor/soest/soest_fake/config"):
        publish(port, topic, "spoofed", retain=True, username="alice", password="alice-pw")
    # The gateway's own publish travels the same path; once it has arrived, alice's would have too.
    publish(port, "soest/gateway/marker", "from-gateway", username="gateway", password=USERS["gateway"])
    watcher.wait_for("soest/gateway/marker", "from-gateway")
    assert [m.topic for m in watcher.snapshot()] == ["soest/gateway/marker"]
    watcher.close()
    # Nor did anything get retained.
    late = Subscriber(port, "#", username="bob", password="bob-pw")
    # The retained store goes to a new subscription before anything published after it.
    end = barrier(late, port, username="gateway", password=USERS["gateway"])
    assert late.snapshot()[:end] == []
    late.close()


def test_gateway_over_tls_with_the_shipped_test_ca(tmp_path: Path, city_broker: Mosquitto, upstream):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    cfg = write_config(tmp_path / "t.yaml", upstream.url)
    tls_port = city_broker.ports[8883]
    proc = GatewayProcess(cfg, tls_port, env={
        "GATEWAY_MQTT_USERNAME": "gateway", "GATEWAY_MQTT_PASSWORD": USERS["gateway"],
        "GATEWAY_MQTT_TLS_CA": str(TEST_CERTS / "ca.crt"), "GATEWAY_MQTT_HOST": "localhost"})
    try:
        reader = Subscriber(tls_port, "soest/#", username="alice", password="alice-pw", ca=TEST_CERTS / "ca.crt")
        reader.wait_for("soest/brightsky/temperature", "24.3", timeout=15)
        reader.close()
        # Residents' browsers use secure websockets on the third listener.
        ws = Subscriber(city_broker.ports[8884], "soest/brightsky/temperature", username="bob", password="bob-pw",
                        ca=TEST_CERTS / "ca.crt", transport="websockets")
        assert ws.wait_for("soest/brightsky/temperature", "24.3").retain
        ws.close()
    finally:
        proc.terminate()
    assert USERS["gateway"] not in proc.log  # the password is never logged, not even at debug level


def test_gateway_refuses_a_certificate_from_another_ca(tmp_path: Path, upstream):
    rogue = Mosquitto(tmp_path, "mosquitto.conf", users=USERS, server_cert="rogue-server").start()
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    cfg = write_config(tmp_path / "t.yaml", upstream.url)
    env = {"GATEWAY_MQTT_USERNAME": "gateway", "GATEWAY_MQTT_PASSWORD": USERS["gateway"],
           "GATEWAY_MQTT_TLS_CA": str(TEST_CERTS / "ca.crt"), "GATEWAY_MQTT_HOST": "localhost"}
    try:
        watcher = Subscriber(rogue.port, "soest/#", username="bob", password="bob-pw")
        proc = GatewayProcess(cfg, rogue.ports[8883], env=env)
        try:
            # Two refused attempts: it survived the first and keeps retrying, it does not crash.
            wait_until(lambda: proc.log.count("certificate not trusted") >= 2, 15)
            assert proc.proc.poll() is None
            end = barrier(watcher, rogue.port, username="gateway", password=USERS["gateway"])
            assert watcher.snapshot()[:end] == []
        finally:
            proc.terminate()
        # Only an explicit GATEWAY_MQTT_TLS_INSECURE lets it through.
        proc = GatewayProcess(cfg, rogue.ports[8883], env={**env, "GATEWAY_MQTT_TLS_INSECURE": "true"})
        try:
            watcher.wait_for("soest/brightsky/temperature", "24.3", timeout=15)
        finally:
            proc.terminate()
        watcher.close()
    finally:
        rogue.stop()
