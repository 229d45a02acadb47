"""Switching ``mqtt.discovery_mode`` in a real Home Assistant: every entity stays, both ways (issue #12).

Before and after a switch the entity registry must be the same (entity ids, the name a user gave,
the device, disabled ones still disabled), with nothing duplicated or orphaned, no "conflicting
discovery" warning, and the entities still receiving values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.ha.conftest import World
from tests.helpers import publish, wait_until

pytestmark = [pytest.mark.ha, pytest.mark.broker]

WATCHED = ("homeassistant.components.mqtt", "homeassistant.components.sensor")
KEPT = ("entity_id", "unique_id", "name", "original_name", "device_id", "disabled_by", "entity_category",
        "config_entry_id", "platform")
RENAMED = "sensor.soest_brightsky_temperature"


def ours(world: World) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[Any, ...]]]:
    """Our entities (unique_id -> the registry fields that must survive) and devices (id -> identifiers)."""
    entities, devices = world.hass.registries()
    mine = [e for e in entities if e["platform"] == "mqtt" and e["unique_id"].startswith("soest_")]
    assert len({e["unique_id"] for e in mine}) == len(mine), "an entity is in the registry twice"
    device_ids = {e["device_id"] for e in mine}
    return ({e["unique_id"]: {k: e.get(k) for k in KEPT} for e in mine},
            {d["id"]: tuple(sorted(map(tuple, d["identifiers"]))) for d in devices if d["id"] in device_ids})


def switch(world: World, mode: str, before: tuple[dict[str, Any], dict[str, Any]]) -> None:
    world.start_gateway(lambda data: data["mqtt"].update(discovery_mode=mode))
    expected = world.expected_configs()
    configs = world.published_configs(expected)  # the broker holds exactly this mode's configs
    assert all(topic.split("/")[1] == "device" for topic in configs) == (mode == "device")
    wait_until(lambda: ours(world) == before, timeout=30, interval=0.5)


def test_switching_discovery_modes_keeps_every_entity_both_ways(world: World):
    world.full()
    with world.hass.ws() as sock:  # a name the user chose must survive
        sock.call("config/entity_registry/update", entity_id=RENAMED, name="Garden thermometer")
    before = ours(world)
    assert before[0]["soest_brightsky_temperature"]["name"] == "Garden thermometer"
    assert sum(1 for e in before[0].values() if e["disabled_by"]) > 0  # disabled ones are part of it
    records_before = len(world.hass.log_records(("WARNING", "ERROR", "CRITICAL"), WATCHED))

    for mode in ("device", "entity"):
        switch(world, mode, before)
        # Still alive after the switch: a new value reaches HA through the migrated entity.
        value = "17.5" if mode == "device" else "18.5"
        publish(world.broker.port, "soest/brightsky/temperature", value, retain=True)
        # The registry can match before HA has loaded the migrated entity into its state machine.
        wait_until(lambda v=value: (world.hass.states().get(RENAMED) or {}).get("state") == v,
                   timeout=15, interval=0.2)
        state = world.hass.states()[RENAMED]
        assert state["attributes"]["friendly_name"] == "Garden thermometer"

    records = world.hass.log_records(("WARNING", "ERROR", "CRITICAL"), WATCHED)[records_before:]
    # HA's rollback asks for an empty payload on the device topic once the entities are back, and
    # then finds nothing left to clean up there (its migrate flag already unloaded them): its own
    # notice, not a problem with what we sent.
    cleanup = [r for r in records if "No device components to cleanup for soest_" in r]
    others = [r for r in records if r not in cleanup]
    assert others == [], "\n".join(others)
    log = world.hass.log_path.read_text(errors="replace")
    assert "conflicting MQTT discovery" not in log
    migrated = log.count("Migration to MQTT device discovery schema started")
    rolled_back = log.count("Rollback to MQTT platform discovery schema started")
    print(f"\nHA: {len(before[0])} entities on {len(before[1])} devices kept through entity -> device -> entity "
          f"({migrated} migrations, {rolled_back} rollbacks logged; HA's cleanup notices: {len(cleanup)})")
    loaded = sum(1 for e in before[0].values() if not e["disabled_by"])  # HA does not load disabled ones
    assert migrated == rolled_back == loaded
    assert json.dumps(ours(world), sort_keys=True) == json.dumps(before, sort_keys=True)
