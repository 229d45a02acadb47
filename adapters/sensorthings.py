"""Latest observations of one Thing's Datastreams from an OGC SensorThings API (FROST) server."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from adapters.base import Adapter, AdapterOptions, clip, finite_number, load_json_object
from gateway.errors import ParseError
from gateway.geo import distance_m
from gateway.records import Reading, Request, Station

# Our field (the alias the user chose) -> Datastream name on the server. The defaults follow the
# CONSTRUCTED example in sources.md §2.3 [I]; every real deployment sets its own.
DEFAULT_DATASTREAMS = {"illuminance": "Beleuchtungsstärke", "temperature": "Lufttemperatur"}
ALIAS = re.compile(r"^[a-z0-9_]{1,64}$")
# One request: the first matching Thing, its Locations and each Datastream's newest Observation.
EXPAND = "Locations,Datastreams($expand=Observations($orderby=phenomenonTime desc;$top=1))"
ERROR_KEYS = {"code", "message", "error", "type"}


class Options(AdapterOptions):
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


def request(opts: Options, base_url: str) -> Request:
    return Request(url=f"{base_url.rstrip('/')}/{opts.version}/Things",
                   params={"$filter": opts.thing_filter, "$top": "1", "$expand": EXPAND})


def parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    data = load_json_object(body)
    things = data.get("value")
    if not isinstance(things, list):
        kind = "upstream_error" if ERROR_KEYS & data.keys() else "bad_schema"
        raise ParseError("no 'value' list in the response", kind=kind)
    if not things:
        raise ParseError(f"no Thing matches $filter {clip(opts.thing_filter, 80)}", kind="not_found")
    thing = things[0]
    streams = thing.get("Datastreams") if isinstance(thing, dict) else None
    if not isinstance(streams, list):
        raise ParseError("the Thing has no expanded 'Datastreams' list", kind="bad_schema")
    by_name = {s["name"]: s for s in reversed(streams) if isinstance(s, dict) and isinstance(s.get("name"), str)}
    if not set(opts.datastreams.values()) & by_name.keys():
        raise ParseError("the Thing has none of the configured Datastreams", kind="not_found")
    station = _station(thing, opts)
    readings: list[Reading] = []
    for alias, name in opts.datastreams.items():
        stream = by_name.get(name)
        attributes: dict[str, Any] = {"datastream": clip(name, 200)}
        if stream is None:
            readings.append(Reading(alias, None, now, station, {**attributes, "note": "no Datastream of this name"}))
            continue
        unit = stream.get("unitOfMeasurement")
        attributes["upstream_unit"] = clip(unit.get("symbol"), 40) if isinstance(unit, dict) else None
        attributes["datastream_id"] = _iot_id(stream)
        observations = stream.get("Observations")
        latest = observations[0] if isinstance(observations, list) and observations else None
        if not isinstance(latest, dict):
            readings.append(Reading(alias, None, now, station, {**attributes, "note": "no Observation yet"}))
            continue
        observed_at = _phenomenon_end(latest.get("phenomenonTime"))
        if observed_at is None:
            attributes["note"] = "phenomenonTime missing or without UTC offset; fetch time used"
        readings.append(Reading(alias, _number(latest.get("result")), observed_at or now, station, attributes))
    return readings


def _number(value: object) -> float | None:
    """A finite float from a JSON number or a numeric string; anything else (text, bool, objects) is None."""
    try:
        if isinstance(value, str):
            return finite_number(float(value)) if len(value) < 50 else None
        return finite_number(value)
    except (ValueError, OverflowError):  # OverflowError: integers beyond float range
        return None


def _phenomenon_end(value: object) -> datetime | None:
    """An instant, or the end of an interval "start/end"; None unless ISO 8601 with an offset."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.rsplit("/", 1)[-1].strip())
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


def _iot_id(entity: dict[str, Any]) -> str | None:
    value = entity.get("@iot.id")
    return clip(value, 40) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _station(thing: dict[str, Any], opts: Options) -> Station:
    """The Thing, placed at its first Location (a GeoJSON Point, bare or inside a Feature)."""
    lat = lon = None
    locations = thing.get("Locations")
    location = locations[0] if isinstance(locations, list) and locations else None
    geometry = location.get("location") if isinstance(location, dict) else None
    if isinstance(geometry, dict) and geometry.get("type") == "Feature":
        geometry = geometry.get("geometry")
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        coords = geometry.get("coordinates")
        if isinstance(coords, list) and len(coords) >= 2:
            lon, lat = _number(coords[0]), _number(coords[1])  # GeoJSON order is [lon, lat]
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        lat = lon = None
    name = clip(thing.get("name"), 80) if isinstance(thing.get("name"), str) else None
    dist = distance_m(opts.latitude, opts.longitude, lat, lon) if lat is not None and lon is not None else None
    return Station(name=name or f"Thing {_iot_id(thing)}", id=_iot_id(thing), latitude=lat, longitude=lon,
                   distance_m=dist)


ADAPTER = Adapter(
    name="sensorthings",
    title="Urban sensors",
    provider="OGC SensorThings API server (e.g. FROST)",
    dataset="Latest Observation per configured Datastream of one Thing",
    license="set by the server's operator (see its data portal)",
    attribution="Operator of the configured SensorThings API server",
    info_url="https://docs.ogc.org/is/18-088/18-088.html",
    fields=frozenset(DEFAULT_DATASTREAMS),
    options=Options,
    request=request,
    parse=parse,
    dynamic_fields=lambda opts: frozenset(opts.datastreams),
)
