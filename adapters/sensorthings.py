"""Latest observations of one Thing's Datastreams from an OGC SensorThings API (FROST) server."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from gateway import adapter_api as api

# Our field (the alias the user chose) -> Datastream name on the server. The defaults follow the
# a constructed example, not a documented server; every real deployment sets its own.
# Times: phenomenonTime (an instant or the end of an interval) needs its offset; without one the fetch time
# is used and the attributes say so.
DEFAULT_DATASTREAMS = {"illuminance": "Beleuchtungsstärke", "temperature": "Lufttemperatur"}
# One request: the first matching Thing, its Locations and each Datastream's newest Observation.
EXPAND = "Locations,Datastreams($expand=Observations($orderby=phenomenonTime desc;$top=1))"
# Why an alias has no value when its Datastream is absent. Servers page expanded Datastreams (FROST at its
# defaultTop, 100; Hamburg's Urban Data Hub documents "Datastreams@iot.nextLink" in a Thing): one request sees the
# first page only, so the note says when there were more.
MISSING = ("no Datastream of this name", "no Datastream of this name on the first page (the server pages them)")


class Options(api.AdapterOptions):
    version: str = Field(default="v1.1", pattern=r"^v\d+\.\d+$")
    thing_filter: str = Field(default="substringof('Sensorbox 37',name)", min_length=1, max_length=500)  # [I]
    # Our field (an alias) -> the Datastream's name on the server, matched exactly.
    datastreams: dict[api.FieldKey, Annotated[api.NonBlank, Field(max_length=200)]] = Field(
        default_factory=lambda: dict(DEFAULT_DATASTREAMS), min_length=1, max_length=50)


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, f"/{opts.version}/Things", {"$filter": opts.thing_filter, "$top": "1", "$expand": EXPAND})


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    things = api.member(data, "value", list, "the response", errors={"code", "message", "error", "type"})
    if not things:
        raise api.ParseError(f"no Thing matches $filter {api.clip(opts.thing_filter, 80)}", kind="not_found")
    thing = things[0]
    streams = thing.get("Datastreams") if isinstance(thing, dict) else None
    if not isinstance(streams, list):
        raise api.ParseError("the Thing has no expanded 'Datastreams' list", kind="bad_schema")
    by_name = {s["name"]: s for s in reversed(streams) if isinstance(s, dict) and isinstance(s.get("name"), str)}
    if not set(opts.datastreams.values()) & by_name.keys():
        raise api.ParseError("the Thing has none of the configured Datastreams", kind="not_found")
    station, missing = _station(thing, opts), MISSING[bool(thing.get("Datastreams@iot.nextLink"))]
    return [_reading(alias, name, by_name.get(name), now, station, missing) for alias, name in opts.datastreams.items()]


def _reading(alias: str, name: str, stream: dict[str, Any] | None, now: datetime, station: api.Station,
             missing: str) -> api.Reading:
    """The newest Observation of one Datastream; without a Datastream or Observation, None and a note why."""
    attributes: dict[str, Any] = {"datastream": api.clip(name, 200)}
    if stream is None:
        return api.Reading(alias, None, now, station, {**attributes, "note": missing})
    symbol = attributes["upstream_unit"] = api.clip(api.dig(stream, "unitOfMeasurement", "symbol"), 40)
    attributes["datastream_id"] = api.identifier(stream.get("@iot.id"))
    latest = next(iter(api.as_list(stream.get("Observations"))), None)
    if not isinstance(latest, dict):
        return api.Reading(alias, None, now, station, {**attributes, "note": "no Observation yet"})
    end = latest.get("phenomenonTime")  # an instant, or an interval "start/end"
    observed_at = api.aware_datetime(end.rsplit("/", 1)[-1].strip()) if isinstance(end, str) else None
    attributes |= {} if observed_at else {"note": "phenomenonTime missing or without UTC offset; fetch time used"}
    # Trust unitOfMeasurement: a value goes out in our unit for its quantity (K as °C, klx as lx, m/s as km/h); a
    # unit we do not know is refused with the reason, a Datastream without a symbol (a count, a state) passes.
    raw = api.number(latest.get("result"))
    value, attributes["unit"] = api.in_our_unit(raw, symbol) if symbol else (raw, None)
    if symbol and attributes["unit"] is None:
        attributes["refused"] = f"unit {symbol!r} is not one we know; the value is not published"
    return api.Reading(alias, value, observed_at or now, station, attributes)


def _station(thing: dict[str, Any], opts: Options) -> api.Station:
    """The Thing, placed at its first Location: a GeoJSON Point, or the centroid of a Polygon or other shape (real
    Things carry their building's or district's footprint), bare or inside a Feature."""
    where = api.geojson_position(api.dig(next(iter(api.as_list(thing.get("Locations"))), None), "location"), api.number)
    ident = api.identifier(thing.get("@iot.id"))
    return api.station_at(api.text(thing.get("name"), 80) or f"Thing {ident}", where, opts, id=ident)


ADAPTER = api.Adapter(
    name="sensorthings", title="Urban sensors", provider="OGC SensorThings API server (e.g. FROST)",
    dataset="Latest Observation per configured Datastream of one Thing",
    license="set by the server's operator (see its data portal)",
    attribution="Operator of the configured SensorThings API server", info_url="https://docs.ogc.org/is/18-088/18-088.html",
    fields=frozenset(DEFAULT_DATASTREAMS), options=Options, request=request, parse=parse,
    dynamic_fields=lambda opts: frozenset(opts.datastreams),
)
