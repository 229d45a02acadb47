"""Water level, trend and MNW/MHW state of one PEGELONLINE gauge (WSV), configured or nearest."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import Field

from adapters.base import Adapter, AdapterOptions, clip, finite_number, load_json_object
from gateway.errors import ParseError
from gateway.geo import distance_m
from gateway.records import Reading, Request, Station

# Our field -> what it is. W series come in three units [C]: "cm" above the gauge zero (most
# rivers), "m+NN" metres above sea level (canals, e.g. Datteln-Hamm-Kanal) and "m+PNP" metres above
# the gauge zero (two reservoirs). Each unit is converted to both fields, using the gauge zero
# (metres above NN/NHN) where one has to be added or taken away.
FIELDS = {
    "water_level": "level above the gauge zero, cm",
    "water_level_nn": "level above sea level (NN/NHN), m",
    "trend": "currentMeasurement.trend -1/0/1",
    "state": "currentMeasurement.stateMnwMhw",
}
TRENDS = ("falling", "steady", "rising")
TREND_CODES = {-1: "falling", 0: "steady", 1: "rising"}
# All six documented values [C]: below MNW, between, above MHW, no marks, disturbed gauge, >25 h old.
STATES = ("low", "normal", "high", "unknown", "commented", "out-dated")
NO_VALUE = 99999  # some gauges send this placeholder instead of a reading [C]
ID_KEYS = ("uuid", "number", "shortname", "longname")  # what /stations/{station}.json accepts
FLAGS = {"includeTimeseries": "true", "includeCurrentMeasurement": "true", "prettyprint": "false"}


class Options(AdapterOptions):
    # uuid (recommended), number or name; names are not unique. None: the nearest within radius_km.
    station: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^/\\]*[^/\\.][^/\\]*$")
    radius_km: float = Field(default=30.0, gt=0, le=500)
    timeseries: str = Field(default="W", pattern=r"^[A-Za-z0-9_ÄÖÜäöü]{1,40}$")


def request(opts: Options, base_url: str) -> Request:
    base = base_url.rstrip("/")
    if opts.station:
        return Request(url=f"{base}/stations/{quote(opts.station.strip(), safe='')}.json", params=FLAGS)
    return Request(url=f"{base}/stations.json", params={
        "latitude": f"{opts.latitude:.4f}", "longitude": f"{opts.longitude:.4f}", "radius": f"{opts.radius_km:g}",
        "timeseries": opts.timeseries, **FLAGS})


def parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    gauge, series, dist = _choose(_load_stations(body), opts)
    lat, lon = _position(gauge)
    station = Station(name=clip(_text(gauge, "longname", "shortname") or "gauge", 80),
                      id=clip(_text(gauge, "uuid"), 40), latitude=lat, longitude=lon, distance_m=dist)
    current = series.get("currentMeasurement")
    current = current if isinstance(current, dict) else {}
    value = finite_number(current.get("value"))
    value = None if value == NO_VALUE else value
    unit = _text(series, "unit")
    # Absurd inputs can overflow the conversion (1e308 m * 100): only finite numbers go out.
    level_cm, level_nn = (finite_number(v) for v in _levels(value, unit, _gauge_zero(series.get("gaugeZero"))))
    trend = current.get("trend")
    raw_state = current.get("stateMnwMhw")
    values = {
        "water_level": level_cm,
        "water_level_nn": level_nn,
        "trend": TREND_CODES.get(trend) if isinstance(trend, int) and not isinstance(trend, bool) else None,
        "state": raw_state if raw_state in STATES else None,
    }
    attributes: dict[str, Any] = {
        "water": clip(_text(gauge.get("water"), "longname", "shortname"), 80), "km": finite_number(gauge.get("km")),
        "agency": clip(_text(gauge, "agency"), 80), "number": clip(_text(gauge, "number"), 20),
        "timeseries": clip(_text(series, "longname", "shortname"), 80), "upstream_unit": clip(unit, 20),
        "upstream_value": value, "state_mnw_mhw": clip(_text(current, "stateMnwMhw"), 20),
        "state_nsw_hsw": clip(_text(current, "stateNswHsw"), 20),
        # Why a gauge is disturbed ("Techn. Störung"); its value may be wrong then (state "commented").
        "comment": clip(_text(series.get("comment"), "longDescription", "shortDescription")),
    }
    if not current:
        attributes["note"] = "the gauge has no current measurement"
    observed_at = _timestamp(current.get("timestamp")) if current else now
    return [Reading(field, values[field], observed_at, station, attributes) for field in FIELDS]


def _choose(stations: list[Any], opts: Options) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """The configured (or nearest) gauge, its timeseries and its distance from the configured point."""
    if not stations:
        raise ParseError("no gauge in the answer (none within the radius?)", kind="not_found")
    gauges = [s for s in stations if isinstance(s, dict) and isinstance(s.get("timeseries"), list)]
    if not gauges:
        raise ParseError("no station carries a 'timeseries' list", kind="bad_schema")
    wanted = opts.timeseries.casefold()
    found: list[tuple[float | None, dict[str, Any], dict[str, Any]]] = []
    for gauge in gauges:
        series = next((t for t in gauge["timeseries"] if (_text(t, "shortname") or "").casefold() == wanted), None)
        lat, lon = _position(gauge)
        if series is not None:
            found.append((distance_m(opts.latitude, opts.longitude, lat, lon)
                          if lat is not None and lon is not None else None, gauge, series))
    if opts.station:
        # A station request answers with that one gauge; in a list, prefer the one named exactly.
        key = opts.station.strip().casefold()
        named = [f for f in found if key in {(_text(f[1], k) or "").casefold() for k in ID_KEYS}]
        found = named or (found if len(found) == 1 else [])
    else:
        # The radius is the server's filter; checking it again keeps far gauges out if it is ignored.
        found = sorted((f for f in found if f[0] is not None and f[0] <= opts.radius_km * 1000),
                       key=lambda f: f[0] or 0.0)
    if not found:
        raise ParseError(f"no gauge with a {opts.timeseries!r} timeseries matches", kind="not_found")
    return found[0][1], found[0][2], found[0][0]


def _levels(value: float | None, unit: str | None, zero_nn: float | None) -> tuple[float | None, float | None]:
    """(cm above the gauge zero, m above NN) from a reading in ``unit``; None where it cannot be known."""
    kind = (unit or "").replace(" ", "").casefold()
    if value is None:
        return None, None
    if kind == "cm":
        return value, None if zero_nn is None else round(zero_nn + value / 100, 3)
    if kind.startswith("m+pnp"):
        return round(value * 100, 1), None if zero_nn is None else round(zero_nn + value, 3)
    if kind.startswith("m+") and ("nn" in kind or "nhn" in kind):
        return None if zero_nn is None else round((value - zero_nn) * 100, 1), value
    return None, None


def _gauge_zero(zero: object) -> float | None:
    """The gauge zero in metres above NN/NHN (its unit reads e.g. "m. ü. NN")."""
    if not isinstance(zero, dict) or not isinstance(zero.get("unit"), str):
        return None
    unit = zero["unit"].replace(" ", "").casefold()
    return finite_number(zero.get("value")) if unit.startswith("m") and ("nn" in unit or "nhn" in unit) else None


def _timestamp(value: object) -> datetime:
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise ParseError(f"currentMeasurement.timestamp {clip(value, 40)!r} is not ISO 8601 with an offset",
                         kind="bad_schema")
    return stamp


def _position(gauge: dict[str, Any]) -> tuple[float | None, float | None]:
    """(latitude, longitude), or (None, None): some gauges have no coordinates [C]."""
    lat, lon = finite_number(gauge.get("latitude")), finite_number(gauge.get("longitude"))
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None, None
    return lat, lon




def _text(entity: object, *keys: str) -> str | None:
    if not isinstance(entity, dict):
        return None
    return next((entity[k] for k in keys if isinstance(entity.get(k), str) and entity[k].strip()), None)


def _load_stations(body: bytes) -> list[Any]:
    """/stations.json answers with a list, /stations/{id}.json with one station object."""
    if body.lstrip()[:1] == b"[":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise ParseError("invalid JSON array", kind="bad_json") from None
        if isinstance(data, list):
            return data
    station = load_json_object(body)
    if "uuid" in station or "timeseries" in station:
        return [station]
    kind = "upstream_error" if {"status", "message", "error"} & station.keys() else "bad_schema"
    raise ParseError("expected a station or a list of stations", kind=kind)


ADAPTER = Adapter(
    name="pegelonline",
    title="Water level",
    provider="Wasserstraßen- und Schifffahrtsverwaltung des Bundes (WSV)",
    dataset="PEGELONLINE current measurement of one gauge (REST API v2)",
    license="Datenlizenz Deutschland – Namensnennung – 2.0 / GeoNutzV (WSV)",
    attribution="Wasserstraßen- und Schifffahrtsverwaltung des Bundes (WSV), PEGELONLINE",
    info_url="https://www.pegelonline.wsv.de/webservice/dokuRestapi",
    fields=frozenset(FIELDS),
    options=Options,
    request=request,
    parse=parse,
)
