"""Bright Sky /current_weather: parsing on fixtures in the documented format."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from adapters import brightsky
from gateway.errors import ParseError
from tests.helpers import FIXTURES

OPTS = brightsky.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 6, 21, 14, 41, tzinfo=UTC)


def parse(name: str) -> dict[str, brightsky.Reading]:
    body = (FIXTURES / "brightsky" / name).read_bytes()
    return {r.field: r for r in brightsky.parse(body, OPTS, NOW)}


def test_normal_response_converts_units_and_names_stations():
    readings = parse("normal.json")
    assert set(readings) == brightsky.ADAPTER.fields
    values = {k: r.value for k, r in readings.items()}
    assert values["temperature"] == 24.3
    assert values["humidity"] == 48
    assert values["pressure"] == 1018.4
    assert values["wind_speed"] == 14.4  # km/h, Bright Sky's dwd units
    assert values["wind_gust_speed"] == 29.5
    assert values["sunshine_30"] == 24
    assert values["condition"] == "dry"
    assert values["icon"] == "partly-cloudy-day"
    # 0.128 kWh/m² in 10 minutes is a mean of 768 W/m².
    assert values["irradiance"] == pytest.approx(768.0)
    stamp = datetime(2026, 6, 21, 14, 30, tzinfo=UTC)
    assert all(r.observed_at == stamp for r in readings.values())
    assert readings["temperature"].station is not None
    assert readings["temperature"].station.name == "Lippstadt-Bökenförde"
    assert readings["temperature"].station.distance_m == 20960
    # fallback_source_ids: pressure came from another station than the main record.
    assert readings["pressure"].station is not None
    assert readings["pressure"].station.name == "Werl"


def test_nulls_become_none_not_zero():
    readings = parse("nulls.json")
    assert readings["irradiance"].value is None
    assert readings["wind_speed"].value is None
    assert readings["condition"].value is None
    assert readings["pressure"].value is None
    assert readings["temperature"].value == 15.1
    assert readings["sunshine_30"].value == 0


def test_missing_fields_become_none():
    readings = parse("missing_fields.json")
    assert readings["temperature"].value == 24.3
    assert readings["irradiance"].value is None
    assert readings["temperature"].station is None


@pytest.mark.parametrize(("name", "kind"), [("renamed_fields.json", "bad_schema"), ("not_found.json", "bad_schema")])
def test_unusable_bodies_raise_parse_error(name: str, kind: str):
    with pytest.raises(ParseError) as info:
        parse(name)
    assert info.value.kind == kind


def test_unknown_condition_and_non_numbers_are_dropped():
    body = (b'{"weather": {"timestamp": "2026-06-21T14:30:00+00:00", "condition": "volcano",'
            b' "temperature": "hot", "relative_humidity": true, "dew_point": 5}}')
    readings = {r.field: r.value for r in brightsky.parse(body, OPTS, NOW)}
    assert readings["condition"] is None
    assert readings["temperature"] is None
    assert readings["humidity"] is None
    assert readings["dew_point"] == 5


def test_request_uses_coordinates_and_base_url():
    req = brightsky.request(OPTS, "http://mirror.example/api/")
    parts = urlsplit(req.url + "?" + "&".join(f"{k}={v}" for k, v in req.params.items()))
    assert parts.path == "/api/current_weather"
    query = parse_qs(parts.query)
    assert query == {"lat": ["51.5710"], "lon": ["8.1060"], "max_dist": ["50000"]}
    by_station = brightsky.request(brightsky.Options(latitude=1, longitude=2, dwd_station_id="00707"), "http://x")
    assert by_station.params == {"dwd_station_id": "00707"}


def test_sparse_sources_and_a_fallback_to_an_unlisted_source():
    # The shape of real /current_weather answers as public clients test against them (issue #16, point 5): sources
    # with only id and station_name (no dwd_station_id, lat, lon, distance), fallback_source_ids for single fields
    # (as in a public Bright Sky client's test payload for Mittenwald), and a fallback id that the sources list
    # lacks (a public Kotlin client handles "a station missing from the list"); radiation and sunshine null in
    # the evening. Values ours.
    readings = parse("sparse_sources.json")
    assert set(readings) == brightsky.ADAPTER.fields
    assert readings["temperature"].value == 8.6
    assert readings["irradiance"].value is None
    assert readings["pressure"].value is None
    assert readings["condition"].value is None
    assert readings["icon"].value == "partly-cloudy-day"
    main, fallback = readings["temperature"].station, readings["wind_speed"].station
    assert main is not None
    assert fallback is not None
    assert (main.name, main.id, main.latitude, main.distance_m) == ("Mittenwald-Buckelwie", "332569", None, None)
    assert fallback.name == "Mittenwald/Obb."
    assert readings["irradiance"].station is None  # its fallback source is not in the list
    assert {r.observed_at for r in readings.values()} == {datetime(2026, 4, 19, 18, 0, tzinfo=UTC)}
