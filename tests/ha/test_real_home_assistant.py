"""What a real Home Assistant makes of the gateway: entities, devices, states, availability, removal.

HA 2025.4.4 (scripts/ensure-ha) runs against a test Mosquitto; the gateway runs the whole default
config (every source, those disabled by default too) against fixture servers. Everything is read
back through HA's own REST and websocket APIs and its log, as a user's HA would show it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.ha.conftest import FAILING, World, entity_id
from tests.helpers import wait_until

pytestmark = [pytest.mark.ha, pytest.mark.broker]

# Loggers whose warnings mean HA had a problem with a discovery config or a state.
WATCHED = ("homeassistant.components.mqtt", "homeassistant.components.sensor")
# Removed from the config in the removal test: a whole source (its device goes too) and one entity.
REMOVED_SOURCE = "pegelonline"
REMOVED_ENTITY = ("brightsky", "dew_point")


def same_value(topic: str, config: dict[str, Any], published: str, shown: str) -> bool:
    """Whether HA's state ``shown`` is the value the gateway ``published`` for this config."""
    if topic.split("/")[1] == "binary_sensor":
        on, off = config.get("payload_on", "ON"), config.get("payload_off", "OFF")
        return shown == {on: "on", off: "off"}.get(published)
    if config.get("device_class") == "timestamp":
        return datetime.fromisoformat(shown) == datetime.fromisoformat(published)
    if config.get("device_class") != "enum" and any(k in config for k in (
            "unit_of_measurement", "state_class", "suggested_display_precision")):
        return float(shown) == float(published)
    return shown == published


def source_of(config: dict[str, Any]) -> str | None:
    """The source whose status decides this entity's availability (None: only the gateway's)."""
    for item in config.get("availability", []):
        parts = item["topic"].split("/")
        if parts[1] != "gateway":
            return parts[1]
    return None


def test_every_config_is_one_entity_with_its_device(world: World):
    configs = world.full()
    entities, devices = world.hass.registries()
    ours = [e for e in entities if e["platform"] == "mqtt"]
    counts = Counter(e["unique_id"] for e in ours)
    assert [u for u, n in counts.items() if n > 1] == []
    by_uid = {e["unique_id"]: e for e in ours}
    by_device = {d["id"]: d for d in devices}
    with world.hass.ws() as sock:
        extended = {e["entity_id"]: e for e in sock.call("config/entity_registry/get_entries",
                                                          entity_ids=[e["entity_id"] for e in ours]).values()}
    states = world.hass.states()
    values = world.values()
    problems: list[str] = []

    def check(what: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"{what}: HA has {got!r}, the config says {want!r}")

    for topic, config in configs.items():
        uid = config["unique_id"]
        entry = by_uid.get(uid)
        if entry is None:
            problems.append(f"{topic}: no entity with unique_id {uid}")
            continue
        eid = entity_id(topic, config)
        check(f"{uid} entity_id", entry["entity_id"], eid)
        check(f"{uid} name", entry["original_name"], config["name"])
        check(f"{uid} entity_category", entry["entity_category"], config.get("entity_category"))
        enabled = config.get("enabled_by_default", True)
        check(f"{uid} disabled_by", entry["disabled_by"], None if enabled else "integration")
        ext = extended[entry["entity_id"]]
        check(f"{uid} device_class", ext.get("original_device_class"), config.get("device_class"))
        check(f"{uid} state_class", (ext.get("capabilities") or {}).get("state_class"), config.get("state_class"))
        check(f"{uid} icon", ext.get("original_icon"), config.get("icon"))
        device = by_device.get(entry["device_id"])
        if device is None:
            problems.append(f"{uid}: no device")
            continue
        spec = config["device"]
        check(f"{uid} device identifiers", sorted(map(tuple, device["identifiers"])),
              sorted(("mqtt", i) for i in spec["identifiers"]))
        check(f"{uid} device name", device["name"], spec["name"])
        check(f"{uid} device manufacturer", device["manufacturer"], spec["manufacturer"])
        check(f"{uid} device model", device["model"], spec["model"])
        via = by_device.get(device["via_device_id"]) if device["via_device_id"] else None
        check(f"{uid} via_device", via and [i for d, i in via["identifiers"] if d == "mqtt"],
              [spec["via_device"]] if "via_device" in spec else None)
        if enabled:
            # The unit is not in the registry's websocket view; a disabled entity has no state to show it.
            attrs = states[eid]["attributes"]
            if "suggested_display_precision" in config:
                check(f"{uid} precision", ext["options"].get("sensor", {}).get("suggested_display_precision"),
                      config["suggested_display_precision"])
            check(f"{uid} state unit", attrs.get("unit_of_measurement"), config.get("unit_of_measurement"))
            check(f"{uid} state device_class", attrs.get("device_class"), config.get("device_class"))
            check(f"{uid} state state_class", attrs.get("state_class"), config.get("state_class"))
            check(f"{uid} friendly_name", attrs.get("friendly_name"), f"{spec['name']} {config['name']}")
            published = values.get(config.get("state_topic", ""))
            if published is not None and states[eid]["state"] != "unavailable" \
                    and not same_value(topic, config, published.decode(), states[eid]["state"]):
                problems.append(f"{uid} state: HA shows {states[eid]['state']!r}, the gateway published {published!r}")
        else:
            check(f"{uid} state of a disabled entity", states.get(eid), None)
    # Nothing of ours beyond the configs: HA has exactly one entity per config, one device per identifier.
    check("unique_ids", sorted(by_uid), sorted(c["unique_id"] for c in configs.values()))
    wanted_devices = {i for c in configs.values() for i in c["device"]["identifiers"]}
    mqtt_devices = [d for d in devices if any(domain == "mqtt" for domain, _ in d["identifiers"])]
    check("devices", sorted(i for d in mqtt_devices for _, i in d["identifiers"]), sorted(wanted_devices))
    disabled = sum(1 for e in ours if e["disabled_by"])
    print(f"\nHA: {len(ours)} entities ({disabled} disabled by default), {len(mqtt_devices)} devices, "
          f"from {len(configs)} discovery configs")
    assert problems == [], "\n".join(problems)


