"""Home Assistant MQTT discovery configs, built as pure data from the catalogue."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from gateway import PROJECT_URL, __version__, topics
from gateway.catalog import Catalog, EntitySpec, SourceSpec

ORIGIN_NAME = "Soest MQTT Gateway"
MANUFACTURER = "Soest MQTT Gateway project"

# Measurement field -> HA discovery key. Kept as data so the mapping is visible in one place.
MEASUREMENT_KEYS = (
    ("device_class", "device_class"),
    ("unit", "unit_of_measurement"),
    ("state_class", "state_class"),
    ("precision", "suggested_display_precision"),
    ("icon", "icon"),
    ("entity_category", "entity_category"),
)


def encode(payload: dict[str, Any]) -> bytes:
    """Stable JSON bytes, so that an unchanged config compares equal byte for byte."""
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def configs(catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Every discovery topic the catalogue produces in its ``discovery_mode``, with its config payload."""
    return dict(mode_configs(catalog))


def messages(catalog: Catalog) -> Iterator[tuple[str, bytes]]:
    """(topic, encoded payload) one at a time: a big deployment never holds them all in memory."""
    for topic, payload in mode_configs(catalog):
        yield topic, encode(payload)


def mode_configs(catalog: Catalog) -> Iterator[tuple[str, dict[str, Any]]]:
    """The configs of the catalogue's ``mqtt.discovery_mode``: per entity, or per device."""
    if catalog.settings.mqtt.discovery_mode == DEVICE:
        return iter_device_configs(catalog)
    return iter_configs(catalog)


DEVICE = "device"  # the component name HA reads device configs under: <prefix>/device/<node_id>/<id>/config


def is_device_topic(prefix: str, topic: str) -> bool:
    return topic.startswith(f"{prefix}/{DEVICE}/")


def iter_device_configs(catalog: Catalog) -> Iterator[tuple[str, dict[str, Any]]]:
    """One config per device (HA >= 2024.11), holding the same entity configs as components.

    Each component keeps its unique_id, object_id and default_entity_id, so switching modes keeps
    every entity (gateway.announce migrates); device and origin are stated once per device. A
    source's entities are contiguous in iter_configs, so one device is held at a time.
    """
    device_id: str | None = None
    device: dict[str, Any] = {}
    origin: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    for topic, payload in iter_configs(catalog):
        component = topic.split("/")[-4]
        this = payload.pop("device")
        origin = payload.pop("origin")
        if this["identifiers"][0] != device_id:
            if device_id is not None:
                yield _device_config(catalog, device_id, device, origin, components)
            device_id, device, components = this["identifiers"][0], this, {}
        components[payload["unique_id"]] = {"platform": component, **payload}
    if device_id is not None:
        yield _device_config(catalog, device_id, device, origin, components)


