"""Device-based discovery (``mqtt.discovery_mode: device``) and the migration between the modes (issue #12).

A real Mosquitto, the real gateway process and a real subscriber: which configs arrive, in which
order, retained, and what stays in the broker's store. Home Assistant's side of the migration is
tested against a real Home Assistant in tests/ha/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters import ADAPTERS
from gateway import catalog, discovery
from gateway.announce import MIGRATE
from gateway.config import load
from tests.helpers import (
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    barrier,
    brightsky_config,
    publish,
    retained_tree,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]


def config(tmp_path: Path, upstream: FixtureServer, mode: str, name: str = "t.yaml", **brightsky: Any) -> Path:
    path = brightsky_config(tmp_path / name, upstream, **brightsky)
    data = yaml.safe_load(path.read_text())
    data["mqtt"]["discovery_mode"] = mode
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    assert load(path).settings.mqtt.discovery_mode == mode
    return path


def configs_of(path: Path) -> dict[str, dict[str, Any]]:
    return discovery.configs(catalog.build(load(path), ADAPTERS))


def run_until_announced(path: Path, broker: Mosquitto) -> GatewayProcess:
    proc = GatewayProcess(path, broker.port)
    wait_until(lambda: "published" in proc.log.split("discovery:", 1)[-1], 20)
    return proc


def retained_configs(broker: Mosquitto, expected: set[str]) -> dict[str, bytes]:
    """The non-empty retained configs, once ``expected`` are all there."""
    tree = retained_tree(broker.port, expected, filters=("homeassistant/#",))
    return {t: p for t, p in tree.items() if p}


def test_device_mode_sends_one_config_per_device_with_every_entity(tmp_path: Path, broker: Mosquitto,
                                                                   upstream: FixtureServer):
    entity_mode = configs_of(config(tmp_path, upstream, "entity", "e.yaml"))
    path = config(tmp_path, upstream, "device")
    proc = run_until_announced(path, broker)
    try:
        stored = retained_configs(broker, set(configs_of(path)))
    finally:
        proc.terminate()
    devices = {t: json.loads(p) for t, p in stored.items() if t.startswith("homeassistant/device/")}
    assert set(stored) == set(devices) == set(configs_of(path))  # nothing per entity
    assert set(devices) == {"homeassistant/device/soest/soest_gateway/config",
                            "homeassistant/device/soest/soest_brightsky/config",
                            "homeassistant/device/soest/soest_sun/config"}
    # The same entities: every entity config, without device and origin, as a component.
    components = {uid: c for d in devices.values() for uid, c in d["components"].items()}
    assert len(components) == len(entity_mode)
    for topic, payload in entity_mode.items():
        component = topic.split("/")[1]
        device_config = devices[f"homeassistant/device/soest/{payload['device']['identifiers'][0]}/config"]
        assert device_config["device"] == payload["device"]
        assert device_config["origin"] == payload["origin"]
        expected = {k: v for k, v in payload.items() if k not in ("device", "origin")}
        assert components[payload["unique_id"]] == {"platform": component, **expected}


def test_switching_modes_migrates_both_ways_in_home_assistants_order(tmp_path: Path, broker: Mosquitto,
                                                                      upstream: FixtureServer):
    """migrate_discovery on each old config, then the new configs, then the old ones cleared."""
    entity_path = config(tmp_path, upstream, "entity", "e.yaml")
    device_path = config(tmp_path, upstream, "device", "d.yaml")
    entity_topics, device_topics = set(configs_of(entity_path)), set(configs_of(device_path))
    run_until_announced(entity_path, broker).terminate()
    assert set(retained_configs(broker, entity_topics)) == entity_topics

    for old, new, path in ((entity_topics, device_topics, device_path), (device_topics, entity_topics, entity_path)):
        sub = Subscriber(broker.port, "homeassistant/#", live=True)
        start = barrier(sub, broker.port, topic="homeassistant/test/barrier") + 1
        proc = run_until_announced(path, broker)
        try:
            wait_until(lambda s=sub, at=start, o=old: {m.topic for m in s.snapshot()[at:] if m.payload == b""} >= o,
                       15)
            msgs = [m for m in sub.snapshot()[start:] if m.topic in old | new]
        finally:
            proc.terminate()
            sub.close()
        flags = [i for i, m in enumerate(msgs) if m.payload == MIGRATE]
        configs = [i for i, m in enumerate(msgs) if m.topic in new and m.payload]
        clears = [i for i, m in enumerate(msgs) if m.topic in old and m.payload == b""]
        assert {msgs[i].topic for i in flags} == old
        assert {msgs[i].topic for i in configs} == new
        assert max(flags) < min(configs)
        assert max(configs) < min(clears)
        assert all(m.retain and m.qos == 1 for m in msgs)
        assert set(retained_configs(broker, new)) == new
        assert f"{len(old)} migrated from" in proc.log
        assert "Traceback" not in proc.log


def test_device_mode_reannounces_on_birth_and_clears_a_removed_device(tmp_path: Path, broker: Mosquitto,
                                                                     upstream: FixtureServer):
    path = config(tmp_path, upstream, "device")
    proc = run_until_announced(path, broker)
    sub = Subscriber(broker.port, "homeassistant/#", "soest/brightsky/temperature", live=True)
    try:
        retained_configs(broker, set(configs_of(path)))
        sub.wait_for("soest/brightsky/temperature", timeout=10)  # the start is over (and arrived)
        start = barrier(sub, broker.port, topic="homeassistant/test/barrier") + 1
        publish(broker.port, "homeassistant/status", "online")
        sub.wait_for("soest/brightsky/temperature", timeout=10, after=start)  # states follow the configs
        sent = {m.topic for m in sub.snapshot()[start:] if m.topic.endswith("/config")}
        assert sent == set(configs_of(path))  # one config per device, not per entity
    finally:
        proc.terminate()
        sub.close()
    # Bright Sky removed from the config: its device config goes, the others stay.
    data = yaml.safe_load(path.read_text())
    data["sources"]["brightsky"]["enabled"] = False
    without = tmp_path / "without.yaml"  # same directory: the same data directory, with its registry
    without.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    assert "soest_brightsky" not in json.dumps(list(configs_of(without)))
    proc = GatewayProcess(without, broker.port)
    try:
        wait_until(lambda: "1 orphaned configs removed" in proc.log, 20)
    finally:
        proc.terminate()
    assert set(retained_configs(broker, set(configs_of(without)))) == set(configs_of(without))
