"""Open-Meteo /v1/forecast: current values, the hourly radiation fallback and the 3-hour look-ahead."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest

from adapters import open_meteo
from gateway.errors import ParseError
from tests.helpers import FIXTURES

OPTS = open_meteo.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 6, 21, 12, 41, tzinfo=UTC)  # 14:41 CEST, eleven minutes after current.time
CEST = timezone(timedelta(hours=2))


def fixture(name: str = "normal.json") -> dict[str, Any]:
    return json.loads((FIXTURES / "open_meteo" / name).read_text())


def parse(body: dict[str, Any] | bytes, now: datetime = NOW) -> dict[str, open_meteo.Reading]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {r.field: r for r in open_meteo.parse(raw, OPTS, now)}


def values(body: dict[str, Any] | bytes, now: datetime = NOW) -> dict[str, object]:
    return {k: r.value for k, r in parse(body, now).items()}


def test_normal_response():
    readings = parse((FIXTURES / "open_meteo" / "normal.json").read_bytes())
    assert set(readings) == open_meteo.ADAPTER.fields
    assert {k: r.value for k, r in readings.items()} == {
        "shortwave_radiation": 748.0, "direct_radiation": 561.0, "diffuse_radiation": 187.0,  # W/m²
        "cloud_cover": 31, "wind_gusts": 26.6, "temperature": 24.1, "is_day": True,
        # Hours ending 15:00-18:00 local overlap 14:41-17:41: gusts 27.4, 31.3, 29.9, 22.3 km/h,
        # radiation 742, 668, 560, 431 W/m².
        "max_gust_3h": 31.3, "mean_radiation_3h": 600.25,
    }
    assert all(r.observed_at == datetime(2026, 6, 21, 14, 30, tzinfo=CEST) for r in readings.values())
    assert readings["max_gust_3h"].attributes["hours"] == 4
    station = readings["cloud_cover"].station
    assert station is not None
    assert (station.latitude, station.longitude) == (51.57, 8.1)
    assert station.distance_m == pytest.approx(429.3, abs=0.1)


def test_night_zero_radiation_is_a_value():
    got = values(fixture("night.json"), now=datetime(2026, 6, 21, 21, 20, tzinfo=UTC))
    assert got["is_day"] is False
    assert got["shortwave_radiation"] == 0.0
    # 23:20 local + 3 h overlaps the hours ending 00:00 to 03:00 on June 22: dark, gusts up to 14.4 km/h.
    assert got["mean_radiation_3h"] == 0.0
    assert got["max_gust_3h"] == 14.4


@pytest.mark.parametrize("how", ["null", "missing"])
def test_missing_current_radiation_falls_back_to_the_hourly_value(how: str):
    body = fixture()
    for variable in ("shortwave_radiation", "direct_radiation", "diffuse_radiation"):
        if how == "null":
            body["current"][variable] = None
        else:
            del body["current"][variable]
    readings = parse(body)
    # current.time 14:30 lies in the hour that ends at 15:00.
    assert readings["shortwave_radiation"].value == 742.0
    assert readings["direct_radiation"].value == 549.1
    assert readings["diffuse_radiation"].value == 192.9
    assert readings["shortwave_radiation"].attributes["source"] == "hourly"
    assert readings["cloud_cover"].value == 31


def test_nulls_and_missing_fields_become_none():
    body = fixture()
    body["current"].update(cloud_cover=None, is_day=None, wind_gusts_10m="n/a")
    del body["current"]["temperature_2m"]
    del body["hourly"]["wind_gusts_10m"]
    body["hourly"]["shortwave_radiation"] = [None] * 48
    got = values(body)
    assert {k: got[k] for k in ("cloud_cover", "is_day", "wind_gusts", "temperature")} == dict.fromkeys(
        ("cloud_cover", "is_day", "wind_gusts", "temperature"))
    assert got["max_gust_3h"] is None
    assert got["mean_radiation_3h"] is None
    assert got["shortwave_radiation"] == 748.0
    assert set(got) == open_meteo.ADAPTER.fields


def test_empty_hourly_and_window_past_the_forecast():
    body = fixture()
    body["hourly"] = {"time": [], "wind_gusts_10m": [], "shortwave_radiation": []}
    got = values(body)
    assert got["max_gust_3h"] is None
    assert got["mean_radiation_3h"] is None
    assert got["cloud_cover"] == 31
    late = values(fixture(), now=datetime(2026, 6, 23, 12, 0, tzinfo=UTC))  # after the last hour
    assert late["max_gust_3h"] is None


def test_times_use_the_response_offset_not_local_rules():
    # Open-Meteo applies one offset to the whole series; with 3600 the same local hours are an hour later in UTC.
    body = fixture()
    body["utc_offset_seconds"] = 3600
    readings = parse(body, now=NOW + timedelta(hours=1))
    assert readings["temperature"].observed_at == datetime(2026, 6, 21, 13, 30, tzinfo=UTC)
    assert readings["max_gust_3h"].value == 31.3


def test_unusable_offset_falls_back_to_the_configured_zone():
    body = fixture()
    body["utc_offset_seconds"] = "+02:00"
    assert parse(body)["temperature"].observed_at == datetime(2026, 6, 21, 12, 30, tzinfo=UTC)


def test_error_reason_is_clipped():
    body = json.dumps({"error": True, "reason": "x" * 5000}).encode()
    with pytest.raises(ParseError, match=r"^Open-Meteo error: x+…$") as info:
        open_meteo.parse(body, OPTS, NOW)
    assert len(str(info.value)) < 300


def test_wrong_types_are_dropped():
    body = fixture()
    body["current"].update(time=12, is_day=2, cloud_cover=True, temperature_2m=[1])
    body["hourly"]["time"][15] = "not a time"
    body["latitude"] = 300
    readings = parse(body)
    assert readings["is_day"].value is None
    assert readings["cloud_cover"].value is None
    assert readings["temperature"].value is None
    assert readings["temperature"].observed_at == NOW  # no usable current.time
    assert readings["max_gust_3h"].value == 31.3  # the 15:00 gust is gone, 16:00 is the maximum
    station = readings["cloud_cover"].station
    assert station is not None
    assert station.distance_m is None


def test_request_url_and_params():
    req = open_meteo.request(OPTS, "http://127.0.0.1:8080/")
    assert urlsplit(req.url).path == "/v1/forecast"
    assert req.url == "http://127.0.0.1:8080/v1/forecast"
    assert dict(req.params) == {
        "latitude": "51.5710", "longitude": "8.1060", "timezone": "Europe/Berlin",
        "current": "shortwave_radiation,direct_radiation,diffuse_radiation,cloud_cover,wind_gusts_10m,"
                   "temperature_2m,is_day",
        "hourly": "wind_gusts_10m,diffuse_radiation,direct_radiation,shortwave_radiation",
        "forecast_days": "2", "wind_speed_unit": "kmh",
    }
    other = open_meteo.request(open_meteo.Options(latitude=50, longitude=7, timezone="UTC"), "https://api.open-meteo.com")
    assert other.url == "https://api.open-meteo.com/v1/forecast"
    assert other.params["timezone"] == "UTC"


def test_an_answer_in_the_legacy_current_weather_shape_keeps_the_hourly_values():
    # Older API version (issue #16, point 5): many public clients and their tests still get "current_weather"
    # (temperature, windspeed, weathercode, is_day) instead of "current"; hourly arrays end in nulls past the
    # model's horizon and a variable can be null throughout. Values ours. Nothing from current_weather is taken
    # (other names, other units), the radiation comes from the hourly hour that holds the fetch time.
    readings = parse(fixture("legacy_current_weather.json"))
    got = {k: r.value for k, r in readings.items()}
    assert got["temperature"] is None
    assert got["cloud_cover"] is None
    assert got["is_day"] is None
    assert got["shortwave_radiation"] == 610.0  # the hour 14:00-15:00 CEST holds the fetch time, 14:41
    assert readings["shortwave_radiation"].attributes["source"] == "hourly"
    assert got["diffuse_radiation"] is None
    assert got["max_gust_3h"] == 8.3
    assert readings["mean_radiation_3h"].attributes["hours"] == 4
    assert readings["temperature"].observed_at == NOW   # no current.time: the fetch time