def _device_config(catalog: Catalog, device_id: str, device: dict[str, Any], origin: dict[str, Any],
                   components: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    topic = topics.discovery_topic(catalog.prefix, DEVICE, catalog.node_id, device_id)
    return topic, {"device": device, "origin": origin, "components": components}


def iter_configs(catalog: Catalog) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every discovery topic the catalogue produces, with its config payload, lazily."""
    gateway_device = _gateway_device(catalog)
    origin = {"name": ORIGIN_NAME, "sw_version": __version__, "support_url": PROJECT_URL}
    gateway_availability = {"topic": catalog.gateway_status_topic}

    def item(component: str, object_id: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        payload.update(unique_id=object_id, object_id=object_id,
                       default_entity_id=f"{component}.{object_id}", origin=origin)
        return topics.discovery_topic(catalog.prefix, component, catalog.node_id, object_id), payload

    yield from _gateway_configs(catalog, item, gateway_device, gateway_availability)
    for source in catalog.sources.values():
        device = _source_device(catalog, source)
        for entity in source.entities:
            yield item(entity.component, entity.unique_id, _entity_config(catalog, source, entity, device))
        yield item("sensor", f"{source.device_id}_{topics.LAST_FETCH}", {
            "name": "Last fetch",
            "state_topic": source.last_fetch_topic,
            "device_class": "timestamp",
            "entity_category": "diagnostic",
            "availability": [gateway_availability],
            "device": device,
        })
        yield item("sensor", f"{source.device_id}_{topics.FETCH_ERRORS}", {
            "name": "Fetch errors",
            "state_topic": source.fetch_errors_topic,
            "state_class": "total_increasing",
            "entity_category": "diagnostic",
            "icon": "mdi:alert-circle-outline",
            "availability": [gateway_availability],
            "device": device,
        })



Item = Callable[[str, str, dict[str, Any]], tuple[str, dict[str, Any]]]
GATEWAY_CONFIGS = 3  # connection, uptime, version; and the refresh button where it is on
SOURCE_DIAGNOSTICS = 2  # last fetch, fetch errors


def config_count(catalog: Catalog) -> int:
    """How many entity configs ``iter_configs`` yields, without building them (10,000 take 0.1 s)."""
    gateway = GATEWAY_CONFIGS + bool(catalog.settings.mqtt.refresh_button)
    return gateway + sum(len(source.entities) + SOURCE_DIAGNOSTICS for source in catalog.sources.values())


def _gateway_configs(catalog: Catalog, item: Item, gateway_device: dict[str, Any],
                     gateway_availability: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The gateway device's own diagnostic entities and the refresh button."""
    yield item("binary_sensor", f"{catalog.gateway_device_id}_connection", {
        "name": "Broker connection",
        "state_topic": catalog.gateway_status_topic,
        "payload_on": topics.ONLINE,
        "payload_off": topics.OFFLINE,
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": gateway_device,
    })
    yield item("sensor", f"{catalog.gateway_device_id}_uptime", {
        "name": "Uptime",
        "state_topic": catalog.started_topic,
        "device_class": "timestamp",
        "entity_category": "diagnostic",
        "availability": [gateway_availability],
        "device": gateway_device,
    })
    yield item("sensor", f"{catalog.gateway_device_id}_version", {
        "name": "Version",
        "state_topic": catalog.version_topic,
        "entity_category": "diagnostic",
        "icon": "mdi:tag-outline",
        "availability": [gateway_availability],
        "device": gateway_device,
    })
    if catalog.settings.mqtt.refresh_button:
        yield item("button", f"{catalog.gateway_device_id}_refresh", {
            "name": "Refresh all sources",
            "command_topic": catalog.refresh_topic,
            "payload_press": "PRESS",
            "entity_category": "diagnostic",
            "icon": "mdi:refresh",
            "availability": [gateway_availability],
            "device": gateway_device,
        })


def _entity_config(catalog: Catalog, source: SourceSpec, entity: EntitySpec,
                   device: dict[str, Any]) -> dict[str, Any]:
    m = entity.measurement
    payload: dict[str, Any] = {
        "name": entity.name,
        "state_topic": entity.state_topic,
        "json_attributes_topic": entity.attributes_topic,
        "availability": [{"topic": catalog.gateway_status_topic}, {"topic": source.status_topic}],
        "availability_mode": "all",
        "expire_after": source.expire_after,
        "device": device,
    }
    for attr, key in MEASUREMENT_KEYS:
        value = getattr(m, attr)
        if value is not None:
            payload[key] = value
    if m.options is not None:
        payload["options"] = list(m.options)
    if not entity.enabled_by_default:
        payload["enabled_by_default"] = False
    return payload


def _gateway_device(catalog: Catalog) -> dict[str, Any]:
    return {
        "identifiers": [catalog.gateway_device_id],
        "name": f"{catalog.settings.city.name} Gateway",
        "manufacturer": MANUFACTURER,
        "model": "Open-data MQTT gateway",
        "sw_version": __version__,
        "configuration_url": PROJECT_URL,
    }


def _source_device(catalog: Catalog, source: SourceSpec) -> dict[str, Any]:
    return {
        "identifiers": [source.device_id],
        "name": source.device_name,
        "manufacturer": source.adapter.provider,
        "model": source.adapter.dataset,
        "configuration_url": source.adapter.info_url,
        "via_device": catalog.gateway_device_id,
    }
