"""Home Assistant MQTT discovery payload rules (HA 2026.11) and a validator, for the tests."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gateway.ha import (
    _is_str_list,
    measurement_problems,
)

SUPPORTED_COMPONENTS = frozenset({
    "alarm_control_panel", "binary_sensor", "button", "camera", "climate", "cover", "date", "datetime",
    "device_automation", "device_tracker", "event", "fan", "humidifier", "image", "infrared",
    "lawn_mower", "light", "lock", "notify", "number", "scene", "siren", "select", "sensor", "switch",
    "tag", "text", "time", "update", "vacuum", "valve", "water_heater",
})


# `<prefix>/<component>/[<node_id>/]<object_id>/config`; _TOPIC_MATCHER is HA's TOPIC_MATCHER. The greedy
# prefix makes DISCOVERY_TOPIC_RE ambiguous with a node_id, so validate_discovery() strips the prefix first.
_TOPIC_MATCHER = r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"


DISCOVERY_TOPIC_RE = re.compile(r"^(?P<prefix>.+)/" + _TOPIC_MATCHER + "$")


ENTITY_CATEGORIES = frozenset({"config", "diagnostic"})


AVAILABILITY_MODES = frozenset({"all", "any", "latest"})


BUTTON_DEVICE_CLASSES = frozenset({"identify", "restart", "update"})


EVENT_DEVICE_CLASSES = frozenset({"doorbell", "button", "motion"})


COMMON_ENTITY_KEYS = frozenset({
    "unique_id", "default_entity_id", "object_id", "device", "origin", "availability",
    "availability_topic", "availability_template", "availability_mode", "payload_available",
    "payload_not_available", "enabled_by_default", "visible_by_default", "entity_category", "icon",
    "entity_picture", "json_attributes_topic", "json_attributes_template", "message_expiry_interval",
    "qos", "encoding", "group", "name",
})  # object_id: removed in 2026.x but silently dropped, and still read by HA < 2026.4


SENSOR_KEYS = COMMON_ENTITY_KEYS | {
    "state_topic", "value_template", "device_class", "state_class", "unit_of_measurement",
    "expire_after", "force_update", "last_reset_value_template", "options", "suggested_display_precision",
}


BINARY_SENSOR_KEYS = COMMON_ENTITY_KEYS | {
    "state_topic", "payload_on", "payload_off", "device_class", "expire_after", "force_update",
    "off_delay", "value_template",
}


BUTTON_KEYS = COMMON_ENTITY_KEYS | {
    "command_topic", "command_template", "payload_press", "retain", "device_class",
}


EVENT_KEYS = COMMON_ENTITY_KEYS | {"state_topic", "event_types", "device_class", "value_template"}


COMPONENT_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "sensor": SENSOR_KEYS, "binary_sensor": BINARY_SENSOR_KEYS, "button": BUTTON_KEYS, "event": EVENT_KEYS,
})


DEVICE_KEYS = frozenset({
    "identifiers", "connections", "name", "manufacturer", "model", "model_id", "hw_version",
    "sw_version", "serial_number", "suggested_area", "configuration_url", "via_device", "child_device",
})


ORIGIN_KEYS = frozenset({"name", "sw_version", "support_url"})


AVAILABILITY_KEYS = frozenset({"topic", "payload_available", "payload_not_available", "value_template"})


_URL_SCHEMES = ("http://", "https://", "homeassistant://")


_ENTITY_OBJECT_ID_RE = re.compile(r"[a-z0-9_]+")


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


_MAX_TOPIC_BYTES = 65535


def valid_publish_topic(topic: str) -> bool:
    """True if an MQTT client may publish to `topic` (no wildcards, no `$`, no control chars)."""
    if not isinstance(topic, str) or not topic or topic.startswith("$"):
        return False
    if "+" in topic or "#" in topic or _CONTROL_RE.search(topic):
        return False
    try:
        return len(topic.encode("utf-8")) <= _MAX_TOPIC_BYTES
    except UnicodeEncodeError:  # lone surrogates
        return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_in(value: object, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _url_problems(where: str, block: Mapping[str, Any], key: str) -> list[str]:
    if key not in block or (isinstance(block[key], str) and block[key].startswith(_URL_SCHEMES)):
        return []
    return [f"{where}.{key} {block[key]!r} is not an http://, https:// or homeassistant:// URL"]


def _device_problems(device: object) -> list[str]:
    if not isinstance(device, Mapping):
        return ["device is missing" if device is None else "device must be an object"]
    problems = [f"unknown device key {k!r}" for k in device if k not in DEVICE_KEYS]
    if not _is_str_list(device.get("identifiers")):
        problems.append("device.identifiers must be a non-empty list of non-empty strings")
    if not isinstance(device.get("name"), str) or not device["name"]:
        problems.append("device.name must be a non-empty string")
    return problems + _url_problems("device", device, "configuration_url")


def _origin_problems(origin: object) -> list[str]:
    if not isinstance(origin, Mapping):
        return ["origin is missing" if origin is None else "origin must be an object"]
    problems = [f"unknown origin key {k!r}" for k in origin if k not in ORIGIN_KEYS]
    if not isinstance(origin.get("name"), str) or not origin["name"]:
        problems.append("origin.name must be a non-empty string")
    return problems + _url_problems("origin", origin, "support_url")


def _availability_problems(payload: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if "availability" in payload and "availability_topic" in payload:
        problems.append("availability and availability_topic are mutually exclusive")
    entries = payload.get("availability", ())
    if "availability" in payload and not (isinstance(entries, list) and entries):
        problems.append("availability must be a non-empty list")
        entries = ()
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "topic" not in entry:
            problems.append(f"availability[{i}] must be an object with a topic")
            continue
        problems += [f"unknown availability[{i}] key {k!r}" for k in entry if k not in AVAILABILITY_KEYS]
        if not valid_publish_topic(entry["topic"]):
            problems.append(f"availability[{i}].topic {entry['topic']!r} is not a valid publish topic")
    if not _is_in(mode := payload.get("availability_mode", "latest"), AVAILABILITY_MODES):
        problems.append(f"availability_mode {mode!r} is not one of all, any, latest")
    return problems


def _platform_problems(component: str, payload: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    required = "command_topic" if component == "button" else "state_topic"
    if component in COMPONENT_KEYS and required not in payload:
        problems.append(f"{component} requires {required}")
    if (expire := payload.get("expire_after")) is not None and not (_is_int(expire) and expire > 0):
        problems.append(f"expire_after {expire!r} must be a positive integer (seconds)")
    device_class = payload.get("device_class")
    if component == "binary_sensor":  # a unit, state_class or options is already an unknown key
        problems += measurement_problems(component, device_class, None, None)
    elif component == "sensor":
        problems += measurement_problems(component, device_class, payload.get("unit_of_measurement"),
                                         payload.get("state_class"), payload.get("options"))
        precision = payload.get("suggested_display_precision")
        if precision is not None and not (_is_int(precision) and precision >= 0):
            problems.append(f"suggested_display_precision {precision!r} must be a non-negative integer")
        if "last_reset_value_template" in payload and payload.get("state_class") != "total":
            problems.append("last_reset_value_template requires state_class 'total'")
    elif component in ("button", "event") and device_class is not None:
        allowed = BUTTON_DEVICE_CLASSES if component == "button" else EVENT_DEVICE_CLASSES
        if not _is_in(device_class, allowed):
            problems.append(f"unknown {component} device_class {device_class!r}")
    if component == "event" and not _is_str_list(payload.get("event_types")):
        problems.append("event requires event_types, a non-empty list of non-empty strings")
    return problems


def validate_discovery(topic: str, payload: Mapping[str, Any], prefix: str = "homeassistant") -> list[str]:
    """Human-readable problems with one single-component discovery config; empty means valid."""
    if not isinstance(payload, Mapping):
        return ["payload must be a JSON object"]
    problems: list[str] = []
    match = re.fullmatch(re.escape(prefix) + "/" + _TOPIC_MATCHER, topic) if isinstance(topic, str) else None
    component = match["component"] if match else ""
    if match is None or not valid_publish_topic(topic):
        problems.append(f"topic {topic!r} is not {prefix}/<component>/[<node_id>/]<object_id>/config")
    elif component not in SUPPORTED_COMPONENTS:
        problems.append(f"component {component!r} is not supported by HA MQTT discovery")
    unique_id = payload.get("unique_id")
    if not isinstance(unique_id, str) or not unique_id:
        problems.append("unique_id must be a non-empty string")
    elif match is not None and match["object_id"] != unique_id:
        problems.append(f"object_id {match['object_id']!r} in the topic differs from unique_id {unique_id!r}")
    if component in COMPONENT_KEYS:
        problems += [f"unknown {component} key {k!r} (HA drops it silently)"
                     for k in payload if k not in COMPONENT_KEYS[component]]
    if "name" not in payload:
        problems.append("name is missing (use null to take the device name)")
    elif payload["name"] is not None and not isinstance(payload["name"], str):
        problems.append("name must be a string or null")
    if (entity_id := payload.get("default_entity_id")) is not None and component in SUPPORTED_COMPONENTS:
        domain, _, object_id = str(entity_id).partition(".")
        if domain != component or not _ENTITY_OBJECT_ID_RE.fullmatch(object_id):
            problems.append(f"default_entity_id {entity_id!r} must look like '{component}.<a-z0-9_>'")
    problems += _device_problems(payload.get("device"))
    problems += _origin_problems(payload.get("origin"))
    problems += _availability_problems(payload)
    category = payload.get("entity_category")
    if category is not None and not _is_in(category, ENTITY_CATEGORIES):
        problems.append(f"entity_category {category!r} is not one of config, diagnostic")
    elif category == "config" and component in ("sensor", "binary_sensor"):
        problems.append(f"{component} does not allow entity_category 'config'")
    if "qos" in payload and not (_is_int(payload["qos"]) and 0 <= payload["qos"] <= 2):
        problems.append(f"qos {payload['qos']!r} is not 0, 1 or 2")
    problems += [f"{key} {value!r} is not a valid publish topic" for key, value in payload.items()
                 if key.endswith("_topic") and not valid_publish_topic(value)]
    return problems + _platform_problems(component, payload)