def test_no_warnings_from_mqtt_or_sensor(world: World):
    world.full()
    records = world.hass.log_records(("WARNING", "ERROR", "CRITICAL"), WATCHED)
    print(f"\nHA log: {len(records)} WARNING/ERROR records from {', '.join(WATCHED)}")
    assert records == [], f"{len(records)} records:\n" + "\n".join(records)


def test_entities_come_back_after_ha_restart(world: World):
    configs = world.full()
    entities_before, devices_before = world.hass.registries()
    states_before = world.hass.states()
    world.hass.stop()
    world.hass.start()
    started = time.monotonic()
    world.settled()
    print(f"\nHA restart: stopped in {world.hass.stop_seconds[-1]:.1f} s, API up in "
          f"{world.hass.start_seconds[-1]:.1f} s, all entities back {time.monotonic() - started:.1f} s later")
    entities_after, devices_after = world.hass.registries()
    ours = {entity_id(t, c) for t, c in configs.items()}

    def registry(entries: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(e["entity_id"], e["unique_id"], e["device_id"]) for e in entries if e["entity_id"] in ours}

    assert registry(entities_after) == registry(entities_before)
    assert {d["id"] for d in devices_after} == {d["id"] for d in devices_before}
    # The same values come back (from the broker's retained store), except those that move by
    # themselves: the sun's position and the source fetched every 2 s.
    states_after = world.hass.states()
    steady = {entity_id(t, c) for t, c in configs.items()
              if c.get("enabled_by_default", True) and source_of(c) not in ("sun", FAILING)
              and not c["unique_id"].startswith(("soest_sun_", f"soest_{FAILING}_"))}
    changed = {e: (states_before[e]["state"], states_after[e]["state"]) for e in sorted(steady)
               if states_before[e]["state"] != states_after[e]["state"]}
    assert changed == {}


