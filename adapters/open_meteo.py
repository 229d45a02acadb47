"""Modelled radiation, cloud cover and gusts for the exact point, with a 3-hour look-ahead, from Open-Meteo."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import Adapter, AdapterOptions, clip, finite_number, load_json_object
from gateway.errors import ParseError
from gateway.geo import distance_m
from gateway.records import Reading, Request, Station

# Our field -> Open-Meteo `current` variable. The request asks for km/h; the rest is °C, %, W/m².
CURRENT: dict[str, str] = {
    "shortwave_radiation": "shortwave_radiation",
    "direct_radiation": "direct_radiation",
    "diffuse_radiation": "diffuse_radiation",
    "cloud_cover": "cloud_cover",
    "wind_gusts": "wind_gusts_10m",
    "temperature": "temperature_2m",
}
# Radiation in `current=` is only inferred to work [I], so these also come hourly as a fallback.
RADIATION = frozenset({"shortwave_radiation", "direct_radiation", "diffuse_radiation"})
# Look-ahead field -> (hourly variable, how the hours in the window are combined).
LOOK_AHEAD: dict[str, tuple[str, Callable[[list[float]], float]]] = {
    "max_gust_3h": ("wind_gusts_10m", max),
    "mean_radiation_3h": ("shortwave_radiation", lambda values: sum(values) / len(values)),
}
HOURLY = ("wind_gusts_10m", *sorted(RADIATION))
WINDOW = timedelta(hours=3)
# Open-Meteo's hourly values describe the hour *ending* at their timestamp ("preceding hour
# mean" for radiation, "preceding hour max" for gusts, per its variable table).
HOUR = timedelta(hours=1)
FIELDS = frozenset(CURRENT) | {"is_day"} | frozenset(LOOK_AHEAD)


class Options(AdapterOptions):
    pass


def request(opts: Options, base_url: str) -> Request:
    params = {
        "latitude": f"{opts.latitude:.4f}",
        "longitude": f"{opts.longitude:.4f}",
        "timezone": opts.timezone,
        "current": ",".join([*CURRENT.values(), "is_day"]),
        "hourly": ",".join(HOURLY),
        "forecast_days": "2",  # the 3-hour window after 21:00 reaches into tomorrow
        "wind_speed_unit": "kmh",
    }
    return Request(url=f"{base_url.rstrip('/')}/v1/forecast", params=params)


def parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    data = load_json_object(body)
    if data.get("error") not in (None, False):  # HTTP 400 {"error": true, "reason": "Latitude must be ..."}
        raise ParseError(f"Open-Meteo error: {clip(data.get('reason'), 200)}", kind="upstream_error")
    current = data.get("current")
    current = current if isinstance(current, dict) else {}
    hourly = data.get("hourly")
    hourly = hourly if isinstance(hourly, dict) else {}
    if not ({*CURRENT.values(), "is_day"}.intersection(current) or set(HOURLY).intersection(hourly)):
        raise ParseError("neither 'current' nor 'hourly' has any expected variable", kind="bad_schema")
    zone = _zone(data.get("utc_offset_seconds"), opts.timezone)
    observed = _local(current.get("time"), zone) or now
    times = hourly.get("time")
    times = [_local(t, zone) for t in times] if isinstance(times, list) else []
    station = _station(data, opts)

    def series(variable: str) -> list[tuple[datetime, float]]:
        values = hourly.get(variable)
        values = values if isinstance(values, list) else []
        return [(t, n) for t, v in zip(times, values, strict=False)
                if t is not None and (n := finite_number(v)) is not None]

    readings: list[Reading] = []
    for field, variable in CURRENT.items():
        value, source = finite_number(current.get(variable)), "current"
        if value is None and variable in RADIATION:
            # The hourly value whose hour contains the current time.
            value = next((n for t, n in series(variable) if t - HOUR < observed <= t), None)
            source = "hourly" if value is not None else None
        attrs = {"upstream_field": variable, "source": source}
        readings.append(Reading(field, value, observed, station, attrs))
    is_day = finite_number(current.get("is_day"))
    readings.append(Reading("is_day", bool(is_day) if is_day in (0.0, 1.0) else None, observed, station,
                            {"upstream_field": "is_day"}))
    for field, (variable, combine) in LOOK_AHEAD.items():
        # Every hour overlapping (now, now + 3 h]: a gust late in the current hour still counts.
        window = [n for t, n in series(variable) if t > now and t - HOUR < now + WINDOW]
        value = finite_number(combine(window)) if window else None
        attrs = {"upstream_field": variable, "hours": len(window)}
        readings.append(Reading(field, value, observed, station, attrs))
    return readings


def _zone(offset: object, name: str) -> tzinfo:
    # Open-Meteo applies the offset valid at request time to the whole series, also across a DST
    # change (open-meteo/open-meteo#1255), so the response's own offset beats the zone's rules.
    seconds = finite_number(offset)
    if seconds is not None and abs(seconds) < 86_400:
        return timezone(timedelta(seconds=seconds))
    return ZoneInfo(name)


def _local(value: object, zone: tzinfo) -> datetime | None:
    """A local ISO time without offset ("2026-06-21T14:30") as an aware datetime."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value)
        stamp = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=zone)
        stamp.astimezone(UTC)  # rejects year-1/9999 times the core could not compare
    except (ValueError, OverflowError):
        return None
    return stamp


def _station(data: dict[str, Any], opts: Options) -> Station:
    lat, lon = finite_number(data.get("latitude")), finite_number(data.get("longitude"))
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return Station(name="Open-Meteo model grid")
    return Station(name="Open-Meteo model grid", latitude=lat, longitude=lon,
                   distance_m=distance_m(opts.latitude, opts.longitude, lat, lon))


ADAPTER = Adapter(
    name="open_meteo",
    title="Solar radiation forecast",
    provider="Open-Meteo",
    dataset="Weather forecast API (/v1/forecast): current conditions and hourly forecast",
    license="CC BY 4.0; the free API without a key is for non-commercial use only",
    attribution="Weather data by Open-Meteo.com (CC BY 4.0)",
    info_url="https://open-meteo.com/en/docs",
    fields=FIELDS,
    options=Options,
    request=request,
    parse=parse,
)
