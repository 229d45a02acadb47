"""Latest observations of one Thing's Datastreams from an OGC SensorThings API (FROST) server."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from gateway import adapter_api as api

# Our field (the alias the user chose) -> Datastream name on the server. The defaults follow the
# CONSTRUCTED example in sources.md §2.3 [I]; every real deployment sets its own.
DEFAULT_DATASTREAMS = {"illuminance": "Beleuchtungsstärke", "temperature": "Lufttemperatur"}
ALIAS = re.compile(r"^[a-z0-9_]{1,64}$")
# One request: the first matching Thing, its Locations and each Datastream's newest Observation.
EXPAND = "Locations,Datastreams($expand=Observations($orderby=phenomenonTime desc;$top=1))"
ERROR_KEYS = {"code", "message", "error", "type"}


class Options(api.AdapterOptions):
    version: str = Field(default="v1.1", pattern=r"^v\d+\.\d+$")
    thing_filter: str = Field(default="substringof('Sensorbox 37',name)", min_length=1, max_length=500)  # [I]
    datastreams: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_DATASTREAMS), min_length=1,
                                        max_length=50)

    @field_validator("datastreams")
    @classmethod
    def _aliases(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, name in value.items():
            if not ALIAS.match(alias):
                raise ValueError(f"datastream alias {alias!r} must match ^[a-z0-9_]+$ (it becomes a field name)")
            if not name.strip() or len(name) > 200:
                raise ValueError(f"datastream name for {alias!r} must be 1-200 characters")
        return value


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, f"/{opts.version}/Things", {"$filter": opts.thing_filter, "$top": "1", "$expand": EXPAND})


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    things = api.member(data, "value", list, "the response", errors=ERROR_KEYS)
    if not things:
        raise api.ParseError(f"no Thing matches $filter {api.clip(opts.thing_filter, 80)}", kind="not_found")
    thing = things[0]
    streams = thing.get("Datastreams") if isinstance(thing, dict) else None
    if not isinstance(streams, list):
        raise api.ParseError("the Thing has no expanded 'Datastreams' list", kind="bad_schema")
    by_name = {s["name"]: s for s in reversed(streams) if isinstance(s, dict) and isinstance(s.get("name"), str)}
    if not set(opts.datastreams.values()) & by_name.keys():
        raise api.ParseError("the Thing has none of the configured Datastreams", kind="not_found")
    station = _station(thing, opts)
    return [_reading(alias, name, by_name.get(name), now, station) for alias, name in opts.datastreams.items()]


def _reading(alias: str, name: str, stream: dict[str, Any] | None, now: datetime, station: api.Station) -> api.Reading:
    """The newest Observation of one Datastream; without a Datastream or Observation, None and a note why."""
    attributes: dict[str, Any] = {"datastream": api.clip(name, 200)}
    if stream is None:
        return api.Reading(alias, None, now, station, {**attributes, "note": "no Datastream of this name"})
    attributes["upstream_unit"] = api.clip(api.as_dict(stream.get("unitOfMeasurement")).get("symbol"), 40)
    attributes["datastream_id"] = _iot_id(stream)
    latest = next(iter(api.as_list(stream.get("Observations"))), None)
    if not isinstance(latest, dict):
        return api.Reading(alias, None, now, station, {**attributes, "note": "no Observation yet"})
    end = latest.get("phenomenonTime")  # an instant, or an interval "start/end"
    observed_at = api.aware_datetime(end.rsplit("/", 1)[-1].strip()) if isinstance(end, str) else None
    if observed_at is None:
        attributes["note"] = "phenomenonTime missing or without UTC offset; fetch time used"
    return api.Reading(alias, api.number(latest.get("result")), observed_at or now, station, attributes)


def _iot_id(entity: dict[str, Any]) -> str | None:
    value = entity.get("@iot.id")
    return api.clip(value, 40) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _station(thing: dict[str, Any], opts: Options) -> api.Station:
    """The Thing, placed at its first Location (a GeoJSON Point, bare or inside a Feature)."""
    locations = thing.get("Locations")
    geometry = api.dig(locations[0] if isinstance(locations, list) and locations else None, "location")
    if api.dig(geometry, "type") == "Feature":
        geometry = api.dig(geometry, "geometry")
    coords = api.dig(geometry, "coordinates") if api.dig(geometry, "type") == "Point" else None
    # GeoJSON order is [lon, lat].
    where = api.position(coords[1], coords[0], api.number) if isinstance(coords, list) and len(coords) >= 2 else None
    return api.station_at(api.text(thing.get("name"), 80) or f"Thing {_iot_id(thing)}", where, opts, id=_iot_id(thing))


ADAPTER = api.Adapter(
    name="sensorthings", title="Urban sensors", provider="OGC SensorThings API server (e.g. FROST)",
    dataset="Latest Observation per configured Datastream of one Thing",
    license="set by the server's operator (see its data portal)",
    attribution="Operator of the configured SensorThings API server", info_url="https://docs.ogc.org/is/18-088/18-088.html",
    fields=frozenset(DEFAULT_DATASTREAMS), options=Options, request=request, parse=parse,
    dynamic_fields=lambda opts: frozenset(opts.datastreams),
)
