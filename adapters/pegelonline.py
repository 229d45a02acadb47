"""Water level, trend and MNW/MHW state of one PEGELONLINE gauge (WSV), configured or nearest."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import Field, field_validator

from gateway import adapter_api as api

# Our field -> what it is. W series come in three units [C]: "cm" above the gauge zero (most
# rivers), "m+NN" metres above sea level (canals, e.g. Datteln-Hamm-Kanal) and "m+PNP" metres above
# the gauge zero (two reservoirs). Each unit is converted to both fields, using the gauge zero
# (metres above NN/NHN) where one has to be added or taken away.
# Times: currentMeasurement.timestamp is ISO 8601 with its offset ("+02:00"); one without is bad_schema.
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
# Timeseries that are water levels: "W" (WASSERSTAND ROHDATEN). A gauge carries others beside it that are no
# level at all and must not become one [C: a public client's test data]: DFH (DURCHFAHRTSHÖHE, the clearance under a
# bridge, in cm and with a gauge zero like a level), Q (m³/s), WT/LT (°C), VA (m/s), O2 (mg/l), PH.
WATER_LEVEL_SERIES = frozenset({"w"})
FLAGS = {"includeTimeseries": "true", "includeCurrentMeasurement": "true", "prettyprint": "false"}


class Options(api.AdapterOptions):
    # uuid (recommended), number or name; names are not unique. None: the nearest within radius_km.
    station: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^/\\]*[^/\\.][^/\\]*$")
    radius_km: float = Field(default=30.0, gt=0, le=500)
    timeseries: str = Field(default="W", pattern=r"^[A-Za-z0-9_ÄÖÜäöü]{1,40}$")

    @field_validator("timeseries")
    @classmethod
    def _water_level(cls, value: str) -> str:
        if value.casefold() not in WATER_LEVEL_SERIES:
            raise ValueError(f"{value!r} is not a water-level timeseries; valid: W (this source publishes levels)")
        return value


def request(opts: Options, base_url: str) -> api.Request:
    if opts.station:
        return api.get(base_url, f"/stations/{quote(opts.station.strip(), safe='')}.json", FLAGS)
    return api.get(base_url, "/stations.json", {
        "latitude": f"{opts.latitude:.4f}", "longitude": f"{opts.longitude:.4f}", "radius": f"{opts.radius_km:g}",
        "timeseries": opts.timeseries, **FLAGS})


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    gauge, series, dist = _choose(_load_stations(body), opts)
    lat, lon = api.position(gauge.get("latitude"), gauge.get("longitude")) or (None, None)
    station = api.Station(name=api.clip(_text(gauge, "longname", "shortname") or "gauge", 80),
                      id=api.clip(_text(gauge, "uuid"), 40), latitude=lat, longitude=lon, distance_m=dist)
    current = series.get("currentMeasurement")
    current = current if isinstance(current, dict) else {}
    value = api.finite_number(current.get("value"))
    value = None if value == NO_VALUE else value
    unit = _text(series, "unit")
    # Absurd inputs can overflow the conversion (1e308 m * 100): only finite numbers go out.
    level_cm, level_nn = (api.finite_number(v) for v in _levels(value, unit, _gauge_zero(series.get("gaugeZero"))))
    trend = current.get("trend")
    raw_state = current.get("stateMnwMhw")
    values = {
        "water_level": level_cm,
        "water_level_nn": level_nn,
        "trend": TREND_CODES.get(trend) if isinstance(trend, int) and not isinstance(trend, bool) else None,
        "state": raw_state if raw_state in STATES else None,
    }
    attributes: dict[str, Any] = {
        "water": api.clip(_text(gauge.get("water"), "longname", "shortname"), 80),
        "km": api.finite_number(gauge.get("km")),
        "agency": api.clip(_text(gauge, "agency"), 80), "number": api.clip(_text(gauge, "number"), 20),
        "timeseries": api.clip(_text(series, "longname", "shortname"), 80), "upstream_unit": api.clip(unit, 20),
        "upstream_value": value, "state_mnw_mhw": api.clip(_text(current, "stateMnwMhw"), 20),
        "state_nsw_hsw": api.clip(_text(current, "stateNswHsw"), 20),
        # Why a gauge is disturbed ("Techn. Störung"); its value may be wrong then (state "commented").
        "comment": api.clip(_text(series.get("comment"), "longDescription", "shortDescription")),
    }
    if not current:
        attributes["note"] = "the gauge has no current measurement"
    observed_at = api.aware_datetime(current.get("timestamp")) if current else now
    if observed_at is None:
        raise api.ParseError(f"currentMeasurement.timestamp {api.clip(current.get('timestamp'), 40)!r} is not ISO 8601 "
                         "with an offset", kind="bad_schema")
    return [api.Reading(field, values[field], observed_at, station, attributes) for field in FIELDS]


def _choose(stations: list[Any], opts: Options) -> tuple[dict[str, Any], dict[str, Any], float | None]:
    """The configured (or nearest) gauge, its timeseries and its distance from the configured point."""
    if not stations:
        raise api.ParseError("no gauge in the answer (none within the radius?)", kind="not_found")
    gauges = [s for s in stations if isinstance(s, dict) and isinstance(s.get("timeseries"), list)]
    if not gauges:
        raise api.ParseError("no station carries a 'timeseries' list", kind="bad_schema")
    wanted = opts.timeseries.casefold()
    found: list[tuple[float | None, dict[str, Any], dict[str, Any]]] = []
    for gauge in gauges:
        series = next((t for t in gauge["timeseries"] if (_text(t, "shortname") or "").casefold() == wanted), None)
        # Some gauges have no coordinates [C].
        where = api.position(gauge.get("latitude"), gauge.get("longitude"))
        if series is not None:
            found.append((api.distance_m(opts.latitude, opts.longitude, *where) if where else None, gauge, series))
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
        raise api.ParseError(f"no gauge with a {opts.timeseries!r} timeseries matches", kind="not_found")
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
    return api.finite_number(zero.get("value")) if unit.startswith("m") and ("nn" in unit or "nhn" in unit) else None


def _text(entity: object, *keys: str) -> str | None:
    if not isinstance(entity, dict):
        return None
    return next((entity[k] for k in keys if isinstance(entity.get(k), str) and entity[k].strip()), None)


def _load_stations(body: bytes) -> list[Any]:
    """/stations.json answers with a list, /stations/{id}.json with one station object."""
    data = api.load_json(body)
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and ("uuid" in data or "timeseries" in data):
        return [data]
    kind = api.error_kind(data, ("status", "message", "error"))
    raise api.ParseError("expected a station or a list of stations", kind=kind)


ADAPTER = api.Adapter(
    name="pegelonline", title="Water level",
    provider="Wasserstraßen- und Schifffahrtsverwaltung des Bundes (WSV)",
    dataset="PEGELONLINE current measurement of one gauge (REST API v2)",
    license="Datenlizenz Deutschland – Namensnennung – 2.0 / GeoNutzV (WSV)",
    attribution="Wasserstraßen- und Schifffahrtsverwaltung des Bundes (WSV), PEGELONLINE",
    info_url="https://www.pegelonline.wsv.de/webservice/dokuRestapi",
    fields=frozenset(FIELDS), options=Options, request=request, parse=parse)
