"""From a validated config and the adapter registry to the entities the gateway publishes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway import topics
from gateway.adapter_api import Adapter, AdapterOptions
from gateway.config import WILDCARD, Entity, Loaded, Measurement, Settings, Source, _describe
from gateway.topics import KEY_RE, RESERVED_ENTITY_KEYS


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One published entity: where its value goes and how HA should show it."""

    source: str
    key: str
    field: str
    name: str
    measurement: Measurement
    id_prefix: str  # "<city>_<source>_", one string shared by all entities of a source
    state_topic: str
    enabled_by_default: bool

    @property
    def component(self) -> str:
        return self.measurement.component

    # Derived rather than stored: big deployments have 100,000 entities.
    @property
    def unique_id(self) -> str:
        return self.id_prefix + self.key

    @property
    def attributes_topic(self) -> str:
        return topics.attributes_topic_of(self.state_topic)


@dataclass(frozen=True)
class SourceSpec:
    """One enabled source, resolved against its adapter."""

    key: str
    config: Source
    adapter: Adapter
    options: AdapterOptions
    device_name: str
    device_id: str
    status_topic: str
    last_fetch_topic: str
    fetch_errors_topic: str
    entities: tuple[EntitySpec, ...]
    by_field: Mapping[str, tuple[EntitySpec, ...]]
    interval: float
    max_age: float
    expire_after: int
    license: str
    attribution: str

    def schedule_text(self) -> str:
        if self.config.cron is not None:
            return f"cron {self.config.cron}"
        return f"every {self.interval:g}s"


@dataclass(frozen=True)
class Catalog:
    """Everything the gateway will publish, derived once at start."""

    settings: Settings
    sources: Mapping[str, SourceSpec]
    base: str
    prefix: str
    node_id: str
    gateway_device_id: str
    gateway_status_topic: str
    gateway_info_topic: str
    version_topic: str
    started_topic: str
    refresh_topic: str

    def entities(self) -> list[EntitySpec]:
        return [e for s in self.sources.values() for e in s.entities]


def build(loaded: Loaded, adapters: Mapping[str, Adapter]) -> Catalog:
    """Resolve adapters (the registry the CLI hands in) and options; ConfigError points at the line."""
    settings = loaded.settings
    city = settings.city
    base = settings.mqtt.base_topic
    sources: dict[str, SourceSpec] = {}
    for key, source in settings.sources.items():
        adapter = adapters.get(source.adapter)
        if adapter is None:
            raise loaded.error(("sources", key, "adapter"),
                               f"unknown adapter {source.adapter!r} (one of: {', '.join(sorted(adapters))})")
        if not source.enabled:
            continue
        options = _options(loaded, key, source, adapter)
        fields = adapter.fields_for(options)
        entities: list[EntitySpec] = []
        by_field: dict[str, list[EntitySpec]] = {}
        id_prefix = f"{city.slug}_{key}_"
        for entity_key, entity in _expand(loaded, key, source.entities, fields):
            field = (entity.field if entity else None) or entity_key
            if field not in fields:
                raise loaded.error(("sources", key, "entities", entity_key),
                                   f"adapter {adapter.name!r} has no field {field!r} "
                                   f"(one of: {', '.join(sorted(fields))})")
            measurement_key = (entity.measurement if entity else None) or entity_key
            measurement = settings.measurements[measurement_key]
            name = (entity.name if entity else None) or measurement.name or _humanize(entity_key)
            enabled = entity.enabled_by_default if entity and entity.enabled_by_default is not None \
                else measurement.enabled_by_default
            spec = EntitySpec(
                source=key, key=entity_key, field=field, name=name, measurement=measurement,
                id_prefix=id_prefix,
                state_topic=topics.state_topic(base, key, entity_key),
                enabled_by_default=enabled)
            entities.append(spec)
            by_field.setdefault(field, []).append(spec)
        interval = source.interval()
        max_age = source.effective_max_age()
        sources[key] = SourceSpec(
            key=key, config=source, adapter=adapter, options=options,
            device_name=f"{city.name} {source.name or adapter.title}",
            device_id=f"{city.slug}_{key}",
            status_topic=topics.source_topic(base, key, topics.STATUS),
            last_fetch_topic=topics.source_topic(base, key, topics.LAST_FETCH),
            fetch_errors_topic=topics.source_topic(base, key, topics.FETCH_ERRORS),
            entities=tuple(entities),
            by_field={f: tuple(v) for f, v in by_field.items()},
            interval=interval, max_age=max_age,
            expire_after=round(max(max_age, 2 * settings.mqtt.heartbeat)),
            license=source.license or adapter.license, attribution=source.attribution or adapter.attribution)
    return Catalog(
        settings=settings, sources=sources, base=base, prefix=settings.mqtt.discovery_prefix,
        node_id=city.slug, gateway_device_id=f"{city.slug}_gateway",
        gateway_status_topic=topics.gateway_topic(base, topics.STATUS),
        gateway_info_topic=topics.gateway_topic(base, "info"),
        version_topic=topics.gateway_topic(base, "version"),
        started_topic=topics.gateway_topic(base, "started_at"),
        refresh_topic=topics.gateway_topic(base, "refresh"))


def _expand(loaded: Loaded, key: str, entities: Mapping[str, Entity | None],
            fields: frozenset[str]) -> list[tuple[str, Entity | None]]:
    """Named entities, plus one per remaining adapter field when the source lists "*"."""
    named = [(k, e) for k, e in entities.items() if k != WILDCARD]
    template = entities.get(WILDCARD)
    if template is None:
        return named
    taken = {(e.field if e else None) or k for k, e in named}
    extra = sorted(f for f in fields if f not in taken)
    bad = [f for f in extra if not KEY_RE.match(f) or f in RESERVED_ENTITY_KEYS]
    if bad:
        raise loaded.error(("sources", key, "entities", WILDCARD),
                           f"field {bad[0]!r} cannot be a topic level; list the fields by name instead")
    return named + [(f, template) for f in extra]


def _options(loaded: Loaded, key: str, source: Source, adapter: Adapter) -> AdapterOptions:
    city = loaded.settings.city
    raw: dict[str, Any] = {"latitude": city.latitude, "longitude": city.longitude,
                           "timezone": city.timezone, "elevation": city.elevation, **source.options}
    try:
        return adapter.options.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ("sources", key, "options", *err["loc"])
        raise loaded.error(loc, _describe(err)) from None


def _humanize(key: str) -> str:
    text = key.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]
