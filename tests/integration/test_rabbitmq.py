"""RabbitMQ 3.10 with its MQTT plugin: documented as unsupported, and the gateway says why (issue #11).

It speaks no MQTT 5 (it closes the connection before CONNACK) and delivers no retained messages
to wildcard subscriptions, so the gateway cannot read back its own discovery configs. What a
user meets is checked from outside: the log lines, the exit code and message of ``purge``, and
what a subscriber of one exact topic receives. Skipped where RabbitMQ is not installed (it is not
one of the brokers the README's set-up installs).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.helpers import ROOT, FixtureServer, GatewayProcess, Subscriber, brightsky_config, wait_until
from tests.rabbitmq import RabbitMq, rabbitmq_installed

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMq]:
    if not rabbitmq_installed():
        pytest.skip("RabbitMQ is not installed (apt-get install rabbitmq-server)")
    node = RabbitMq(tmp_path_factory.mktemp("rabbitmq")).start()
    yield node
    node.stop()


def test_purge_refuses_with_one_line(rabbitmq: RabbitMq, tmp_path: Path, upstream: FixtureServer):
    config = brightsky_config(tmp_path / "topics.yaml", upstream)
    env = {"GATEWAY_MQTT_HOST": "127.0.0.1", "GATEWAY_MQTT_PORT": str(rabbitmq.port),
           "GATEWAY_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), "purge"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: the broker does not deliver retained messages to wildcard subscriptions "
                      "(RabbitMQ does not; such brokers are not supported); nothing removed"]
    assert "Traceback" not in done.stderr


def test_the_gateway_falls_back_to_3_1_1_and_warns(rabbitmq: RabbitMq, tmp_path: Path, upstream: FixtureServer):
    config = brightsky_config(tmp_path / "topics.yaml", upstream)
    # An exact-topic subscription is what RabbitMQ does deliver retained messages to.
    proc = GatewayProcess(config, rabbitmq.port)
    try:
        wait_until(lambda: "connected to MQTT broker" in proc.log, 30)
        assert f"MQTT broker 127.0.0.1:{rabbitmq.port} closed the connection before answering CONNECT (MQTT 5); " \
               "trying MQTT 3.1.1" in proc.log
        assert f"connected to MQTT broker 127.0.0.1:{rabbitmq.port} (MQTT 3.1.1)" in proc.log
        wait_until(lambda: "could not read the broker's retained discovery configs" in proc.log, 30)
        assert "does not deliver retained messages to wildcard subscriptions" in proc.log
        topic = "soest/brightsky/temperature"
        live = Subscriber(rabbitmq.port, topic, protocol=paho.MQTTv311)
        try:
            live.wait_for(topic, "24.3", timeout=15)
        finally:
            live.close()
        fresh = Subscriber(rabbitmq.port, topic, protocol=paho.MQTTv311)
        try:  # the values are retained, for a subscriber who names the exact topic
            assert fresh.wait_for(topic, "24.3", timeout=10).retain
        finally:
            fresh.close()
    finally:
        proc.terminate()
    assert "Traceback" not in proc.log
