"""The sun's position and rise/set times, computed locally from the city's coordinates."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from astral import Observer
from astral.sun import azimuth, elevation, sunrise, sunset

from gateway import adapter_api as api


class Options(api.AdapterOptions):
    pass


def request(opts: Options, base_url: str) -> api.Request | None:
    return None


def parse(body: bytes, opts: Options, fetched_at: datetime) -> list[api.Reading]:
    observer = Observer(opts.latitude, opts.longitude, opts.elevation)
    zone = ZoneInfo(opts.timezone)
    now = fetched_at.astimezone(zone)
    today = now.date()
    rise_today = _event(sunrise, observer, today, zone)
    set_today = _event(sunset, observer, today, zone)
    place = api.Station(name="computed", latitude=opts.latitude, longitude=opts.longitude, distance_m=0.0)
    daylight = None
    if rise_today is not None and set_today is not None:
        daylight = rise_today <= now < set_today
    values: dict[str, object] = {
        "elevation": round(elevation(observer, now), 2),
        "azimuth": round(azimuth(observer, now), 2),
        "daylight": daylight,
        "next_sunrise": _next(sunrise, observer, now, zone),
        "next_sunset": _next(sunset, observer, now, zone),
    }
    return [api.Reading(field, value, fetched_at, place) for field, value in values.items()]  # type: ignore[arg-type]


def _event(func: object, observer: Observer, day: date, zone: ZoneInfo) -> datetime | None:
    try:
        return func(observer, day, tzinfo=zone)  # type: ignore[operator, no-any-return]
    except ValueError:
        # Polar day or night: the sun does not cross the horizon on this date.
        return None


def _next(func: object, observer: Observer, now: datetime, zone: ZoneInfo) -> datetime | None:
    for offset in range(0, 3):
        moment = _event(func, observer, now.date() + timedelta(days=offset), zone)
        if moment is not None and moment > now:
            return moment.replace(microsecond=0)
    return None


ADAPTER = api.Adapter(
    name="sun", title="Sun", provider="Computed locally (astral)", dataset="Solar position (NOAA algorithm)",
    license="Computed; no upstream data", attribution="Computed with the astral library from the city's coordinates",
    info_url="https://astral.readthedocs.io/",
    fields=frozenset({"elevation", "azimuth", "daylight", "next_sunrise", "next_sunset"}),
    options=Options, request=request, parse=parse)