def test_gateway_stop_makes_its_entities_unavailable(world: World):
    configs = world.full()
    assert world.stop_gateway() == 0
    enabled = {entity_id(t, c): c for t, c in configs.items() if c.get("enabled_by_default", True)}

    def expected(config: dict[str, Any]) -> str:
        # The connection sensor is the gateway's status itself: it shows "off", not unavailable.
        return "off" if config.get("state_topic", "").endswith("/gateway/status") else "unavailable"

    def wrong() -> dict[str, str]:
        states = world.hass.states()
        return {e: states[e]["state"] for e, c in enabled.items() if states[e]["state"] != expected(c)}

    try:
        wait_until(lambda: not wrong(), timeout=15, interval=0.3)
    except AssertionError:
        raise AssertionError(f"still not unavailable after the gateway stopped: {wrong()}") from None


def test_failing_source_makes_only_its_entities_unavailable(world: World):
    configs = world.full()
    fixture = world.fixtures[FAILING]
    enabled = {entity_id(t, c): c for t, c in configs.items() if c.get("enabled_by_default", True)}
    failing = {e for e, c in enabled.items() if source_of(c) == FAILING}
    assert len(failing) >= 3
    before = world.hass.states()
    fixture.break_with(world.upstream, world.upstream.url, body=b'{"error":"boom"}', status=500)
    try:
        states = wait_until(lambda: (s := world.hass.states()) and all(s[e]["state"] == "unavailable"
                                                                        for e in failing) and s, timeout=20)
        # The moment the outage shows, everything else is still there, the failing source's own
        # diagnostics included (they depend on the gateway only).
        others = {e for e in enabled if e not in failing
                  and before[e]["state"] != "unavailable" and states[e]["state"] == "unavailable"}
        assert others == set()
        assert int(states[f"sensor.soest_{FAILING}_fetch_errors"]["state"]) >= 1
    finally:
        fixture.serve(world.upstream, world.upstream.url)
    wait_until(lambda: all(world.hass.states()[e]["state"] != "unavailable" for e in failing), timeout=20)


def test_entities_removed_from_the_config_disappear(world: World):
    configs = world.full()
    source, entity = REMOVED_ENTITY
    gone_entity = f"soest_{source}_{entity}"
    gone_source = {c["unique_id"] for c in configs.values()
                   if c["device"]["identifiers"] == [f"soest_{REMOVED_SOURCE}"]}
    assert gone_entity in {c["unique_id"] for c in configs.values()}
    assert len(gone_source) >= 3

    def smaller(data: dict[str, Any]) -> None:
        del data["sources"][REMOVED_SOURCE]
        del data["sources"][source]["entities"][entity]

    world.start_gateway(smaller)
    remaining = world.settled()  # HA has exactly the smaller config's entities, nothing more
    uids = {c["unique_id"] for c in remaining.values()}
    assert gone_entity not in uids
    assert not gone_source & uids
    assert len(uids) == len(configs) - len(gone_source) - 1
    _, devices = world.hass.registries()
    identifiers = {i for d in devices for _, i in d["identifiers"]}
    assert f"soest_{REMOVED_SOURCE}" not in identifiers
    gone = {entity_id(t, c) for t, c in configs.items() if c["unique_id"] in gone_source | {gone_entity}}
    assert gone & set(world.hass.states()) == set()
    assert f"soest_{source}" in identifiers


def test_refresh_button_pressed_in_ha_reaches_the_gateway(world: World):
    world.full()
    gateway = world.gateway
    assert gateway is not None
    before = gateway.log.count("refresh: ")
    world.hass.rest("POST", "/api/services/button/press", {"entity_id": "button.soest_gateway_refresh"})
    # The gateway answers a press with one log line naming the sources it fetches (the sun at
    # least: it is computed locally and never too recent to refresh).
    wait_until(lambda: gateway.log.count("refresh: ") > before, timeout=10)
    line = gateway.log.split("refresh: ")[-1].splitlines()[0]
    fetched = re.match(r"fetching \d+ of \d+ sources now \(([^)]*)\)", line)
    assert fetched, line
    assert "sun" in fetched.group(1).split(", "), line
