"""UBA air_data v3: station lookup and /airquality/json parsing on fixtures in the documented format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters import uba_air
from gateway.errors import ParseError
from tests.helpers import FIXTURES

NOW = datetime(2025, 6, 21, 12, 47, tzinfo=UTC)
CITY = uba_air.Options(latitude=51.571, longitude=8.106)
# What the lookup fills in from lookup.json (1234 is the fixture's placeholder id for DENW068).
OPTS = CITY.model_copy(update={"station_id": 1234, "station_name": "Soest-Ost",
                               "station_lat": 51.5707, "station_lon": 8.148})


def fixture(name: str) -> bytes:
    return (FIXTURES / "uba_air" / name).read_bytes()


def readings(body: bytes, opts: uba_air.Options = OPTS) -> dict[str, uba_air.Reading]:
    return {r.field: r for r in uba_air.parse(body, opts, NOW)}


def body_with(rows: dict[str, Any], station: str = "1234") -> bytes:
    return json.dumps({"request": {"station": station}, "indices": {}, "data": {station: rows}}).encode()


# --- lookup ----------------------------------------------------------------------------------------

def test_lookup_resolves_the_station_code_from_the_station_list():
    assert uba_air.ADAPTER.lookup is not None
    assert uba_air.ADAPTER.lookup.needed(CITY)
    assert not uba_air.ADAPTER.lookup.needed(OPTS)
    update = uba_air.lookup_parse(fixture("lookup.json"), CITY)
    assert update == {"station_id": 1234, "station_name": "Soest-Ost", "station_lat": 51.5707, "station_lon": 8.148}
    unna = uba_air.lookup_parse(fixture("lookup.json"), CITY.model_copy(update={"station_code": "DENW010"}))
    assert unna["station_id"] == 1101


def test_lookup_prefers_the_active_entry_of_a_moved_station():
    old = ["17", "DENW068", "Soest (alt)", "Soest", "SOES", "1980-01-01", "1996-03-31", "8.1", "51.57"]
    new = ["1234", "DENW068", "Soest-Ost", "Soest", "SOES", "1996-04-01", None, "8.1480", "51.5707"]
    body = json.dumps({"data": {"17": old, "1234": new}, "count": 2}).encode()
    assert uba_air.lookup_parse(body, CITY)["station_id"] == 1234


def test_lookup_request():
    req = uba_air.lookup_request(CITY, "https://www.umweltbundesamt.de/api/air_data/v3/")
    assert req.url == "https://www.umweltbundesamt.de/api/air_data/v3/stations/json"
    assert req.params == {"use": "airquality", "lang": "de"}


@pytest.mark.parametrize(("body", "kind"), [
    (b"<!DOCTYPE html><html><body>Wartungsarbeiten</body></html>", "not_json"),
    (b'{"data": {"1234": ["1234", "DENW0', "bad_json"),
    (b"[]", "bad_schema"),
    (b'{"stations": {}}', "bad_schema"),
    (b'{"data": {"1": {"id": 1, "code": "DENW068"}}}', "bad_schema"),
    (b'{"data": {"1": ["x", "DENW068", "Soest", "", "", "", null, "8.1", "51.5"]}}', "bad_schema"),
    (b'{"data": {}}', "not_found"),
])
def test_lookup_garbage(body: bytes, kind: str):
    with pytest.raises(ParseError) as info:
        uba_air.lookup_parse(body, CITY)
    assert info.value.kind == kind


def test_lookup_unknown_code_is_not_found():
    with pytest.raises(ParseError) as info:
        uba_air.lookup_parse(fixture("lookup.json"), CITY.model_copy(update={"station_code": "DENW999"}))
    assert info.value.kind == "not_found"


# --- airquality --------------------------------------------------------------------------------------

def test_normal_response_takes_the_newest_hour():
    got = readings(fixture("normal.json"))
    assert set(got) == uba_air.ADAPTER.fields
    values = {k: r.value for k, r in got.items()}
    assert values == {"pm10": 14, "pm25": 7, "no2": 9, "o3": 96, "index": 1, "index_text": "good"}
    # "2025-06-21 13:00:00" is the start of the hour in CET (UTC+1, also in summer).
    assert all(r.observed_at == datetime(2025, 6, 21, 12, 0, tzinfo=UTC) for r in got.values())
    station = got["o3"].station
    assert station is not None
    assert (station.name, station.id) == ("Soest-Ost", "DENW068")
    assert station.distance_m == pytest.approx(2903, abs=2)
    assert got["o3"].attributes["component_index"] == 1
    assert got["o3"].attributes["hour_end"] == "2025-06-21T13:00:00+00:00"
    assert got["index"].attributes == {"station_code": "DENW068", "hour_end": "2025-06-21T13:00:00+00:00",
                                       "incomplete": False, "determined_by": ["o3"]}


def test_newest_hour_wins_whatever_the_key_order():
    rows = {"2025-06-21 13:00:00": ["2025-06-21 14:00:00", 2, 0, [5, 60, 2, "1.5"]],
            "2025-06-21 09:00:00": ["2025-06-21 10:00:00", 0, 0, [5, 10, 0, "0.25"]],
            "2025-06-20 23:00:00": ["2025-06-21 00:00:00", 0, 0, [5, 12, 0, "0.3"]]}
    got = readings(body_with(rows))
    assert got["no2"].value == 60
    assert got["index_text"].value == "moderate"
    assert got["no2"].observed_at == datetime(2025, 6, 21, 12, 0, tzinfo=UTC)


def test_missing_components_and_nulls_become_none():
    rows = {"2025-06-21 13:00:00": ["2025-06-21 14:00:00", None, 1, [5, None, 0, "0"], [3, "54", 0, "0.72"],
                                    [7, 12, 0, "0.1"], "junk", [1]]}
    got = readings(body_with(rows))
    assert got["no2"].value is None
    assert got["o3"].value == 54  # a numeric string still counts
    assert got["pm10"].value is None
    assert got["pm25"].value is None
    assert got["index"].value is None
    assert got["index_text"].value is None
    assert got["o3"].attributes["incomplete"] is True


@pytest.mark.parametrize("index", [-1, 5, 1.5, "x", True])
def test_index_outside_0_to_4_is_none(index: object):
    got = readings(body_with({"2025-06-21 13:00:00": ["2025-06-21 14:00:00", index, 0, [5, 9, 0, "0.2"]]}))
    assert got["index"].value is None
    assert got["index_text"].value is None
    assert got["no2"].value == 9


@pytest.mark.parametrize("body", [
    b'{"request": {}, "indices": {}, "data": {}}',
    b'{"request": {}, "indices": {}, "data": []}',
    b'{"request": {}, "indices": {}, "data": {"1234": {}}}',
])
def test_no_data_in_the_window_is_not_an_error(body: bytes):
    got = readings(body)
    assert set(got) == uba_air.ADAPTER.fields
    assert all(r.value is None for r in got.values())
    assert all(r.observed_at == NOW for r in got.values())


def test_component_map_is_an_option():
    opts = OPTS.model_copy(update={"components": {1: "pm10", 9: "pm10"}})
    got = readings(body_with({"2025-06-21 13:00:00": ["2025-06-21 14:00:00", 0, 0, [9, 7, 0, "0.7"]]}), opts)
    assert got["pm10"].value == 7
    assert got["pm25"].value is None
    assert uba_air.Options(latitude=1, longitude=2, components={"3": "o3"}).components == {3: "o3"}


def test_request_url_and_params():
    req = uba_air.request(OPTS, "https://www.umweltbundesamt.de/api/air_data/v3/")
    assert req.url == "https://www.umweltbundesamt.de/api/air_data/v3/airquality/json"
    # No dates (request() has no clock): the server fills in today; hours 1–24 cover the whole day.
    assert req.params == {"station": "1234", "time_from": "1", "time_to": "24"}
    server_hour = OPTS.model_copy(update={"time_from": None, "time_to": None})
    assert uba_air.request(server_hour, "http://x").params == {"station": "1234"}
    # Before the lookup has run there is no id yet; the URL (what the end-to-end test serves) is the same.
    assert uba_air.request(CITY, "http://x").url == "http://x/airquality/json"


def test_a_window_across_midnight_with_an_incomplete_first_hour():
    # The shape public scripts fetch (issue #16, point 5): a window from yesterday hour 1 to today hour 24 (as a
    # DENI062 script asks, reading keys as CET hour starts and the 4th element of a component as a decimal
    # string), a "count" member, and the first hour of the new day incomplete, without PM10 and PM2.5 yet.
    got = readings(fixture("across_midnight.json"))
    values = {k: r.value for k, r in got.items()}
    assert values == {"pm10": None, "pm25": None, "no2": 16, "o3": 55, "index": 0, "index_text": "very_good"}
    # 00:00 CET on 21 June is 23:00 UTC on the 20th, whatever the summer time says.
    assert {r.observed_at for r in got.values()} == {datetime(2025, 6, 20, 23, 0, tzinfo=UTC)}
    assert got["index"].attributes["incomplete"] is True
    assert got["pm10"].attributes["component_id"] is None
