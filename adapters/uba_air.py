"""Hourly air quality (PM10, PM2.5, NO₂, O₃, index 0–4) of one station from the Umweltbundesamt air_data API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field

from gateway import adapter_api as api

Pollutant = Literal["pm10", "pm25", "no2", "o3"]
# Field table: UBA component id -> our field. Values arrive in µg/m³ (the unit /components/json lists for all
# four), so no converters. 1/3/5 are documented; 9 = PM2.5 is inferred, hence the table is an option default.
COMPONENTS: dict[int, Pollutant] = {1: "pm10", 3: "o3", 5: "no2", 9: "pm25"}
POLLUTANTS: tuple[Pollutant, ...] = ("pm10", "pm25", "no2", "o3")
# UBA's air quality index 0–4 ("sehr gut" … "sehr schlecht"), published under its English labels.
INDEX_TEXT = ("very_good", "good", "moderate", "poor", "very_poor")
# Times: the hour keys "YYYY-MM-DD HH:MM:SS" have no offset and are CET (UTC+1) all year, see CET below.
FIELDS = (*POLLUTANTS, "index", "index_text")

# UBA stamps hours in CET all year (no summer time), so a fixed UTC+1 offset, not Europe/Berlin.
CET = timezone(timedelta(hours=1), "CET")
STAMP = "%Y-%m-%d %H:%M:%S"
HOUR = timedelta(hours=1)
# Positions in a /stations/json entry and in an /airquality/json row; both are positional arrays.
ST_ID, ST_CODE, ST_NAME, ST_ACTIVE_TO, ST_LON, ST_LAT = 0, 1, 2, 6, 7, 8
ROW_INDEX, ROW_INCOMPLETE, ROW_COMPONENTS = 1, 2, 3


class Options(api.AdapterOptions):
    station_code: str = Field(default="DENW068", pattern=r"^[A-Z0-9]{4,12}$")  # LANUV Soest-Ost
    station_id: int | None = Field(default=None, ge=1)  # numeric UBA id; the lookup resolves station_code
    station_name: str | None = None  # station_name/_lat/_lon are filled by the lookup for the Station info
    station_lat: float | None = Field(default=None, ge=-90, le=90)
    station_lon: float | None = Field(default=None, ge=-180, le=180)
    components: dict[int, Pollutant] = Field(default_factory=lambda: dict(COMPONENTS))
    # request() has no clock, so no dates are sent and the server fills in today (CET). Asking for hours 1–24
    # of that day lets us take the newest published hour; None leaves the hour to the server (the current one).
    time_from: int | None = Field(default=1, ge=1, le=24)
    time_to: int | None = Field(default=24, ge=1, le=24)


def request(opts: Options, base_url: str) -> api.Request:
    params = {"station": opts.station_id, "time_from": opts.time_from, "time_to": opts.time_to}
    return api.get(base_url, "/airquality/json", {k: str(v) for k, v in params.items() if v is not None})


def lookup_request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, "/stations/json", {"use": "airquality", "lang": "de"})


def lookup_parse(body: bytes, opts: Options) -> dict[str, Any]:
    entries = api.load_json_object(body).get("data")
    rows = list(entries.values()) if isinstance(entries, dict) else entries
    if not isinstance(rows, list):
        raise api.ParseError("no 'data' in the station list", kind="bad_schema")
    entries = [r for r in rows if isinstance(r, list) and len(r) > ST_LAT]
    if rows and not entries:
        raise api.ParseError("the station list holds no [id, code, name, ...] arrays", kind="bad_schema")
    matches = [r for r in entries if r[ST_CODE] == opts.station_code]
    if not matches:
        raise api.ParseError(f"station {opts.station_code!r} not in the UBA station list", kind="not_found")
    # A code can be listed twice when a station moved; the entry without an "active to" date is current.
    best = min(matches, key=lambda r: r[ST_ACTIVE_TO] is not None)
    station_id = _integer(best[ST_ID])
    if station_id is None or station_id < 1:
        raise api.ParseError(f"station {opts.station_code!r} has no numeric id", kind="bad_schema")
    lat, lon = api.number(best[ST_LAT]), api.number(best[ST_LON])
    return {"station_id": station_id,
            "station_name": api.clip(best[ST_NAME], 80) if isinstance(best[ST_NAME], str) else None,
            "station_lat": lat if lat is not None and abs(lat) <= 90 else None,
            "station_lon": lon if lon is not None and abs(lon) <= 180 else None}


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    span, row = _newest_row(api.load_json_object(body), opts)
    values: dict[str, Any] = dict.fromkeys(FIELDS)
    component: dict[str, dict[str, int | None]] = {}  # field -> UBA component id and its own index
    for item in row[ROW_COMPONENTS:]:
        cid = _integer(item[0]) if isinstance(item, list) and len(item) >= 3 else None
        field = opts.components.get(cid) if cid is not None else None
        if field is not None and cid is not None:
            values[field] = api.number(item[1])
            component[field] = {"component_id": cid, "component_index": _index(item[2])}
    index = _index(row[ROW_INDEX]) if row else None
    values["index"], values["index_text"] = index, INDEX_TEXT[index] if index is not None else None

    base: dict[str, Any] = {"station_code": opts.station_code}
    if span is not None:
        base |= {"hour_end": span[1].isoformat(), "incomplete": _integer(row[ROW_INCOMPLETE]) == 1}
    unknown = {"component_id": None, "component_index": None}
    attributes = {f: base | component.get(f, unknown) for f in POLLUTANTS}
    worst = [f for f, c in component.items() if index is not None and c["component_index"] == index]
    attributes["index"] = attributes["index_text"] = base | {"determined_by": worst}
    observed_at = span[0] if span is not None else now  # the hour's start, as UBA keys it
    station = _station(opts)
    return [api.Reading(f, values[f], observed_at, station, attributes[f]) for f in FIELDS]


def _newest_row(data: dict[str, Any], opts: Options) -> tuple[tuple[datetime, datetime] | None, list[Any]]:
    """The (start, end) and row of the newest hour of our station; (None, []) when there is no data."""
    if "data" not in data:
        kind = api.error_kind(data, ("error", "errors", "message"))
        raise api.ParseError("no 'data' in the air quality response", kind=kind)
    by_station = data["data"] if data["data"] != [] else {}  # PHP encodes an empty map as []
    if not isinstance(by_station, dict):
        raise api.ParseError("'data' is not an object", kind="bad_schema")
    if by_station and str(opts.station_id) not in by_station:
        raise api.ParseError(f"station {opts.station_id} not in the response", kind="not_found")
    series = by_station.get(str(opts.station_id), {})  # {} = no data in the window: not an error
    if not isinstance(series, dict):
        raise api.ParseError("the station's data is not an object keyed by hour", kind="bad_schema")
    hours = {span: key for key in series if (span := _hour(key)) is not None}
    if not hours:
        if series:
            raise api.ParseError("no 'YYYY-MM-DD HH:MM:SS' keys in the station's data", kind="bad_schema")
        return None, []
    newest = max(hours)
    row = series[hours[newest]]
    if not isinstance(row, list) or len(row) < ROW_COMPONENTS:
        raise api.ParseError("the newest hour is not a [dateEnd, index, incomplete, ...] array", kind="bad_schema")
    return newest, row


def _station(opts: Options) -> api.Station:
    lat, lon = opts.station_lat, opts.station_lon
    where = (lat, lon) if lat is not None and lon is not None else None
    return api.station_at(opts.station_name or opts.station_code, where, opts, id=opts.station_code)


def _hour(key: object) -> tuple[datetime, datetime] | None:
    """(start, end) of an hour key in UTC; None for other text or a year at the very ends of the calendar."""
    if not isinstance(key, str):
        return None
    try:
        start = datetime.strptime(key, STAMP).replace(tzinfo=CET).astimezone(UTC)
        return start, start + HOUR
    except (ValueError, OverflowError):
        return None


def _integer(value: object) -> int | None:
    amount = api.number(value)
    return int(amount) if amount is not None and amount.is_integer() else None


def _index(value: object) -> int | None:
    found = _integer(value)
    return found if found is not None and 0 <= found < len(INDEX_TEXT) else None


ADAPTER = api.Adapter(
    name="uba_air", title="Air quality", provider="Umweltbundesamt",
    dataset="Air quality index and 1-hour values (air_data API v3)", license="dl-de/by-2-0",
    attribution="Umweltbundesamt (data of the current year are provisional)",
    info_url="https://www.umweltbundesamt.de/daten/luft/luftdaten", fields=frozenset(FIELDS), options=Options,
    request=request, parse=parse,
    lookup=api.Lookup(needed=lambda o: o.station_id is None, request=lookup_request, parse=lookup_parse),
)
