"""Start, stop and restart: clean shutdowns, saved state, and a corrupt data directory."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import (
    GatewayProcess,
    Mosquitto,
    Subscriber,
    brightsky_config,
    retained_tree,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]


@pytest.fixture
def config(tmp_path: Path, upstream) -> Path:
    return brightsky_config(tmp_path / "topics.yaml", upstream)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_publishes_offline_flushes_and_exits_0(config: Path, broker: Mosquitto, sig: int):
    sub = Subscriber(broker.port, "soest/#", live=True)
    proc = GatewayProcess(config, broker.port)
    sub.wait_for("soest/brightsky/temperature", "24.3")
    started = time.monotonic()
    proc.proc.send_signal(sig)
    assert proc.terminate(timeout=5) == 0
    assert time.monotonic() - started < 5
    assert sub.wait_for("soest/gateway/status", "offline", timeout=2).retain
    assert "Traceback" not in proc.log
    sub.close()


def test_values_survive_a_restart_with_upstream_down(tmp_path: Path, config: Path, upstream):
    """Gateway and broker both restart (broker without persistence) while upstream fails:
    the saved values go back on the broker, nothing is lost."""
    broker = Mosquitto(tmp_path).start()
    try:
        proc = GatewayProcess(config, broker.port)
        retained_tree(broker.port, {"soest/brightsky/temperature", "soest/brightsky/irradiance"})
        # The registry is written once the discovery read-back is done, which may end after the states.
        wait_until(lambda: "discovery: " in proc.log, 15)
        assert proc.terminate() == 0
    finally:
        broker.stop()
    state = json.loads((config.parent / "data" / "state.json").read_text())
    assert state["entities"]["soest_brightsky_temperature"][0] == "24.3"
    registry = json.loads((config.parent / "data" / "discovery.json").read_text())
    assert "homeassistant/sensor/soest/soest_brightsky_temperature/config" in registry["topics"]
    upstream.serve("/current_weather", "boom", status=500)
    broker = Mosquitto(tmp_path, port=broker.port).start()
    proc = GatewayProcess(config, broker.port)
    try:
        tree = retained_tree(broker.port, {"soest/brightsky/temperature", "soest/brightsky/irradiance",
                                           "soest/sun/elevation"})
        assert tree["soest/brightsky/temperature"] == b"24.3"
        assert tree["soest/brightsky/irradiance"] == b"768"
        assert "restored" in proc.log
    finally:
        proc.terminate()
        broker.stop()


def test_corrupt_state_file_is_moved_aside(config: Path, broker: Mosquitto):
    data = config.parent / "data"
    data.mkdir()
    (data / "state.json").write_text('{"version": 1, "entities": {"soest_brightsky_temperature": [')
    proc = GatewayProcess(config, broker.port)
    try:
        retained_tree(broker.port, {"soest/brightsky/temperature"})
        assert "unreadable" in proc.log
        aside = list(data.glob("state.json.corrupt-*"))
        assert len(aside) == 1
        assert aside[0].read_text().startswith('{"version": 1')
    finally:
        assert proc.terminate() == 0
    assert json.loads((data / "state.json").read_text())["version"] == 1
