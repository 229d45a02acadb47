"""Current weather from the Deutscher Wetterdienst through Bright Sky's ``/current_weather``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from gateway import adapter_api as api

Converter = Callable[[float], float] | None

# Our field -> (Bright Sky field, converter). Units are Bright Sky's `dwd` units unless converted:
# °C, hPa, km/h, mm, %, m, minutes; solar_10 is kWh/m² per 10 minutes and becomes W/m².
NUMERIC: dict[str, tuple[str, Converter]] = {
    "temperature": ("temperature", None),
    "dew_point": ("dew_point", None),
    "humidity": ("relative_humidity", None),
    "pressure": ("pressure_msl", None),
    "wind_speed": ("wind_speed_10", None),
    "wind_direction": ("wind_direction_10", None),
    "wind_gust_speed": ("wind_gust_speed_10", None),
    "wind_gust_direction": ("wind_gust_direction_10", None),
    "precipitation": ("precipitation_10", None),
    "precipitation_1h": ("precipitation_60", None),
    "cloud_cover": ("cloud_cover", None),
    "visibility": ("visibility", None),
    "sunshine_30": ("sunshine_30", None),
    "sunshine_60": ("sunshine_60", None),
    "irradiance": ("solar_10", api.kwh_per_m2_per_10min_to_w_per_m2),
}
CONDITIONS = ("dry", "fog", "rain", "sleet", "snow", "hail", "thunderstorm")
ICONS = ("clear-day", "clear-night", "partly-cloudy-day", "partly-cloudy-night", "cloudy", "fog",
         "wind", "rain", "sleet", "snow", "hail", "thunderstorm")
ENUMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "condition": ("condition", CONDITIONS),
    "icon": ("icon", ICONS),
}


class Options(api.AdapterOptions):
    max_dist: int = Field(default=50_000, ge=1_000, le=500_000)
    dwd_station_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9,]+$")


def request(opts: Options, base_url: str) -> api.Request:
    params = {"lat": f"{opts.latitude:.4f}", "lon": f"{opts.longitude:.4f}", "max_dist": str(opts.max_dist)}
    if opts.dwd_station_id:
        params = {"dwd_station_id": opts.dwd_station_id}
    return api.get(base_url, "/current_weather", params)


def parse(body: bytes, opts: Options, fetched_at: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    record = api.member(data, "weather", dict, "the response", errors=())
    known = {src for src, _ in NUMERIC.values()} | {src for src, _ in ENUMS.values()}
    if not known.intersection(record):
        raise api.ParseError("the 'weather' object has none of the expected fields", kind="bad_schema")
    observed_at = api.aware_datetime(record.get("timestamp"))
    if observed_at is None:
        raise api.ParseError(f"timestamp {api.clip(record.get('timestamp'), 40)!r} is not ISO 8601 with a UTC offset",
                         kind="bad_schema")
    stations = _stations(data.get("sources"))
    main_id = record.get("source_id")
    fallback = record.get("fallback_source_ids")
    fallback = fallback if isinstance(fallback, dict) else {}

    def station_for(src_field: str) -> api.Station | None:
        return stations.get(fallback.get(src_field, main_id))

    readings: list[api.Reading] = []
    for field, (src, convert) in NUMERIC.items():
        number = api.finite_number(record.get(src))
        if number is not None and convert is not None:
            number = convert(number)
        readings.append(api.Reading(field, number, observed_at, station_for(src), {"upstream_field": src}))
    for field, (src, allowed) in ENUMS.items():
        raw = record.get(src)
        value = raw if isinstance(raw, str) and raw in allowed else None
        readings.append(api.Reading(field, value, observed_at, station_for(src), {"upstream_field": src}))
    return readings


def _stations(sources: object) -> dict[Any, api.Station]:
    out: dict[Any, api.Station] = {}
    if not isinstance(sources, list):
        return out
    for item in sources:
        if not isinstance(item, dict) or "id" not in item:
            continue
        name = item.get("station_name")
        out[item["id"]] = api.Station(
            name=str(name)[:80] if name else f"source {item['id']}",
            id=str(item.get("dwd_station_id") or item.get("wmo_station_id") or item["id"])[:20],
            latitude=api.finite_number(item.get("lat")),
            longitude=api.finite_number(item.get("lon")),
            distance_m=api.finite_number(item.get("distance")),
        )
    return out


ADAPTER = api.Adapter(
    name="brightsky", title="Weather", provider="Deutscher Wetterdienst (via Bright Sky)",
    dataset="Current weather (SYNOP observations)", license="CC BY 4.0 (DWD terms of use); Bright Sky is free to use",
    attribution="Quelle: Deutscher Wetterdienst, via Bright Sky (brightsky.dev)",
    info_url="https://brightsky.dev/docs/#/operations/getCurrentWeather",
    fields=frozenset(NUMERIC) | frozenset(ENUMS), options=Options, request=request, parse=parse)
