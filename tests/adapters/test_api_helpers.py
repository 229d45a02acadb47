"""Shared adapter helpers: field tables, optional parts, required values, warning phases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from gateway import adapter_api as api
from gateway import units

NOW = datetime(2026, 4, 11, 12, 0, tzinfo=UTC)
OPTS = api.AdapterOptions(latitude=51.57123, longitude=8.10567)
TABLE: api.FieldTable = {
    "temperature": ("temp", None),
    "pressure": ("pressure_pa", api.converted(api.pa_to_hpa)),
    "condition": ("cond", api.one_of(("dry", "rain"))),
}


def test_field_table_reads_each_field_with_its_reader_and_names_the_upstream_field():
    station = api.Station(name="A")
    readings = api.read_fields({"temp": 11.5, "pressure_pa": 101_325, "cond": "rain"}, TABLE, NOW, station)
    assert [(r.field, r.value, r.station, dict(r.attributes)) for r in readings] == [
        ("temperature", 11.5, station, {"upstream_field": "temp"}),
        ("pressure", 1013.25, station, {"upstream_field": "pressure_pa"}),
        ("condition", "rain", station, {"upstream_field": "cond"}),
    ]


def test_field_table_gives_none_for_missing_garbage_and_unknown_enum_values():
    readings = api.read_fields({"temp": "warm", "pressure_pa": float("nan"), "cond": "drizzle"}, TABLE, NOW, None)
    assert [r.value for r in readings] == [None, None, None]


def test_field_table_station_may_depend_on_the_upstream_field():
    stations = {"temp": api.Station(name="A"), "cond": api.Station(name="B")}
    readings = api.read_fields({}, TABLE, NOW, stations.get)
    assert [r.station.name if r.station else None for r in readings] == ["A", None, "B"]


def test_readings_table_keeps_field_order_and_attributes():
    readings = api.readings({"count": (2, {"ids": [1, 2]}), "highest": ("minor", {})}, NOW, None)
    assert [(r.field, r.value, dict(r.attributes), r.observed_at) for r in readings] == [
        ("count", 2, {"ids": [1, 2]}, NOW), ("highest", "minor", {}, NOW)]


def test_optional_parts_default_to_empty():
    assert api.as_dict({"a": 1}) == {"a": 1}
    assert api.as_dict([1]) == {}
    assert api.as_list([1]) == [1]
    assert api.as_list(None) == []


def test_require_passes_values_and_classifies_a_missing_one():
    assert api.require(0, "never") == 0
    with pytest.raises(api.ParseError, match=r"^no timestamp$") as info:
        api.require(None, "no timestamp")
    assert info.value.kind == "bad_schema"


def test_expect_any_rejects_a_record_with_none_of_the_keys():
    api.expect_any({"b": 1}, ("a", "b"), "never")
    with pytest.raises(api.ParseError, match="renamed") as info:
        api.expect_any({"c": 1}, ("a", "b"), "renamed")
    assert info.value.kind == "bad_schema"


@pytest.mark.parametrize(("onset", "expires", "phase"), [
    (None, None, "active"),
    (NOW - timedelta(hours=1), NOW + timedelta(hours=1), "active"),
    (NOW + timedelta(hours=1), None, "upcoming"),
    (None, NOW, "expired"),
    (NOW + timedelta(hours=1), NOW - timedelta(hours=1), "expired"),
])
def test_phase_of_a_warning(onset: datetime | None, expires: datetime | None, phase: str):
    assert api.phase(onset, expires, NOW) == phase


def test_point_and_zone_from_the_options():
    assert api.point(OPTS) == {"lat": "51.5712", "lon": "8.1057"}
    assert api.point(OPTS, "latitude", "longitude") == {"latitude": "51.5712", "longitude": "8.1057"}
    assert str(OPTS.zone) == "Europe/Berlin"


class KeyedOptions(BaseModel):
    names: dict[api.FieldKey, api.NonBlank]


def test_field_keys_must_be_usable_as_field_names_and_names_must_not_be_blank():
    assert KeyedOptions(names={"pm2_5": " Feinstaub "}).names == {"pm2_5": " Feinstaub "}  # kept as written
    for bad, problem in [({"PM": "x"}, "becomes a field name"), ({"a/b": "x"}, "becomes a field name"),
                         ({"x" * 65: "x"}, "becomes a field name"), ({"pm": " "}, "must not be blank")]:
        with pytest.raises(ValidationError, match=problem):
            KeyedOptions(names=bad)


@pytest.mark.parametrize(("value", "expected"), [
    ("box-37", "box-37"), (17, "17"), (" 3 ", "3"), (True, None), (1.5, None), (None, None), ("x" * 50, "x" * 39 + "…"),
])
def test_identifier_takes_text_or_integers(value: object, expected: str | None):
    assert api.identifier(value) == expected


@pytest.mark.parametrize(("geometry", "expected"), [
    ({"type": "Point", "coordinates": [8.1, 51.5]}, (51.5, 8.1)),
    ({"type": "Point", "coordinates": [8.1, 51.5, 90.0]}, (51.5, 8.1)),  # with an altitude
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [8.1, 51.5]}}, (51.5, 8.1)),
    ({"type": "Point", "coordinates": [8.1]}, None),
    ({"type": "Point", "coordinates": [181.0, 51.5]}, None),
    ({"type": "Polygon", "coordinates": [[8.1, 51.5]]}, None),
    ("51.5,8.1", None),
    (None, None),
])
def test_geojson_position_reads_points_in_lon_lat_order(geometry: object, expected: tuple[float, float] | None):
    assert api.geojson_position(geometry) == expected


def test_geojson_position_reads_numeric_strings_when_asked():
    point = {"type": "Point", "coordinates": ["8.1", "51.5"]}
    assert api.geojson_position(point) is None
    assert api.geojson_position(point, api.number) == (51.5, 8.1)


def test_latest_per_id_keeps_the_newest_message_of_each_id_in_first_seen_order():
    messages = [{"id": "a", "v": 1, "text": "first"}, {"id": "b", "v": 1, "text": "b"},
                {"id": None, "v": 9, "text": "no id 1"}, {"id": "a", "v": 2, "text": "update"},
                {"id": "a", "v": 1, "text": "stale"}, {"id": None, "v": 0, "text": "no id 2"},
                {"id": "b", "v": 1, "text": "b again"}]
    latest = api.latest_per_id(messages, lambda m: m["id"], lambda m: m["v"])
    assert [m["text"] for m in latest] == ["update", "b again", "no id 1", "no id 2"]  # a tie goes to the later one
    assert api.latest_per_id([], lambda m: m, lambda m: m) == []


@pytest.mark.parametrize(("value", "expected"), [(1, True), (0, False), (1.0, True), (2, None), (True, None),
                                                 ("1", None), (None, None)])
def test_flag_reads_one_and_zero(value: object, expected: bool | None):
    assert api.flag(value) is expected


def test_offset_zone_is_a_fixed_offset_or_none():
    zone = api.offset_zone(7200)
    assert zone is not None
    assert datetime(2026, 1, 15, 12, 0, tzinfo=zone).utcoffset() == timedelta(hours=2)  # no DST rules
    assert api.offset_zone(-12_600.0) == api.offset_zone(-12_600)
    for bad in ("+02:00", 86_400, float("nan"), True, None):
        assert api.offset_zone(bad) is None


def test_series_pairs_times_with_numbers_and_drops_gaps():
    t0, t1, t2 = (NOW + timedelta(hours=h) for h in range(3))
    assert api.series([t0, None, t1, t2], [1.5, 2.0, None, 3]) == [(t0, 1.5), (t2, 3.0)]
    assert api.series([t0, t1], [1, 2, 3]) == [(t0, 1.0), (t1, 2.0)]  # extra values are ignored
    assert api.series([t0], {"0": 1}) == []


SQUARE = [[8.0, 51.0], [8.2, 51.0], [8.2, 51.2], [8.0, 51.2], [8.0, 51.0]]


@pytest.mark.parametrize(("geometry", "expected"), [
    ({"type": "Polygon", "coordinates": [SQUARE]}, (51.1, 8.1)),
    ({"type": "Polygon", "coordinates": [SQUARE[::-1]]}, (51.1, 8.1)),                 # clockwise ring
    ({"type": "Polygon", "coordinates": [SQUARE[:-1]]}, (51.1, 8.1)),                  # ring left open
    # An L-shape: the area centroid, not the mean of its six corners (51.0667, 8.0667 vs 51.0833, 8.0833).
    ({"type": "Polygon", "coordinates": [[[8.0, 51.0], [8.2, 51.0], [8.2, 51.1], [8.1, 51.1], [8.1, 51.2],
                                          [8.0, 51.2]]]}, (51.0833, 8.0833)),
    # Holes do not move the representative point off the outer ring's centroid.
    ({"type": "Polygon", "coordinates": [SQUARE, [[8.05, 51.05], [8.1, 51.05], [8.1, 51.1], [8.05, 51.05]]]},
     (51.1, 8.1)),
    # Two squares, the second four times the area: weighted towards it.
    ({"type": "MultiPolygon", "coordinates": [[SQUARE], [[[9.0, 51.0], [9.4, 51.0], [9.4, 51.4], [9.0, 51.4]]]]},
     (51.18, 8.98)),
    ({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}, (51.1, 8.1)),
    ({"type": "LineString", "coordinates": [[8.0, 51.0], [8.2, 51.2]]}, (51.1, 8.1)),
    ({"type": "MultiPoint", "coordinates": [[8.0, 51.0], [8.2, 51.0], [8.1, 51.3]]}, (51.1, 8.1)),
    ({"type": "MultiLineString", "coordinates": [[[8.0, 51.0], [8.2, 51.0]], [[8.0, 51.2], [8.2, 51.2]]]},
     (51.1, 8.1)),
    ({"type": "Polygon", "coordinates": [[[8.1, 51.1], [8.1, 51.1], [8.1, 51.1]]]}, (51.1, 8.1)),  # no area
    ({"type": "Polygon", "coordinates": [[[8.0, 51.0], [8.2, 91.0], [8.1, 51.2]]]}, None),           # off the globe
    ({"type": "Polygon", "coordinates": [[[8.0, 51.0], "x", [8.1, 51.2]]]}, None),
    ({"type": "Polygon", "coordinates": []}, None),
    ({"type": "MultiPolygon", "coordinates": [[], None]}, None),
    ({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [8.1, 51.1]}]}, None),
    ({"type": "Circle", "coordinates": [8.1, 51.1]}, None),
])
def test_geojson_position_gives_a_representative_point_of_other_shapes(
        geometry: object, expected: tuple[float, float] | None):
    got = api.geojson_position(geometry)
    assert got == (None if expected is None else (pytest.approx(expected[0], abs=1e-4),
                                                  pytest.approx(expected[1], abs=1e-4)))


def test_in_our_unit_knows_every_spelling_it_lists():
    for spelling, symbol in units.SPELLINGS.items():
        assert symbol in units.SYMBOLS, spelling
    assert {unit for unit, _ in units.SYMBOLS.values()} <= {"°C", "%", "hPa", "lx", "µg/m³", "W/m²", "km/h", "mm",
                                                           "cm", "m", "ppm", "°", "dB"}
    assert api.in_our_unit(None, "Pa") == (None, "hPa")
    assert api.in_our_unit(1.0, "furlong") == (None, None)
