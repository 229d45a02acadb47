"""UV index forecast for one city from DWD's uvi.json, with the WHO risk category for today."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import Field

from adapters.base import Adapter, AdapterOptions, clip, finite_number, load_json_object, local_datetime
from gateway.errors import ParseError
from gateway.geo import distance_m
from gateway.records import Reading, Request, Station

# uvi.json's day keys, in order from its `forecast_day`.
DAYS = ("today", "tomorrow", "dayafter_to")
# Our field -> days after the local date of `now`. uvi.json's "today" is its `forecast_day`: when
# the file is older than today (DWD publishes in the morning; before that, or when an update is
# missed, yesterday's file is served), every day moves down: our today is its "tomorrow", our
# tomorrow its "dayafter_to", and days the file does not cover are None.
UV_FIELDS: dict[str, int] = {"uv_today": 0, "uv_tomorrow": 1}
RISKS = ("low", "moderate", "high", "very_high", "extreme")
# WHO categories: the lowest UV index of each risk level, highest first (0-2 low ... 11+ extreme).
RISK_FLOORS: tuple[tuple[int, str], ...] = ((11, "extreme"), (8, "very_high"), (6, "high"), (3, "moderate"),
                                            (0, "low"))
FIELDS = frozenset(UV_FIELDS) | {"risk_today"}
# Positions of the cities near Soest, from an NRW script that maps districts to uvi.json cities
# (sources.md §3.3). Other cities are published without a distance.
CITY_POSITIONS: dict[str, tuple[float, float]] = {
    "Kahler Asten": (51.180, 8.490),
    "Düsseldorf": (51.221, 6.776),
    "Osnabrück": (52.279, 8.052),
}


class Options(AdapterOptions):
    # Exact spelling as in the file, umlauts included ("Osnabrück"). Kahler Asten is the city an
    # NRW script assigns to Kreis Soest; it is a summit station about 51 km away [I].
    city: str = Field(default="Kahler Asten", min_length=1, max_length=80)


def request(opts: Options, base_url: str) -> Request:
    return Request(url=f"{base_url.rstrip('/')}/climate_environment/health/alerts/uvi.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    data = load_json_object(body)
    content = data.get("content")
    if not isinstance(content, list):
        raise ParseError("no 'content' list in uvi.json", kind="bad_schema")
    zone = ZoneInfo(opts.timezone)
    updated = local_datetime(data.get("last_update"), zone)
    issued = _date(data.get("forecast_day")) or (updated.date() if updated else None)
    if issued is None:
        raise ParseError("uvi.json has neither a forecast_day nor a last_update", kind="bad_schema")
    cities = [c for c in content if isinstance(c, dict) and "city" in c]
    if content and not cities:
        raise ParseError("no entry in uvi.json has a 'city'", kind="bad_schema")
    entry = next((c for c in cities if c.get("city") == opts.city), None)
    if entry is None and cities:
        raise ParseError(f"city {clip(opts.city, 80)!r} is not in uvi.json", kind="not_found")
    # An empty `content` is a valid file without forecasts: every value is None.
    forecast = entry.get("forecast") if entry is not None else None
    forecast = forecast if isinstance(forecast, dict) else {}
    shift = (now.astimezone(zone).date() - issued).days
    base = {"forecast_day": issued.isoformat(), "next_update": clip(data.get("next_update"), 40)}
    station = _station(opts)
    observed = updated or now
    readings: list[Reading] = []
    for field, offset in UV_FIELDS.items():
        index = shift + offset
        day = DAYS[index] if 0 <= index < len(DAYS) else None
        value = finite_number(forecast.get(day)) if day else None
        uv = round(value) if value is not None else None
        readings.append(Reading(field, uv, observed, station, {**base, "upstream_day": day}))
    today = next(r for r in readings if r.field == "uv_today")
    risk = next((name for floor, name in RISK_FLOORS if isinstance(today.value, int) and today.value >= floor), None)
    readings.append(Reading("risk_today", risk, observed, station, today.attributes))
    return readings


def _date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return None




def _station(opts: Options) -> Station:
    position = CITY_POSITIONS.get(opts.city)
    if position is None:
        return Station(name=opts.city)
    lat, lon = position
    return Station(name=opts.city, latitude=lat, longitude=lon,
                   distance_m=distance_m(opts.latitude, opts.longitude, lat, lon))


ADAPTER = Adapter(
    name="dwd_uv",
    title="UV index",
    provider="Deutscher Wetterdienst",
    dataset="UV index forecast (UV-Gefahrenindex, uvi.json)",
    license="dl-de/by-2-0 (GeoNutzV)",
    attribution="Datenbasis: Deutscher Wetterdienst",
    info_url="https://opendata.dwd.de/climate_environment/health/alerts/",
    fields=FIELDS,
    options=Options,
    request=request,
    parse=parse,
    reevaluate=True,  # at midnight "today" moves to the file's "tomorrow" without a new fetch
)
