"""Discovery payloads: complete, stable, and valid under Home Assistant's rules."""

from __future__ import annotations

import copy

import pytest

from adapters import ADAPTERS
from gateway import catalog, discovery
from gateway.config import load
from tests import ha_rules
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)


@pytest.fixture(scope="module")
def configs(cat: catalog.Catalog) -> dict[str, dict]:
    return discovery.configs(cat)


def test_every_payload_passes_ha_rules(configs: dict[str, dict]):
    for topic, payload in configs.items():
        assert ha_rules.validate_discovery(topic, payload) == [], topic


def test_one_config_per_entity_plus_diagnostics(cat: catalog.Catalog, configs: dict[str, dict]):
    entities = cat.entities()
    assert len(configs) == len(entities) + 2 * len(cat.sources) + 4  # + connection, uptime, version, refresh
    unique_ids = [p["unique_id"] for p in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    for entity in entities:
        topic = f"homeassistant/{entity.component}/soest/{entity.unique_id}/config"
        assert topic in configs


@pytest.mark.parametrize("button", [True, False])
def test_config_count_is_what_iter_configs_yields(cat: catalog.Catalog, button: bool):
    mqtt = cat.settings.mqtt.model_copy(update={"refresh_button": button})
    other = copy.copy(cat)
    object.__setattr__(other, "settings", cat.settings.model_copy(update={"mqtt": mqtt}))
    assert discovery.config_count(other) == sum(1 for _ in discovery.iter_configs(other))
    assert discovery.config_count(other) == len(discovery.configs(cat)) - (not button)


def test_temperature_config(configs: dict[str, dict], cat: catalog.Catalog):
    p = configs["homeassistant/sensor/soest/soest_brightsky_temperature/config"]
    assert p["unique_id"] == "soest_brightsky_temperature"
    assert p["object_id"] == "soest_brightsky_temperature"
    assert p["default_entity_id"] == "sensor.soest_brightsky_temperature"
    assert p["name"] == "Temperature"
    assert p["state_topic"] == "soest/brightsky/temperature"
    assert p["json_attributes_topic"] == "soest/brightsky/temperature/attributes"
    assert p["device_class"] == "temperature"
    assert p["unit_of_measurement"] == "°C"
    assert p["state_class"] == "measurement"
    assert p["suggested_display_precision"] == 1
    assert p["availability"] == [{"topic": "soest/gateway/status"}, {"topic": "soest/brightsky/status"}]
    assert p["availability_mode"] == "all"
    # max_age 2h beats 2 x heartbeat (30 min).
    assert p["expire_after"] == 7200
    device = p["device"]
    assert device["identifiers"] == ["soest_brightsky"]
    assert device["name"] == "Soest Weather"
    assert device["manufacturer"] == "Deutscher Wetterdienst (via Bright Sky)"
    assert device["model"]
    assert device["configuration_url"].startswith("https://")
    assert device["via_device"] == "soest_gateway"
    assert p["origin"]["name"] == "Soest MQTT Gateway"
    assert p["origin"]["sw_version"]
    assert p["origin"]["support_url"].startswith("https://")
    assert "entity_category" not in p


def test_enum_binary_and_timestamp(configs: dict[str, dict]):
    condition = configs["homeassistant/sensor/soest/soest_brightsky_condition/config"]
    assert condition["device_class"] == "enum"
    assert condition["options"] == ["dry", "fog", "rain", "sleet", "snow", "hail", "thunderstorm"]
    assert "unit_of_measurement" not in condition
    assert "state_class" not in condition
    daylight = configs["homeassistant/binary_sensor/soest/soest_sun_daylight/config"]
    assert daylight["device_class"] == "light"
    assert daylight["state_topic"] == "soest/sun/daylight"
    sunset = configs["homeassistant/sensor/soest/soest_sun_next_sunset/config"]
    assert sunset["device_class"] == "timestamp"
    icon = configs["homeassistant/sensor/soest/soest_brightsky_icon/config"]
    assert icon["enabled_by_default"] is False
    irradiance = configs["homeassistant/sensor/soest/soest_brightsky_irradiance/config"]
    assert (irradiance["device_class"], irradiance["unit_of_measurement"]) == ("irradiance", "W/m²")
    direction = configs["homeassistant/sensor/soest/soest_brightsky_wind_direction/config"]
    assert (direction["state_class"], direction["unit_of_measurement"]) == ("measurement_angle", "°")


def test_gateway_and_diagnostic_entities(configs: dict[str, dict]):
    conn = configs["homeassistant/binary_sensor/soest/soest_gateway_connection/config"]
    assert conn["entity_category"] == "diagnostic"
    assert conn["device_class"] == "connectivity"
    assert conn["state_topic"] == "soest/gateway/status"
    assert (conn["payload_on"], conn["payload_off"]) == ("online", "offline")
    assert "availability" not in conn  # it must show "disconnected", not "unavailable"
    assert conn["device"]["identifiers"] == ["soest_gateway"]
    last = configs["homeassistant/sensor/soest/soest_brightsky_last_fetch/config"]
    assert last["entity_category"] == "diagnostic"
    assert last["device_class"] == "timestamp"
    assert last["availability"] == [{"topic": "soest/gateway/status"}]
    errors = configs["homeassistant/sensor/soest/soest_sun_fetch_errors/config"]
    assert errors["entity_category"] == "diagnostic"
    assert errors["state_topic"] == "soest/sun/fetch_errors"


def test_payload_bytes_are_stable(cat: catalog.Catalog):
    first = {t: discovery.encode(p) for t, p in discovery.configs(cat).items()}
    second = {t: discovery.encode(p) for t, p in discovery.configs(cat).items()}
    assert first == second


@pytest.mark.parametrize(("change", "problem"), [
    (lambda p: p.update(unit_of_measurement="°F", device_class="humidity"), "not valid with device_class"),
    (lambda p: p.pop("state_topic"), "state_topic"),
    (lambda p: p.update(state_topic="soest/+/temperature"), "state_topic"),
    (lambda p: p["device"].update(identifiers=[]), "identifiers"),
    (lambda p: p.update(unique_id="other"), "object_id"),
    (lambda p: p.update(availability_topic="x/y"), "availability"),
    (lambda p: p.update(entity_category="config"), "entity_category"),
    (lambda p: p.update(state_class="total_increasing"), "state_class"),
    (lambda p: p.update(expire_after=0), "expire_after"),
    (lambda p: p.update(colour="red"), "colour"),
])
def test_validator_catches_broken_payloads(configs: dict[str, dict], change, problem: str):
    topic = "homeassistant/sensor/soest/soest_brightsky_temperature/config"
    payload = copy.deepcopy(configs[topic])
    change(payload)
    problems = ha_rules.validate_discovery(topic, payload)
    assert any(problem in p for p in problems), problems


def test_validator_rejects_bad_topic(configs: dict[str, dict]):
    payload = configs["homeassistant/sensor/soest/soest_brightsky_temperature/config"]
    assert ha_rules.validate_discovery("homeassistant/sensor/so.est/soest_brightsky_temperature/config", payload)
