"""UV index forecast for one city from DWD's uvi.json, with the WHO risk category for today."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import Field

from gateway import adapter_api as api

# uvi.json's day keys, in order from its `forecast_day`.
DAYS = ("today", "tomorrow", "dayafter_to")
# Our field -> days after the local date of `now`. uvi.json's "today" is its `forecast_day`: when
# the file is older than today (DWD publishes in the morning; before that, or when an update is
# missed, yesterday's file is served), every day moves down: our today is its "tomorrow", our
# tomorrow its "dayafter_to", and days the file does not cover are None.
UV_FIELDS: dict[str, int] = {"uv_today": 0, "uv_tomorrow": 1}
# WHO categories: the lowest UV index of each risk level, highest first (0-2 low ... 11+ extreme).
RISK_FLOORS: tuple[tuple[int, str], ...] = ((11, "extreme"), (8, "very_high"), (6, "high"), (3, "moderate"),
                                            (0, "low"))
# Times: last_update has no offset and is German time (Europe/Berlin); forecast_day is a date.
FIELDS = frozenset(UV_FIELDS) | {"risk_today"}
# Positions of the cities near Soest, from an NRW script that maps districts to uvi.json cities
# (an inferred list, not DWD's). Other cities are published without a distance.
CITY_POSITIONS: dict[str, tuple[float, float]] = {
    "Kahler Asten": (51.180, 8.490),
    "Düsseldorf": (51.221, 6.776),
    "Osnabrück": (52.279, 8.052),
}


class Options(api.AdapterOptions):
    # Exact spelling as in the file, umlauts included ("Osnabrück"). Kahler Asten is the city an
    # NRW script assigns to Kreis Soest; it is a summit station about 51 km away [I].
    city: str = Field(default="Kahler Asten", min_length=1, max_length=80)


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, "/climate_environment/health/alerts/uvi.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    content = api.member(data, "content", list, "uvi.json", errors=())
    # last_update has no offset and is German time, whatever zone the city is configured in: a fetch at
    # 07:05 UTC got "07:30:00" of the same day [C].
    updated = api.local_datetime(data.get("last_update"), ZoneInfo("Europe/Berlin"))
    issued = api.require(api.iso_date(data.get("forecast_day")) or (updated.date() if updated else None),
                         "uvi.json has neither a forecast_day nor a last_update")
    # An empty `content` is a valid file without forecasts: every value is None.
    entry = api.pick(content, "city", lambda c: c["city"] == opts.city, f"city {opts.city!r}") or {}
    forecast = api.as_dict(entry.get("forecast"))
    base = {"forecast_day": issued.isoformat(), "next_update": api.clip(data.get("next_update"), 40)}
    station = api.station_at(opts.city, CITY_POSITIONS.get(opts.city), opts)
    readings: list[api.Reading] = []
    for field, offset in UV_FIELDS.items():
        day = api.day_key(DAYS, issued, now, opts.zone, offset)
        value = api.finite_number(forecast.get(day)) if day else None
        uv = round(value) if value is not None else None
        readings.append(api.Reading(field, uv, updated or now, station, {**base, "upstream_day": day}))
    today = readings[0]
    risk = next((name for floor, name in RISK_FLOORS if isinstance(today.value, int) and today.value >= floor), None)
    readings.append(api.Reading("risk_today", risk, today.observed_at, station, today.attributes))
    return readings


ADAPTER = api.Adapter(
    name="dwd_uv", title="UV index", provider="Deutscher Wetterdienst",
    dataset="UV index forecast (UV-Gefahrenindex, uvi.json)", license="dl-de/by-2-0 (GeoNutzV)",
    attribution="Datenbasis: Deutscher Wetterdienst", info_url="https://opendata.dwd.de/climate_environment/health/alerts/",
    fields=FIELDS, options=Options, request=request, parse=parse,
    reevaluate=True,  # at midnight "today" moves to the file's "tomorrow" without a new fetch
)
