"""BürgerWOLKE Node-RED weather2: box selection, unit conversion and the raw-data sanity checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from adapters import buergerwolke
from gateway.errors import ParseError
from gateway.records import Reading
from tests.helpers import FIXTURES

OPTS = buergerwolke.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 6, 21, 12, 5, tzinfo=UTC)


def parse(name: str, opts: buergerwolke.Options = OPTS) -> dict[str, Reading]:
    body = (FIXTURES / "buergerwolke" / name).read_bytes()
    return {r.field: r for r in buergerwolke.parse(body, opts, NOW)}


def values(readings: dict[str, Reading]) -> dict[str, object]:
    return {k: r.value for k, r in readings.items()}


def test_normal_response_picks_the_nearest_box_and_converts_uv():
    readings = parse("normal.json")
    assert set(readings) == buergerwolke.ADAPTER.fields
    assert values(readings) == {
        "temperature": 23.8, "humidity": 49.2, "pressure": 1011.6, "precipitation": 0.0,
        "illuminance": 48210.0,
        "uv_intensity": pytest.approx(21.205),  # 2120.5 µW/cm² = 21.205 W/m²
    }
    reading = readings["illuminance"]
    assert reading.observed_at == NOW  # upstream has no timestamp
    assert reading.attributes["observed_at_source"] == "fetch time; upstream has no timestamp"
    assert reading.attributes["boxes_in_response"] == 16
    assert "suspect" not in reading.attributes  # the 61.3 °C box is not the chosen one
    assert readings["uv_intensity"].attributes["upstream_unit"] == "µW/cm²"
    station = reading.station
    assert station is not None
    assert station.name == "BürgerWOLKE box at 51.5712,8.1054"
    assert (station.latitude, station.longitude) == (51.5712, 8.1054)
    assert station.distance_m == pytest.approx(47, abs=2)


def test_box_by_coordinates_matches_within_50_m():
    opts = buergerwolke.Options(latitude=51.571, longitude=8.106, box="51.5667, 8.0988")
    readings = parse("normal.json", opts)
    # This box reports 61.3 °C: withheld, with the reason, on every entity of the box.
    assert readings["temperature"].value is None
    assert readings["humidity"].value == 18.4
    assert readings["illuminance"].attributes["suspect"] == {
        "temperature": "61.3 °C is outside the sane range -30..45 °C"}
    assert readings["temperature"].station is not None
    assert readings["temperature"].station.distance_m == pytest.approx(695, abs=10)


def test_box_by_name_when_entries_carry_names():
    opts = buergerwolke.Options(latitude=51.571, longitude=8.106, box="bürgerwolke soest 37")
    readings = parse("named.json", opts)
    assert readings["illuminance"].value == 51030.0
    station = readings["illuminance"].station
    assert station is not None
    assert (station.name, station.id) == ("BürgerWOLKE Soest 37", "5f1a2b3c4d5e6f7a8b9c0d37")
    by_id = buergerwolke.Options(latitude=51.571, longitude=8.106, box="5f1a2b3c4d5e6f7a8b9c0d12")
    assert parse("named.json", by_id)["illuminance"].value == 48210.0


@pytest.mark.parametrize("box", ["51.6000,8.2000", "BürgerWOLKE Soest 99"])
def test_configured_box_absent_is_not_found(box: str):
    opts = buergerwolke.Options(latitude=51.571, longitude=8.106, box=box)
    with pytest.raises(ParseError) as info:
        parse("normal.json", opts)
    assert info.value.kind == "not_found"


def test_nearest_box_beyond_max_distance_is_not_found():
    far = buergerwolke.Options(latitude=51.68, longitude=7.82)  # Hamm, about 23 km away
    with pytest.raises(ParseError) as info:
        parse("normal.json", far)
    assert info.value.kind == "not_found"
    wider = buergerwolke.Options(latitude=51.68, longitude=7.82, max_distance_m=30_000)
    assert parse("normal.json", wider)["temperature"].station is not None


def test_sanity_table_withholds_raw_nonsense():
    readings = parse("suspect.json")
    assert all(r.value is None for r in readings.values())
    suspect = readings["pressure"].attributes["suspect"]
    assert set(suspect) == set(buergerwolke.FIELDS)
    assert suspect["humidity"] == "104.3 % is outside the sane range 0..100 %"
    assert suspect["precipitation"].startswith("-0.4 mm")
    assert suspect["uv_intensity"] == "50000 µW/cm² is outside the sane range 0..15000 µW/cm²"


def test_nulls_and_missing_fields_become_none():
    nulls = values(parse("nulls.json"))
    assert nulls == {"temperature": None, "humidity": None, "pressure": 1011.6, "precipitation": None,
                     "illuminance": 0.0, "uv_intensity": None}
    missing = values(parse("missing_fields.json"))
    assert missing == {"temperature": 23.8, "humidity": None, "pressure": None, "precipitation": None,
                       "illuminance": 48210.0, "uv_intensity": None}


def test_non_numbers_are_dropped_numeric_text_is_read():
    # Numeric text counts (issue #16, point 5): the school project that polled this endpoint reads every field
    # with Gson's getAsNumber(), which takes JSON numbers and numeric strings alike, and Node-RED flows often
    # pass payload values as text. Booleans, infinities and absurdly long numbers stay out.
    body = b'[{"latitude": "51.5712", "longitude": 8.1054, "temperature": "23.8", "lux": true, "uv": 1e999,' \
           b' "humidity": "49,2", "pressure": 1' + b"0" * 400 + b"}]"
    readings = values({r.field: r for r in buergerwolke.parse(body, OPTS, NOW)})
    assert readings == {"temperature": 23.8, "humidity": None, "pressure": None, "precipitation": None,
                        "illuminance": None, "uv_intensity": None}


@pytest.mark.parametrize(("name", "kind"), [
    ("empty.json", "not_found"),
    ("renamed_fields.json", "bad_schema"),
    ("renamed_measurements.json", "bad_schema"),
    ("error.json", "upstream_error"),
])
def test_unusable_fixtures_raise_parse_error(name: str, kind: str):
    with pytest.raises(ParseError) as info:
        parse(name)
    assert info.value.kind == kind


def test_request_url_and_options():
    req = buergerwolke.request(OPTS, "https://urbanedaten-soest.de/")
    assert req.url == "https://urbanedaten-soest.de/nodered/weather2"
    assert req.params == {}
    moved = buergerwolke.Options(latitude=51.571, longitude=8.106, path="/nodered/weather3")
    assert buergerwolke.request(moved, "http://127.0.0.1:8080").url == "http://127.0.0.1:8080/nodered/weather3"
    for bad in ({"box": "95.0,8.1"}, {"box": ""}, {"path": "nodered"}, {"max_distance_m": 0}):
        with pytest.raises(ValidationError):
            buergerwolke.Options(latitude=51.571, longitude=8.106, **bad)
