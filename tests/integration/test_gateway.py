"""End to end: fixture upstream → gateway process → real Mosquitto → a real subscriber."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters import ADAPTERS
from gateway import catalog, contract, discovery
from gateway.config import load
from tests import ha_rules
from tests.helpers import (
    FILTERS,
    FIXTURES,
    ROOT,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    barrier,
    expected_tree,
    free_port,
    fresh_fixture,
    publish,
    retained_tree,
    wait_until,
    write_config,
)
from tests.sources import serve_default_sources

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]

@pytest.fixture
def served(upstream) -> dict[str, str]:
    """Every enabled source of the default config, served by the fixture server."""
    return serve_default_sources(upstream, upstream.url)


@pytest.fixture
def config(tmp_path: Path, upstream, served) -> Path:
    return write_config(tmp_path / "topics.yaml", upstream.url)


def publishable(config: Path, served: dict[str, str]) -> set[str]:
    """The whole retained tree when every source is served: all values the fixtures give."""
    return expected_tree(config, served)


@pytest.fixture
def gateway(config: Path, broker: Mosquitto):
    proc = GatewayProcess(config, broker.port)
    yield proc
    proc.terminate()


def test_whole_topic_tree(config: Path, broker: Mosquitto, gateway: GatewayProcess, served: dict[str, str]):
    expected = publishable(config, served)
    tree = retained_tree(broker.port, expected)
    assert set(tree) == expected  # nothing missing, nothing extra (the sync marker is not retained)
    for topic, value in served.items():
        assert tree[topic].decode() == value, topic
    cat = catalog.build(load(config), ADAPTERS)
    for source in cat.sources:
        assert tree[f"soest/{source}/status"] == b"online", source
    assert tree["soest/gateway/status"] == b"online"
    info = json.loads(tree["soest/gateway/info"])
    assert info["version"]
    assert info["started_at"].endswith("+00:00")
    assert info["sources"]["brightsky"]["interval_s"] == 600
    assert info["sources"]["sun"]["schedule"] == "every 60s"
    assert tree["soest/brightsky/status"] == b"online"
    assert tree["soest/sun/status"] == b"online"
    assert tree["soest/brightsky/temperature"] == b"24.3"
    assert tree["soest/brightsky/irradiance"] == b"768"
    assert tree["soest/brightsky/condition"] == b"dry"
    assert tree["soest/sun/daylight"] in (b"ON", b"OFF")
    assert b"T" in tree["soest/sun/next_sunset"]
    assert tree["soest/sun/next_sunset"][-6] in b"+-"
    float(tree["soest/sun/elevation"])
    assert tree["soest/brightsky/fetch_errors"] == b"0"
    attrs = json.loads(tree["soest/brightsky/temperature/attributes"])
    assert attrs["station"]["name"] == "Lippstadt-Bökenförde"
    assert attrs["station"]["distance_m"] == 20960
    assert attrs["unit"] == "°C"
    assert attrs["source_url"].startswith("http://127.0.0.1:")
    assert "Deutscher Wetterdienst" in attrs["attribution"]
    assert attrs["observed_at"]
    assert attrs["fetched_at"]
    for topic, payload in tree.items():
        assert payload not in (b"None", b"null", b""), topic
        assert contract.match(topic, "soest", "homeassistant") is not None, topic
        if topic.endswith("/config"):
            problems = ha_rules.validate_discovery(topic, json.loads(payload))
            assert problems == [], (topic, problems)
    config_payload = json.loads(tree["homeassistant/sensor/soest/soest_brightsky_temperature/config"])
    assert config_payload["unique_id"] == "soest_brightsky_temperature"
    assert config_payload["device"]["via_device"] == "soest_gateway"
    assert config_payload["availability_mode"] == "all"


def test_states_are_published_retained_with_qos1(config: Path, broker: Mosquitto, upstream):
    sub = Subscriber(broker.port, *FILTERS, live=True)
    proc = GatewayProcess(config, broker.port)
    try:
        sub.wait_for("soest/brightsky/temperature", "24.3")
        msg = sub.wait_for("soest/brightsky/status", "online")
        assert msg.retain
        states = [m for m in sub.snapshot() if m.topic.startswith("soest/") and "/sync/" not in m.topic]
        assert states
        assert all(m.retain and m.qos == 1 for m in states)
    finally:
        proc.terminate()
        sub.close()


def test_republish_after_broker_restart_without_persistence(config: Path, broker: Mosquitto,
                                                            gateway: GatewayProcess, served: dict[str, str]):
    expected = publishable(config, served)
    retained_tree(broker.port, expected)
    broker.stop(kill=True)
    time.sleep(0.5)  # the outage itself: the gateway notices the lost connection
    broker.start()  # same port, persistence off: the retained store is empty now
    started = time.monotonic()
    tree = retained_tree(broker.port, expected, timeout=10)
    assert set(tree) == expected
    assert tree["soest/brightsky/temperature"] == b"24.3"
    assert tree["soest/gateway/status"] == b"online"
    assert time.monotonic() - started < 10
    assert "Traceback" not in gateway.log


def test_value_change_during_outage_is_not_lost(tmp_path: Path, broker: Mosquitto, upstream):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    cfg = write_config(tmp_path / "t.yaml", upstream.url,
                       edit=lambda d: d["sources"]["brightsky"].update(every="1s", jitter="0s"))
    proc = GatewayProcess(cfg, broker.port)
    try:
        sub = Subscriber(broker.port, "soest/brightsky/temperature")
        sub.wait_for("soest/brightsky/temperature", "24.3")
        sub.close()
        broker.stop(kill=True)
        body = fresh_fixture("brightsky/normal.json").replace(b'"temperature":24.3', b'"temperature":19.7')
        fetched = len(upstream.requests)
        upstream.serve("/current_weather", body)
        # Two more fetches: the second starts only after the first (of the new value) was handled,
        # all while the broker is down.
        wait_until(lambda: len(upstream.requests) >= fetched + 2, 15)
        broker.start()
        sub = Subscriber(broker.port, "soest/brightsky/temperature")
        sub.wait_for("soest/brightsky/temperature", "19.7", timeout=10)
        sub.close()
    finally:
        proc.terminate()


def test_reannounce_after_home_assistant_birth(config: Path, broker: Mosquitto, gateway: GatewayProcess,
                                              served: dict[str, str]):
    retained_tree(broker.port, publishable(config, served))
    sub = Subscriber(broker.port, *FILTERS, live=True)
    start = barrier(sub, broker.port) + 1  # what came before is the retained store, not the re-announce
    publish(broker.port, "homeassistant/status", "online")
    sub.wait_for("soest/brightsky/temperature", "24.3", timeout=10, after=start)
    msgs = sub.snapshot()[start:]
    first_config = next(i for i, m in enumerate(msgs) if m.topic.endswith("/config"))
    first_state = next(i for i, m in enumerate(msgs) if m.topic == "soest/brightsky/temperature")
    assert first_config < first_state  # discovery first, then states
    configs = {m.topic for m in msgs if m.topic.endswith("/config")}
    assert len(configs) == len(discovery.configs(catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)))
    assert all(m.retain for m in msgs if m.topic.endswith("/config"))
    sub.close()


def test_orphans_are_cleared_and_unchanged_configs_not_resent(tmp_path: Path, broker: Mosquitto, upstream):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    cfg = write_config(tmp_path / "t.yaml", upstream.url)
    orphan = "homeassistant/sensor/soest/soest_brightsky_snow_depth/config"
    foreign = "homeassistant/sensor/zigbee2mqtt/0x00158d0001/config"
    publish(broker.port, orphan, json.dumps({"name": "old", "state_topic": "soest/brightsky/snow_depth"}),
            retain=True)
    publish(broker.port, foreign, json.dumps({"name": "lamp", "state_topic": "z2m/lamp"}), retain=True)
    proc = GatewayProcess(cfg, broker.port)
    expected = expected_tree(cfg, {"soest/brightsky/temperature"})
    try:
        retained_tree(broker.port, expected)
    finally:
        assert proc.terminate() == 0
    tree = retained_tree(broker.port, expected - {"soest/gateway/status"})
    assert orphan not in tree
    assert foreign in tree

    # Second start with one entity removed: its config goes, the others are not re-sent.
    def drop_dew_point(data):
        del data["sources"]["brightsky"]["entities"]["dew_point"]

    cfg2 = write_config(tmp_path / "t2.yaml", upstream.url, edit=drop_dew_point)
    sub = Subscriber(broker.port, "homeassistant/#", "soest/sun/last_fetch", live=True)
    start = barrier(sub, broker.port, topic="homeassistant/test/barrier") + 1
    proc = GatewayProcess(cfg2, broker.port)
    try:
        gone = "homeassistant/sensor/soest/soest_brightsky_dew_point/config"
        sub.wait_for(gone, b"", timeout=10, after=start)
        # Positive marker: once the start-up publishing is done, a refresh makes the gateway run the
        # sun (always due: no upstream) and publish its last_fetch again; its own messages arrive in
        # order, so every config it sent at start has arrived before that second last_fetch.
        wait_until(lambda: "published" in proc.log.split("discovery:", 1)[-1], 10)
        # The first runs wait for the announce: a press while the sun's first run is still going is
        # dropped (a job runs once at a time), so press after every source had its first run.
        wait_until(lambda: re.search(r"first run: (\d+)/\1 sources tried", proc.log), 10)
        publish(broker.port, "soest/gateway/refresh", "PRESS")
        wait_until(lambda: len([m for m in sub.snapshot()[start:] if m.topic == "soest/sun/last_fetch"]) >= 2,
                   15)
        sent = [m.topic for m in sub.snapshot()[start:] if m.payload and m.topic.startswith("homeassistant/")]
        assert sent == [], sent  # every remaining config was already on the broker, unchanged
        assert "0 orphaned" not in proc.log
    finally:
        proc.terminate()
        sub.close()
    assert gone not in retained_tree(broker.port, expected_tree(cfg2, {"soest/brightsky/temperature"})
                                     - {"soest/gateway/status"})


def test_last_will_after_kill_9(config: Path, broker: Mosquitto):
    sub = Subscriber(broker.port, "soest/gateway/status", live=True)
    proc = GatewayProcess(config, broker.port)
    sub.wait_for("soest/gateway/status", "online")
    proc.kill()
    msg = sub.wait_for("soest/gateway/status", "offline", timeout=10)
    assert msg.retain
    sub.close()


def test_failing_source_goes_offline_keeps_value_and_recovers(tmp_path: Path, broker: Mosquitto, upstream):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    cfg = write_config(tmp_path / "t.yaml", upstream.url, edit=lambda d: d["sources"]["brightsky"].update(
        every="1s", jitter="0s", failure_threshold=2))
    sub = Subscriber(broker.port, "soest/#", live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        sub.wait_for("soest/brightsky/status", "online")
        upstream.serve("/current_weather", "<html>Wartungsarbeiten</html>", headers={"Content-Type": "text/html"})
        sub.wait_for("soest/brightsky/status", "offline", timeout=10)
        assert int(sub.wait_for("soest/brightsky/fetch_errors").text) >= 2
        assert sub.wait_for("soest/sun/status").text == "online"  # other sources unaffected
        tree = retained_tree(broker.port, {"soest/brightsky/temperature"})
        assert tree["soest/brightsky/temperature"] == b"24.3"  # the last good value stays
        mark = sub.mark()
        upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
        sub.wait_for("soest/brightsky/status", "online", timeout=10, after=mark)
    finally:
        proc.terminate()
        sub.close()


def test_metrics_endpoint(config: Path, broker: Mosquitto):
    http_port = free_port()
    proc = GatewayProcess(config, broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    try:
        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                return ""

        # The first fetch may finish before the broker connection is made (values wait in the outbox).
        wanted = ('gateway_source_last_success_timestamp_seconds{source="brightsky"}', "gateway_mqtt_connected 1.0")
        text = wait_until(lambda: (t := scrape()) and all(w in t for w in wanted) and t, 15)
        assert 'gateway_fetch_duration_seconds_count{source="brightsky"}' in text
        assert 'gateway_publishes_total{kind="state"}' in text
        assert 'gateway_publishes_total{kind="discovery"}' in text
        assert "gateway_fetch_errors_total" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()


def test_the_negotiated_protocol_is_shown_everywhere(config: Path, broker: Mosquitto, gateway_protocol: str):
    http_port = free_port()
    sub = Subscriber(broker.port, "soest/gateway/info")
    proc = GatewayProcess(config, broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    try:
        # The info document is sent again once the connection's version and node are known.
        info = wait_until(lambda: next((m.json() for m in sub.on("soest/gateway/info") if m.json()["mqtt"]), None),
                          15)
        assert info["mqtt"] == {"protocol": gateway_protocol, "node": f"127.0.0.1:{broker.port}"}
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/status", timeout=5) as resp:
            shown = json.loads(resp.read())["broker"]
        assert (shown["protocol"], shown["port"], shown["failed_subscriptions"]) == (gateway_protocol, broker.port, [])
    finally:
        sub.close()
        proc.terminate()


def test_purge_removes_everything_of_ours(config: Path, broker: Mosquitto, served: dict[str, str]):
    proc = GatewayProcess(config, broker.port)
    expected = publishable(config, served)
    retained_tree(broker.port, expected)
    proc.terminate()
    publish(broker.port, "other/topic", "keep", retain=True)
    result = subprocess.run([sys.executable, "-m", "gateway", "purge", "--config", str(config),
                             "--mqtt-port", str(broker.port)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"{len(expected)} retained topics removed" in result.stdout
    sub = Subscriber(broker.port, "#")
    end = barrier(sub, broker.port)  # the retained store has been delivered before the barrier
    assert [m.topic for m in sub.snapshot()[:end]] == ["other/topic"]
    sub.close()


def test_fetch_command_prints_readings(config: Path, upstream):
    result = subprocess.run([sys.executable, "-m", "gateway", "fetch", "brightsky", "--config", str(config), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {r["entity"]: r for r in json.loads(result.stdout)}
    assert rows["temperature"]["value"] == 24.3
    assert rows["irradiance"]["value"] == pytest.approx(768)
    assert rows["temperature"]["topic"] == "soest/brightsky/temperature"
    upstream.serve("/current_weather", "oops", status=500)
    failed = subprocess.run([sys.executable, "-m", "gateway", "fetch", "brightsky", "--config", str(config)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert failed.returncode == 1
    assert "HTTP 500" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_conditional_requests_keep_values(tmp_path: Path, broker: Mosquitto, upstream):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"), etag='"v1"')

    def edit(data: dict) -> None:
        data["sources"] = {k: v for k, v in data["sources"].items() if k in ("brightsky", "sun")}
        data["sources"]["brightsky"].update(every="1s", jitter="0s")

    cfg = write_config(tmp_path / "t.yaml", upstream.url, edit=edit)
    http_port = free_port()
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    try:
        wait_until(lambda: sum(1 for path, h in upstream.requests if h.get("If-None-Match") == '"v1"') >= 2, 15)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=2) as resp:
                return resp.read().decode()

        assert 'gateway_http_not_modified_total{source="brightsky"} ' in scrape()
        assert 'gateway_fetches_total{outcome="not_modified",source="brightsky"}' in scrape()
        tree = retained_tree(broker.port, {"soest/brightsky/temperature", "soest/brightsky/status"})
        assert tree["soest/brightsky/temperature"] == b"24.3"
        assert tree["soest/brightsky/status"] == b"online"
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()


def test_warning_expires_without_a_new_fetch(tmp_path: Path, broker: Mosquitto, upstream):
    """A DWD warning stops counting at its `expires` time even though nothing is fetched again."""
    data = json.loads((FIXTURES / "dwd_alerts" / "normal.json").read_text())
    warning = data["alerts"][0]
    now = datetime.now(UTC)
    warning.update(onset=(now - timedelta(hours=1)).isoformat(), expires=(now + timedelta(seconds=4)).isoformat())
    data["alerts"] = [warning]
    upstream.serve("/alerts", data)

    def edit(cfg: dict) -> None:
        cfg["mqtt"]["heartbeat"] = "4s"  # the tick that re-evaluates runs every heartbeat/4
        cfg["sources"] = {k: v for k, v in cfg["sources"].items() if k in ("dwd_alerts", "sun")}

    cfg = write_config(tmp_path / "t.yaml", upstream.url, edit=edit)
    sub = Subscriber(broker.port, "soest/dwd_alerts/#", live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        sub.wait_for("soest/dwd_alerts/count", "1")
        sub.wait_for("soest/dwd_alerts/thunderstorm", "ON")
        fetches = len(upstream.requests)
        sub.wait_for("soest/dwd_alerts/count", "0", timeout=15)
        assert sub.wait_for("soest/dwd_alerts/highest_severity", "none").retain
        assert sub.wait_for("soest/dwd_alerts/thunderstorm", "OFF").retain
        assert len(upstream.requests) == fetches  # no new fetch was needed
    finally:
        proc.terminate()
        sub.close()
