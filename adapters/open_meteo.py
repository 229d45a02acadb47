"""Modelled radiation, cloud cover and gusts for the exact point, with a 3-hour look-ahead, from Open-Meteo."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from gateway import adapter_api as api

# Our field -> Open-Meteo `current` variable. The request asks for km/h; the rest is °C, %, W/m².
CURRENT: dict[str, str] = {
    "shortwave_radiation": "shortwave_radiation", "direct_radiation": "direct_radiation",
    "diffuse_radiation": "diffuse_radiation", "cloud_cover": "cloud_cover",
    "wind_gusts": "wind_gusts_10m", "temperature": "temperature_2m",
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
# Times: current.time and hourly.time have no offset; they are in the response's utc_offset_seconds (a fixed
# offset, see below), else in the configured zone.
FIELDS = frozenset(CURRENT) | {"is_day"} | frozenset(LOOK_AHEAD)


Options = api.AdapterOptions  # the city's coordinates and time zone are all Open-Meteo needs


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, "/v1/forecast", {
        **api.point(opts, "latitude", "longitude"),
        "timezone": opts.timezone,
        "current": ",".join([*CURRENT.values(), "is_day"]),
        "hourly": ",".join(HOURLY),
        "forecast_days": "2",  # the 3-hour window after 21:00 reaches into tomorrow
        "wind_speed_unit": "kmh",
    })


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    if data.get("error") not in (None, False):  # HTTP 400 {"error": true, "reason": "Latitude must be ..."}
        raise api.ParseError(f"Open-Meteo error: {api.clip(data.get('reason'), 200)}", kind="upstream_error")
    current = api.as_dict(data.get("current"))
    hourly = api.as_dict(data.get("hourly"))
    if not ({*CURRENT.values(), "is_day"}.intersection(current) or set(HOURLY).intersection(hourly)):
        raise api.ParseError("neither 'current' nor 'hourly' has any expected variable", kind="bad_schema")
    # Open-Meteo applies the offset valid at request time to the whole series, also across a DST
    # change (open-meteo/open-meteo#1255), so the response's own offset beats the zone's rules.
    zone = api.offset_zone(data.get("utc_offset_seconds")) or opts.zone
    observed = api.local_datetime(current.get("time"), zone) or now
    times = [api.local_datetime(t, zone) for t in api.as_list(hourly.get("time"))]
    series = {variable: api.series(times, hourly.get(variable)) for variable in HOURLY}
    station = api.station_at("Open-Meteo model grid", api.position(data.get("latitude"), data.get("longitude")), opts)
    readings: list[api.Reading] = []
    for field, variable in CURRENT.items():
        value, source = api.finite_number(current.get(variable)), "current"
        if value is None and variable in RADIATION:
            # The hourly value whose hour contains the current time.
            value = next((n for t, n in series[variable] if t - HOUR < observed <= t), None)
            source = "hourly" if value is not None else None
        readings.append(api.Reading(field, value, observed, station, {"upstream_field": variable, "source": source}))
    is_day = api.flag(current.get("is_day"))
    readings.append(api.Reading("is_day", is_day, observed, station, {"upstream_field": "is_day"}))
    for field, (variable, combine) in LOOK_AHEAD.items():
        # Every hour overlapping (now, now + 3 h]: a gust late in the current hour still counts.
        hours = [n for t, n in series[variable] if t > now and t - HOUR < now + WINDOW]
        value = api.finite_number(combine(hours)) if hours else None
        readings.append(api.Reading(field, value, observed, station, {"upstream_field": variable, "hours": len(hours)}))
    return readings


ADAPTER = api.Adapter(
    name="open_meteo", title="Solar radiation forecast", fields=FIELDS, options=Options, request=request, parse=parse,
    provider="Open-Meteo", dataset="Weather forecast API (/v1/forecast): current conditions and hourly forecast",
    license="CC BY 4.0; the free API without a key is for non-commercial use only",
    attribution="Weather data by Open-Meteo.com (CC BY 4.0)", info_url="https://open-meteo.com/en/docs")
