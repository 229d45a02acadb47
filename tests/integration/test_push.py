"""SensorThings push: a second Mosquitto plays the FROST server's MQTT side, the fixture server its REST side.

The gateway polls the Thing once (values, Datastream ids), subscribes to
``v1.1/Datastreams(<id>)/Observations`` on the upstream broker, and publishes each pushed
Observation through the same pipeline; what a real subscriber on our broker receives is checked.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tests.frost import (
    ILLUMINANCE,
    KEY,
    TEMPERATURE,
    UP_ILLUMINANCE,
    UP_TEMPERATURE,
    RestSide,
    observation,
    push_config,
    stamp,
)
from tests.helpers import (
    TEST_CERTS,
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    free_port,
    publish,
    wait_until,
)

pytestmark = pytest.mark.broker

def scraper(http_port: int) -> Callable[[], str]:
    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    return scrape


def metric(text: str, name: str, **labels: str) -> float | None:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if m and m[1] == name and ",".join(sorted(m[2].split(","))) == inner:
            return float(m[3])
    return None


@pytest.fixture
def up_broker(tmp_path: Path):
    workdir = tmp_path / "upstream-broker"
    workdir.mkdir()
    mosq = Mosquitto(workdir).start()
    yield mosq
    mosq.stop()


def test_pushed_observations_are_published_within_the_pipeline_and_garbage_is_dropped(
        tmp_path: Path, broker: Mosquitto, up_broker: Mosquitto, upstream: FixtureServer):
    rest = RestSide(upstream)
    http_port = free_port()
    proc = GatewayProcess(push_config(tmp_path / "t.yaml", upstream, up_broker.port), broker.port,
                          env={"GATEWAY_HTTP_PORT": str(http_port)})
    scrape = scraper(http_port)
    sub = Subscriber(broker.port, f"soest/{KEY}/#", live=True)
    try:
        sub.wait_for(TEMPERATURE, "23.8", timeout=15)
        wait_until(lambda: metric(scrape(), "gateway_push_connected", source=KEY) == 1.0, 15)
        wait_until(lambda: rest.polls() >= 2, 10)  # the poll that fills the gap after subscribing
        mark = sub.mark()

        t1 = datetime.now(UTC) - timedelta(seconds=5)
        publish(up_broker.port, UP_TEMPERATURE, observation(1001, t1, 24.1))
        got = sub.wait_for(TEMPERATURE, "24.1", after=mark)
        assert (got.retain, got.qos) == (True, 1)
        attrs = sub.wait_for(f"{TEMPERATURE}/attributes", after=mark).json()
        assert abs(datetime.fromisoformat(attrs["observed_at"]) - t1) < timedelta(seconds=1)
        assert attrs["datastream_id"] == "43"
        assert attrs["station"]["name"] == "Sensorbox 37"  # from the poll: a push carries no Thing

        garbage = [
            b"not json", b"[1, 2]", b'{"@iot.id": 1}',
            json.dumps({"@iot.id": 1002, "result": 30.0}).encode(),  # no phenomenonTime
            json.dumps({"@iot.id": 1003, "phenomenonTime": "2026-01-01T10:00", "result": 30.0}).encode(),  # no offset
            json.dumps({"@iot.id": 1004, "phenomenonTime": stamp(t1 + timedelta(seconds=1))}).encode(),  # no result
            observation(1005, t1 + timedelta(seconds=1), 30.0)[:-1] + b" " * 17_000 + b"}",  # over max_payload
            observation(1001, t1 + timedelta(seconds=2), 31.0),  # the same @iot.id again
            observation(1006, t1, 32.0),  # the same phenomenonTime again
            observation(1007, t1 - timedelta(minutes=30), 10.0),  # older than what was published
        ]
        for payload in garbage:
            publish(up_broker.port, UP_TEMPERATURE, payload)
        publish(up_broker.port, UP_TEMPERATURE, observation(1008, t1 + timedelta(seconds=3), 99.0))  # implausible
        publish(up_broker.port, UP_ILLUMINANCE, observation(1009, t1 + timedelta(seconds=3), 51000.0, 42))
        publish(up_broker.port, UP_TEMPERATURE, observation(1010, t1 + timedelta(seconds=4), 24.5))
        sub.wait_for(TEMPERATURE, "24.5", after=mark)
        # In order on one connection: everything before the last message has been handled.
        assert [m.text for m in sub.snapshot()[mark:] if m.topic == TEMPERATURE] == ["24.1", "24.5"]
        assert sub.wait_for(ILLUMINANCE, "51000", after=mark).retain

        text = wait_until(lambda: (t := scrape()) and metric(
            t, "gateway_push_dropped_total", source=KEY, reason="out_of_order") == 1.0 and t, 10)
        assert metric(text, "gateway_push_dropped_total", source=KEY, reason="malformed") == 6.0
        assert metric(text, "gateway_push_dropped_total", source=KEY, reason="too_large") == 1.0
        assert metric(text, "gateway_push_dropped_total", source=KEY, reason="duplicate") == 2.0
        assert metric(text, "gateway_push_messages_total", source=KEY) == 14.0
        assert metric(text, "gateway_rejected_readings_total", source=KEY, entity="temperature",
                      reason="above_range") == 1.0
        assert rest.polls() == 2  # pushes cost no requests
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        proc.terminate()


def push_state(http_port: int) -> dict:
    """The push link as /api/status (and so the status page) shows it."""
    doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/status", timeout=5).read())
    return doc["sources"][KEY]["push"]


def test_upstream_broker_restart_resubscribes_polls_the_gap_and_shows_in_availability(
        tmp_path: Path, broker: Mosquitto, up_broker: Mosquitto, upstream: FixtureServer):
    rest = RestSide(upstream)
    http_port = free_port()
    proc = GatewayProcess(push_config(tmp_path / "t.yaml", upstream, up_broker.port), broker.port,
                          env={"GATEWAY_HTTP_PORT": str(http_port)})
    scrape = scraper(http_port)
    sub = Subscriber(broker.port, f"soest/{KEY}/#", live=True)
    status = f"soest/{KEY}/status"
    try:
        sub.wait_for(status, "online", timeout=15)
        wait_until(lambda: metric(scrape(), "gateway_push_connected", source=KEY) == 1.0, 15)
        wait_until(lambda: rest.polls() >= 2, 10)
        polls = rest.polls()
        assert push_state(http_port) == {"host": "127.0.0.1", "running": True, "up": True, "topics": 2, "why": None}

        up_broker.stop()
        # An Observation the server stored while its broker was away: only the REST poll can bring it.
        rest.newest[43] = (600, datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10), 25.2)
        mark = sub.mark()
        down = sub.wait_for(status, "offline", timeout=10, after=mark)  # offline_after 1 s
        assert (down.retain, down.qos) == (True, 1)
        assert metric(scrape(), "gateway_push_connected", source=KEY) == 0.0
        assert rest.polls() == polls  # no polling storm while the upstream broker is away
        state = push_state(http_port)
        assert (state["up"], state["topics"]) == (False, 2)
        assert state["why"]  # the failure, as the log says it

        up_broker.start()  # same port
        got = sub.wait_for(TEMPERATURE, "25.2", timeout=15, after=mark)
        assert (got.retain, got.qos) == (True, 1)
        sub.wait_for(status, "online", timeout=10, after=mark)
        assert rest.polls() == polls + 1
        wait_until(lambda: metric(scrape(), "gateway_push_connected", source=KEY) == 1.0, 10)

        mark = sub.mark()
        publish(up_broker.port, UP_TEMPERATURE, observation(601, datetime.now(UTC) - timedelta(seconds=1), 25.3))
        assert sub.wait_for(TEMPERATURE, "25.3", after=mark).retain
        assert "push link down" in proc.log
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        proc.terminate()


def test_over_mqtt5_the_upstream_broker_is_told_our_packet_limit(
        tmp_path: Path, broker: Mosquitto, up_broker: Mosquitto, upstream: FixtureServer):
    rest = RestSide(upstream)
    http_port = free_port()
    proc = GatewayProcess(push_config(tmp_path / "t.yaml", upstream, up_broker.port, protocol="5", max_payload=4096),
                          broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    scrape = scraper(http_port)
    sub = Subscriber(broker.port, f"soest/{KEY}/#", live=True)
    try:
        sub.wait_for(TEMPERATURE, "23.8", timeout=15)
        wait_until(lambda: metric(scrape(), "gateway_push_connected", source=KEY) == 1.0, 15)
        wait_until(lambda: rest.polls() >= 2, 10)
        mark = sub.mark()
        at = datetime.now(UTC) - timedelta(seconds=5)
        padded = observation(700, at, 30.0)[:-1] + b" " * 4_500 + b"}"  # over max_payload, under the packet limit
        publish(up_broker.port, UP_TEMPERATURE, padded)
        publish(up_broker.port, UP_TEMPERATURE, observation(701, at, 31.0)[:-1] + b" " * 1_000_000 + b"}")
        publish(up_broker.port, UP_TEMPERATURE, observation(702, at, 24.2))
        got = sub.wait_for(TEMPERATURE, "24.2", after=mark)
        assert (got.retain, got.qos) == (True, 1)
        assert [m.text for m in sub.snapshot()[mark:] if m.topic == TEMPERATURE] == ["24.2"]
        text = scrape()
        assert metric(text, "gateway_push_dropped_total", source=KEY, reason="too_large") == 1.0
        assert metric(text, "gateway_push_messages_total", source=KEY) == 2.0  # the megabyte never reached us
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        proc.terminate()


@pytest.mark.parametrize("password", ["frost-pw", "not-the-pw-7x"])
def test_tls_and_a_password_from_the_environment(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer,
                                                 password: str):
    workdir = tmp_path / "upstream-broker"
    workdir.mkdir()
    tls_port = free_port()
    up = Mosquitto(workdir, users={"frost": "frost-pw"}, extra=[
        "allow_anonymous false", f"password_file {workdir / 'passwd'}", f"listener {tls_port} 127.0.0.1",
        f"certfile {TEST_CERTS / 'server.crt'}", f"keyfile {TEST_CERTS / 'server.key'}"]).start()
    rest = RestSide(upstream)
    http_port = free_port()
    config = push_config(tmp_path / "t.yaml", upstream, tls_port, host="localhost", tls=True,
                         ca_file=str(TEST_CERTS / "ca.crt"), username="frost", password_env="FROST_TEST_PASSWORD")
    proc = GatewayProcess(config, broker.port,
                          env={"GATEWAY_HTTP_PORT": str(http_port), "FROST_TEST_PASSWORD": password})
    scrape = scraper(http_port)
    sub = Subscriber(broker.port, f"soest/{KEY}/#", live=True)
    status = f"soest/{KEY}/status"
    try:
        sub.wait_for(TEMPERATURE, "23.8", timeout=15)
        if password != "frost-pw":
            # The poll works, the push link cannot: offline after offline_after (1 s), and it stays so.
            sub.wait_for(status, "offline", timeout=10)
            assert metric(scrape(), "gateway_push_connected", source=KEY) == 0.0
            assert rest.polls() == 1
            assert password not in proc.log
            return
        wait_until(lambda: metric(scrape(), "gateway_push_connected", source=KEY) == 1.0, 15)
        mark = sub.mark()
        publish(up.port, UP_TEMPERATURE, observation(800, datetime.now(UTC) - timedelta(seconds=1), 22.7),
                username="frost", password="frost-pw")
        assert sub.wait_for(TEMPERATURE, "22.7", after=mark).retain
        assert sub.latest()[status].text == "online"
        assert "frost-pw" not in proc.log
    finally:
        sub.close()
        proc.terminate()
        up.stop()


def test_only_the_active_of_two_standbys_is_subscribed_and_the_other_takes_over(
        tmp_path: Path, broker: Mosquitto, up_broker: Mosquitto, upstream: FixtureServer):
    rest = RestSide(upstream)
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        path = push_config(tmp_path / name / "topics.yaml", upstream, up_broker.port)
        data = yaml.safe_load(path.read_text())
        data["mqtt"]["lease"] = "3s"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
        configs.append(path)
    ports = free_port(), free_port()
    sub = Subscriber(broker.port, f"soest/{KEY}/#", live=True)
    active = GatewayProcess(configs[0], broker.port, args=["--standby"], env={"GATEWAY_HTTP_PORT": str(ports[0])})
    standby: GatewayProcess | None = None
    try:
        wait_until(lambda: metric(scraper(ports[0])(), "gateway_push_connected", source=KEY) == 1.0, 20)
        standby = GatewayProcess(configs[1], broker.port, args=["--standby"], env={"GATEWAY_HTTP_PORT": str(ports[1])})
        wait_until(lambda: "standby: instance" in standby.log and " is active" in standby.log, 15)
        assert metric(scraper(ports[1])(), "gateway_push_connected", source=KEY) == 0.0  # never subscribed
        polls = rest.polls()

        mark = sub.mark()
        publish(up_broker.port, UP_TEMPERATURE, observation(900, datetime.now(UTC) - timedelta(seconds=20), 21.1))
        assert sub.wait_for(TEMPERATURE, "21.1", after=mark).retain
        assert rest.polls() == polls  # the standby does not poll either

        active.kill()
        wait_until(lambda: metric(scraper(ports[1])(), "gateway_push_connected", source=KEY) == 1.0, 20)
        mark = sub.mark()
        publish(up_broker.port, UP_TEMPERATURE, observation(901, datetime.now(UTC) - timedelta(seconds=1), 21.4))
        got = sub.wait_for(TEMPERATURE, "21.4", after=mark)
        assert (got.retain, got.qos) == (True, 1)
        assert "Traceback" not in standby.log
    finally:
        sub.close()
        if active.proc.poll() is None:
            active.terminate()
        if standby is not None:
            standby.terminate()
