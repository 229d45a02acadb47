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
# defaultTop, 100; Hamburg's Urban Data Hub documents "Datastreams@iot.nextLink" in a Thing): the core follows
# that link on the server's own origin (api.odata_paging); a link elsewhere is not followed, and the note says so.
MISSING = ("no Datastream of this name", "no Datastream of this name on the pages read (more are on another host)")


class Options(api.AdapterOptions):
    version: str = Field(default="v1.1", pattern=r"^v\d+\.\d+$")
    thing_filter: str = Field(default="substringof('Sensorbox 37',name)", min_length=1, max_length=500)  # [I]
    # Our field (an alias) -> the Datastream's name on the server, matched exactly.
    datastreams: dict[api.FieldKey, Annotated[api.NonBlank, Field(max_length=200)]] = Field(
        default_factory=lambda: dict(DEFAULT_DATASTREAMS), min_length=1, max_length=50)
    mqtt: api.UpstreamMqtt | None = None  # the server's MQTT broker: each new Observation pushed within a second


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, f"/{opts.version}/Things", {"$filter": opts.thing_filter, "$top": "1", "$expand": EXPAND})


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    things = api.member(data, "value", list, "the response", errors={"code", "message", "error", "type"})
    thing = api.require((things or [None])[0], f"no Thing matches {api.clip(opts.thing_filter, 80)}", "not_found")
    streams = api.member(api.as_dict(thing), "Datastreams", list, "the Thing (not expanded?)", errors=())
    by_name = {s["name"]: s for s in reversed(streams) if isinstance(s, dict) and isinstance(s.get("name"), str)}
    if not set(opts.datastreams.values()) & by_name.keys():
        raise api.ParseError("the Thing has none of the configured Datastreams", kind="not_found")
    station, missing = _station(thing, opts), MISSING[bool(thing.get("Datastreams@iot.nextLink"))]
    return [_reading(alias, name, by_name.get(name), now, station, missing) for alias, name in opts.datastreams.items()]


def _reading(alias: str, name: str, stream: dict[str, Any] | None, now: datetime, station: api.Station,
             missing: str) -> api.Reading:
    """The newest Observation of one Datastream; without a Datastream or Observation, None and a note why."""
    if stream is None:
        return api.Reading(alias, None, now, station, {"datastream": api.clip(name, 200), "note": missing})
    attributes = {"datastream": api.clip(name, 200), "datastream_id": api.identifier(stream.get("@iot.id")),
                  "upstream_unit": api.clip(api.dig(stream, "unitOfMeasurement", "symbol"), 40)}
    return _observed(alias, next(iter(api.as_list(stream.get("Observations"))), None), now, station, attributes)


def _observed(alias: str, obs: object, now: datetime, station: api.Station | None, attrs: dict) -> api.Reading:
    """One Observation, polled (the newest of its Datastream) or pushed."""
    if not isinstance(obs, dict):
        return api.Reading(alias, None, now, station, {**attrs, "note": "no Observation yet"})
    end = obs.get("phenomenonTime")  # an instant, or an interval "start/end"
    observed_at = api.aware_datetime(end.rsplit("/", 1)[-1].strip()) if isinstance(end, str) else None
    attrs = attrs | ({} if observed_at else {"note": "phenomenonTime missing or without UTC offset; fetch time used"})
    # Trust unitOfMeasurement: K as °C, klx as lx, m/s as km/h; a unit we do not know is refused with the reason.
    value, unit = api.trusted_unit(api.number(obs.get("result")), attrs.get("upstream_unit"))
    return api.Reading(alias, value, observed_at or now, station, attrs | unit)


def push_topic(opts: Options, polled: api.Reading) -> str | None:
    """Where FROST publishes each new Observation of the polled reading's Datastream (its id as in the REST URLs)."""
    key = api.odata_key(polled.attributes.get("datastream_id"))
    return f"{opts.mqtt.topic_prefix or opts.version}/Datastreams({key})/Observations" if key and opts.mqtt else None


def parse_pushed(body: bytes, polled: api.Reading, now: datetime) -> tuple[str | None, api.Reading]:
    """One Observation as FROST pushes it (its full JSON). Without result or time the core drops it as malformed."""
    obs = api.load_json_object(body)
    attrs = {k: polled.attributes.get(k) for k in ("datastream", "upstream_unit", "datastream_id")}
    return api.identifier(obs.get("@iot.id")), _observed(polled.field, obs, now, polled.station, attrs)


def _station(thing: dict[str, Any], opts: Options) -> api.Station:
    """The Thing, placed at its first Location: a GeoJSON Point, or the centroid of a Polygon or other shape (real
    Things carry their building's or district's footprint), bare or inside a Feature."""
    where = api.geojson_position(api.dig(next(iter(api.as_list(thing.get("Locations"))), None), "location"), api.number)
    ident = api.identifier(thing.get("@iot.id"))
    return api.station_at(api.text(thing.get("name"), 80) or f"Thing {ident}", where, opts, id=ident)


ADAPTER = api.Adapter(
    name="sensorthings", title="Urban sensors", provider="OGC SensorThings API server (e.g. FROST)",
    dataset="Latest Observation per configured Datastream of one Thing", license="set by the server's operator",
    attribution="Operator of the configured SensorThings API server", info_url="https://docs.ogc.org/is/18-088/18-088.html",
    fields=frozenset(DEFAULT_DATASTREAMS), options=Options, request=request, parse=parse,
    dynamic_fields=lambda opts: frozenset(opts.datastreams), push=api.Push(lambda o: o.mqtt, push_topic, parse_pushed),
    paging=api.odata_paging("Datastreams"),
)
