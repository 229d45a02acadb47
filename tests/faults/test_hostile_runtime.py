"""Time is data, and the data directory is trusted no more than upstream.

End to end with a fixture server, a real Mosquitto and the gateway process; the data-directory
file checks run in a subprocess with a memory limit, so a failure cannot take the machine down.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.config import Broker
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from tests.helpers import (
    ROOT,
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    brightsky_config,
    free_port,
    fresh_fixture,
    publish,
    retained_tree,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]

FUTURE = datetime(2126, 1, 1, tzinfo=UTC)
TEMPERATURE = "soest/brightsky/temperature"


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def metric_value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def write_state(config: Path, entities: dict[str, list[object]]) -> Path:
    data = config.parent / "data"
    data.mkdir(exist_ok=True)
    path = data / "state.json"
    path.write_text(json.dumps({"version": 1, "saved_at": datetime.now(UTC).isoformat(), "entities": entities}))
    return path


# --------------------------------------------------------------------------- time is data


def test_a_reading_from_the_future_is_rejected_end_to_end(tmp_path: Path, broker: Mosquitto,
                                                          upstream: FixtureServer):
    cfg = brightsky_config(tmp_path / "t.yaml", upstream)
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json", FUTURE))
    http_port = free_port()
    sub = Subscriber(broker.port, "soest/brightsky/#", live=True)
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    try:
        attrs = sub.wait_for(f"{TEMPERATURE}/attributes", timeout=15).json()
        assert attrs["rejected"]["reason"] == "future"
        assert attrs["rejected"]["value"] == "24.3"
        assert attrs["observed_at"] is None
        assert sub.on(TEMPERATURE) == []  # the state went out before its attributes, if at all
        # With no trusted timestamp the source has no fresh data; today 2126 kept it "online".
        assert sub.wait_for("soest/brightsky/status", timeout=10).payload == b"offline"
        wanted = 'gateway_rejected_readings_total{entity="temperature",reason="future",source="brightsky"}'
        wait_until(lambda: metric_value(scrape(http_port), wanted) >= 1, 10)
    finally:
        sub.close()
        proc.terminate()
    assert "2126" not in (tmp_path / "data" / "state.json").read_text()  # not carried through restarts
    assert "Traceback" not in proc.log


def test_restored_values_are_checked_like_fresh_ones(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer):
    cfg = brightsky_config(tmp_path / "t.yaml", upstream)
    upstream.serve("/current_weather", b'{"detail":"down"}', status=500)
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    # Left on the broker by the last run; an empty retained publish would delete it.
    publish(broker.port, "soest/brightsky/humidity", "55", retain=True)
    write_state(cfg, {
        "soest_brightsky_temperature": ["21", 21.0, FUTURE.isoformat(), None],
        "soest_brightsky_humidity": ["", None, now, None],
        "soest_brightsky_wind_speed": ["9999", 9999.0, now, None],
        "soest_brightsky_pressure": ["1013", 1013.0, now, None],  # the positive marker
    })
    sub = Subscriber(broker.port, "soest/brightsky/#", live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        assert sub.wait_for("soest/brightsky/pressure", timeout=15).payload == b"1013"
        sub.wait_for("soest/brightsky/fetch_errors", "1", timeout=15)  # the first fetch is over
        tree = retained_tree(broker.port, {"soest/brightsky/pressure", "soest/brightsky/humidity"})
        assert tree["soest/brightsky/humidity"] == b"55"
        assert TEMPERATURE not in tree
        assert "soest/brightsky/wind_speed" not in tree
        assert [m.payload for m in sub.on("soest/brightsky/humidity") if not m.retain] == []
    finally:
        sub.close()
        proc.terminate()
    assert "Traceback" not in proc.log


# --------------------------------------------------------------------------- the discovery registry


def test_a_tampered_registry_never_clears_foreign_topics(tmp_path: Path, broker: Mosquitto,
                                                         upstream: FixtureServer):
    cfg = brightsky_config(tmp_path / "t.yaml", upstream)
    foreign = {"zigbee2mqtt/bridge/config": b'{"version":"1.40"}',
               "homeassistant/sensor/other_node/x/config": b'{"name":"other"}'}
    for topic, payload in foreign.items():
        publish(broker.port, topic, payload, retain=True)
    ours = "homeassistant/sensor/soest/soest_gone/config"
    publish(broker.port, ours, b'{"name":"gone"}', retain=True)  # a read-back of nothing would clear nothing
    data = tmp_path / "data"
    data.mkdir()
    (data / "discovery.json").write_text(json.dumps({"version": 1, "topics": [
        *foreign, ours, "bad/+/topic", "homeassistant/sensor/soest/#/config", "", 42, "a" * 70_000]}))
    sub = Subscriber(broker.port, ours, live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        sub.wait_for(ours, b"", timeout=15)  # our own orphan is cleared: reconciliation ran
        tree = retained_tree(broker.port, {TEMPERATURE})
        direct = Subscriber(broker.port, *foreign)
        try:
            wait_until(lambda: {m.topic for m in direct.snapshot() if m.retain} == set(foreign), 5)
            assert {m.topic: m.payload for m in direct.snapshot()} == foreign
        finally:
            direct.close()
        # After the broker lost everything, the whole tree comes back (one bad topic aborted it).
        broker.stop()
        broker.start()
        after = retained_tree(broker.port, set(tree) - {ours} - set(foreign), timeout=20)
        assert after[TEMPERATURE] == tree[TEMPERATURE]
    finally:
        sub.close()
        proc.terminate()
    assert "Traceback" not in proc.log


def test_an_empty_read_back_with_a_registry_clears_nothing(tmp_path: Path, broker: Mosquitto,
                                                           upstream: FixtureServer):
    # The registry says we published a config that is gone now; the broker shows none of ours.
    # That is what a broker that lost its store, or that never delivers retained messages to
    # wildcard subscriptions, looks like: no orphan cleanup on guesswork, and a warning.
    cfg = brightsky_config(tmp_path / "t.yaml", upstream)
    gone = "homeassistant/sensor/soest/soest_gone/config"
    data = tmp_path / "data"
    data.mkdir()
    (data / "discovery.json").write_text(json.dumps({"version": 1, "topics": [gone]}))
    sub = Subscriber(broker.port, gone, live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        wait_until(lambda: "could not read the broker's retained discovery configs" in proc.log, timeout=15)
        assert "the broker returned none of the 1 discovery configs published before" in proc.log
        sub.sync()  # anything the gateway sent before its warning has arrived
        assert sub.on(gone) == []
        # Kept for the next start that sees a complete read-back (phase two of the cleanup).
        wait_until(lambda: gone in json.loads((data / "discovery.json").read_text())["topics"], timeout=5)
    finally:
        sub.close()
        proc.terminate()
    assert "Traceback" not in proc.log


def test_mqtt_link_survives_one_bad_message(tmp_path: Path, broker: Mosquitto):
    link = MqttLink(Broker(host="127.0.0.1", port=broker.port), client_id="t-bad", will_topic="t/status",
                    metrics=Metrics())
    good = {f"t/value/{i}": str(i).encode() for i in range(50)}
    link.publish("bad/+/topic", b"", TopicClass.DISCOVERY)  # a clear, re-sent first on every connect
    link.publish_many([*list(good.items())[:25], ("bad/#", b"x"), *list(good.items())[25:]], TopicClass.STATE)
    sub = Subscriber(broker.port, "t/value/#")
    link.start()
    try:
        assert link.wait_connected(10)
        assert link.republish() == 51
        wait_until(lambda: {m.topic for m in sub.snapshot()} == set(good), 10)
    finally:
        link.stop()
        sub.close()


# --------------------------------------------------------------------------- file size caps


def limited_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def load_in_subprocess(data: Path) -> subprocess.CompletedProcess[str]:
    code = ("import json, sys; from pathlib import Path; from gateway.persist import StateFile; "
            "print(json.dumps(StateFile(Path(sys.argv[1])).load()))")
    return subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, cwd=ROOT,
                          timeout=20, preexec_fn=limited_memory)


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "oversized"])
def test_state_files_are_capped_on_load(tmp_path: Path, kind: str):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "state.json"
    if kind == "dev_zero":
        path.symlink_to("/dev/zero")  # today: MemoryError
    elif kind == "fifo":
        os.mkfifo(path)  # today: blocks forever
    else:
        with path.open("wb") as fh:  # sparse: costs no disk
            fh.write(b'{"version":1,"entities":{},"pad":"')
            fh.truncate(3 << 29)  # 1.5 GiB, over the subprocess's memory limit
    try:
        result = load_in_subprocess(data)
    except subprocess.TimeoutExpired:
        pytest.fail("loading the state file hung")
    assert result.returncode == 0, result.stderr[-500:]
    assert json.loads(result.stdout) == {}
    assert "moved it to state.json.corrupt-" in result.stderr
    assert not path.is_symlink()
    assert not path.exists()


def test_a_reparsed_future_reading_stays_rejected():
    """Re-evaluation moves readings newer than their fetch to the fetch time; one from the future
    (rejected at the fetch) must not be published that way on the next tick."""
    from gateway.records import Reading
    from gateway.runs import as_of_fetch

    fetched = datetime(2026, 6, 21, 12, tzinfo=UTC)
    soon = fetched.replace(minute=2)  # within the clock-skew allowance
    kept = as_of_fetch([Reading("a", 1, FUTURE), Reading("b", 2, soon), Reading("c", 3, fetched)], fetched)
    assert [(r.field, r.observed_at) for r in kept] == [("b", fetched), ("c", fetched)]
