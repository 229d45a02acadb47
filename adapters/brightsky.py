"""Current weather from the Deutscher Wetterdienst through Bright Sky's ``/current_weather``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from gateway import adapter_api as api

CONDITIONS = ("dry", "fog", "rain", "sleet", "snow", "hail", "thunderstorm")
ICONS = ("clear-day", "clear-night", "partly-cloudy-day", "partly-cloudy-night", "cloudy", "fog",
         "wind", "rain", "sleet", "snow", "hail", "thunderstorm")
# Our field -> (Bright Sky field, how it is read). Units are Bright Sky's `dwd` units unless converted:
# °C, hPa, km/h, mm, %, m, minutes; solar_10 is kWh/m² per 10 minutes and becomes W/m².
# Times: weather.timestamp is ISO 8601 with its offset (+00:00); a stamp without one is refused as bad_schema.
FIELDS: api.FieldTable = {
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
    "irradiance": ("solar_10", api.converted(api.kwh_per_m2_per_10min_to_w_per_m2)),
    "condition": ("condition", api.one_of(CONDITIONS)),
    "icon": ("icon", api.one_of(ICONS)),
}


class Options(api.AdapterOptions):
    max_dist: int = Field(default=50_000, ge=1_000, le=500_000)
    dwd_station_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9,]+$")


def request(opts: Options, base_url: str) -> api.Request:
    if opts.dwd_station_id:
        return api.get(base_url, "/current_weather", {"dwd_station_id": opts.dwd_station_id})
    return api.get(base_url, "/current_weather", {**api.point(opts), "max_dist": str(opts.max_dist)})


def parse(body: bytes, opts: Options, fetched_at: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    record = api.member(data, "weather", dict, "the response", errors=())
    api.expect_any(record, (key for key, _ in FIELDS.values()), "the 'weather' object has none of the expected fields")
    observed_at = api.require(api.aware_datetime(record.get("timestamp")),
                              f"timestamp {api.clip(record.get('timestamp'), 40)!r} is not ISO 8601 with a UTC offset")
    stations = _stations(data.get("sources"))
    fallback = api.as_dict(record.get("fallback_source_ids"))  # field -> the source that filled it in

    def station_for(key: str) -> api.Station | None:
        return stations.get(fallback.get(key, record.get("source_id")))

    return api.read_fields(record, FIELDS, observed_at, station_for)


def _stations(sources: object) -> dict[Any, api.Station]:
    """The response's `sources` by id, the id a weather field names its station by."""
    return {item["id"]: _station(item) for item in api.as_list(sources) if isinstance(item, dict) and "id" in item}


def _station(source: dict[str, Any]) -> api.Station:
    return api.Station(
        name=str(source["station_name"])[:80] if source.get("station_name") else f"source {source['id']}",
        id=str(source.get("dwd_station_id") or source.get("wmo_station_id") or source["id"])[:20],
        latitude=api.finite_number(source.get("lat")), longitude=api.finite_number(source.get("lon")),
        distance_m=api.finite_number(source.get("distance")),
    )


ADAPTER = api.Adapter(
    name="brightsky", title="Weather", provider="Deutscher Wetterdienst (via Bright Sky)",
    dataset="Current weather (SYNOP observations)", license="CC BY 4.0 (DWD terms of use); Bright Sky is free to use",
    attribution="Quelle: Deutscher Wetterdienst, via Bright Sky (brightsky.dev)",
    info_url="https://brightsky.dev/docs/#/operations/getCurrentWeather",
    fields=frozenset(FIELDS), options=Options, request=request, parse=parse)
