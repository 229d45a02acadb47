"""PEGELONLINE REST API v2: nearest or configured gauge, unit handling (cm, m+NN, m+PNP), trend and state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from adapters import pegelonline
from gateway.errors import ParseError
from gateway.records import Reading
from tests.helpers import FIXTURES

OPTS = pegelonline.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2025, 6, 21, 10, 20, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))


def parse(name: str, opts: pegelonline.Options = OPTS) -> dict[str, Reading]:
    body = (FIXTURES / "pegelonline" / name).read_bytes()
    return {r.field: r for r in pegelonline.parse(body, opts, NOW)}


def values(readings: dict[str, Reading]) -> dict[str, object]:
    return {k: r.value for k, r in readings.items()}


def gauge(unit: str, value: Any, zero: dict[str, Any] | None = None, **current: Any) -> bytes:
    series = {"shortname": "W", "unit": unit,
              "currentMeasurement": {"timestamp": "2025-06-21T12:15:00+02:00", "value": value, **current}}
    if zero is not None:
        series["gaugeZero"] = zero
    return json.dumps([{"uuid": "u-1", "longname": "G", "latitude": 51.6, "longitude": 8.1,
                        "timeseries": [series]}]).encode()


def test_nearest_canal_gauge_in_metres_above_sea_level():
    readings = parse("normal.json")
    assert set(readings) == pegelonline.ADAPTER.fields
    # m+NN 62.74 with the gauge zero at 58.0 m NHN: 4.74 m above the gauge zero.
    assert values(readings) == {"water_level": 474.0, "water_level_nn": 62.74, "trend": "steady", "state": "unknown"}
    assert all(r.observed_at == datetime(2025, 6, 21, 12, 15, tzinfo=CEST) for r in readings.values())
    station = readings["water_level"].station
    assert station is not None
    assert (station.name, station.id) == ("HAMM-UENTROP", "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b")
    assert station.distance_m == pytest.approx(14_600, rel=0.01)
    attributes = readings["water_level"].attributes
    assert attributes["water"] == "DATTELN-HAMM-KANAL"
    assert attributes["upstream_unit"] == "m+NN"
    assert attributes["upstream_value"] == 62.74
    assert attributes["number"] == "3310090"
    assert attributes["km"] == 46.8


def test_configured_station_in_cm_from_a_single_station_object():
    opts = pegelonline.Options(latitude=51.571, longitude=8.106, station="47174d8f-1b8e-4599-8a59-b580dd55bc87")
    readings = parse("station.json", opts)
    # 323 cm above a gauge zero of 8 m NN is 11.23 m NN.
    assert values(readings) == {"water_level": 323, "water_level_nn": 11.23, "trend": "falling", "state": "normal"}
    assert readings["state"].observed_at == datetime(2022, 3, 2, 9, 30, tzinfo=UTC)
    station = readings["state"].station
    assert station is not None
    assert station.name == "EITZE"
    assert station.distance_m == pytest.approx(168_300, rel=0.01)  # far away, but configured explicitly
    assert readings["state"].attributes["state_nsw_hsw"] == "unknown"


def test_station_by_name_in_a_list_and_other_timeseries():
    opts = pegelonline.Options(latitude=51.571, longitude=8.106, station="hamm ow")
    assert parse("normal.json", opts)["water_level_nn"].value == 62.71
    by_number = pegelonline.Options(latitude=51.571, longitude=8.106, station="48900237")
    assert parse("station.json", by_number)["water_level"].value == 323
    # The timeseries is matched without case.
    lower = pegelonline.Options(latitude=51.571, longitude=8.106, station="EITZE", timeseries="w")
    assert parse("station.json", lower)["water_level"].value == 323


# The next two fixtures follow the shape of a public PEGELONLINE client's test data (aiopegelonline: a
# bridge station "HANAU BRÜCKE DFH" whose only timeseries is DFH in cm with a gauge zero and no coordinates;
# Würzburg with W "WASSERSTAND ROHDATEN" beside LT, WT, VA, O2, PH, Q, currentMeasurement without trend),
# with our own uuids and values.
def test_a_clearance_height_is_never_a_water_level():
    # Before: timeseries DFH turned 702 cm under the bridge into 113.52 m "above sea level".
    with pytest.raises(ValidationError) as info:
        pegelonline.Options(latitude=50.13, longitude=8.92, station="07374faf-0000-4000-8000-adc0e0784c4b",
                            timeseries="DFH")
    assert "not a water-level timeseries" in str(info.value)
    for other in ("Q", "WT", "LT"):
        with pytest.raises(ValidationError):
            pegelonline.Options(latitude=50.13, longitude=8.92, timeseries=other)
    # The bridge gauge has no W: with the default it is not found, and nothing is published as a level.
    opts = pegelonline.Options(latitude=50.13, longitude=8.92, station="07374faf-0000-4000-8000-adc0e0784c4b")
    with pytest.raises(ParseError) as raised:
        parse("bridge_clearance.json", opts)
    assert raised.value.kind == "not_found"


def test_the_water_level_series_among_others_at_one_gauge():
    # DFH comes first and uses the same unit and gauge zero; the W series is the one read.
    opts = pegelonline.Options(latitude=49.79, longitude=9.93, station="915d76e1-0000-4000-8000-4d144cd771cc")
    readings = parse("several_series.json", opts)
    assert values(readings) == {"water_level": 162, "water_level_nn": 166.131, "trend": None, "state": "normal"}
    assert readings["water_level"].attributes["timeseries"] == "WASSERSTAND ROHDATEN"
    assert readings["water_level"].observed_at == datetime(2025, 6, 21, 10, 0, tzinfo=UTC)


def test_disturbed_gauge_keeps_its_state_and_comment():
    readings = parse("commented.json", pegelonline.Options(latitude=52.19, longitude=9.08))
    assert readings["state"].value == "commented"
    assert readings["water_level"].value == 92
    assert readings["water_level_nn"].value == pytest.approx(50.72)
    assert readings["state"].attributes["comment"] == "Funktionsstörung, fehlerhafte Messwerte"


@pytest.mark.parametrize(("unit", "value", "zero", "expected"), [
    ("cm", 250, None, (250, None)),  # no gauge zero: no height above sea level
    ("m+PNP", 41.52, {"unit": "m. ü. NN", "value": 203.48}, (4152.0, 245.0)),  # reservoir: metres above the zero
    ("m+NN", 56.54, None, (None, 56.54)),
    ("m+NN", 56.54, {"unit": "cm", "value": 5000}, (None, 56.54)),  # a gauge zero in another unit is ignored
    ("m³/s", 141.0, {"unit": "m. ü. NN", "value": 8}, (None, None)),
    ("cm", 99999, {"unit": "m. ü. NN", "value": 8}, (None, None)),  # the "no value" placeholder
    ("cm", None, None, (None, None)),
    ("cm", "323", None, (None, None)),
])
def test_units_and_gauge_zero(unit: str, value: Any, zero: dict[str, Any] | None, expected: tuple[Any, Any]):
    readings = {r.field: r.value for r in pegelonline.parse(gauge(unit, value, zero), OPTS, NOW)}
    assert (readings["water_level"], readings["water_level_nn"]) == expected


@pytest.mark.parametrize(("trend", "state", "expected"), [
    (1, "high", ("rising", "high")), (-1, "low", ("falling", "low")), (0, "out-dated", ("steady", "out-dated")),
    (2, "flooding", (None, None)), (True, None, (None, None)), (0.0, 3, (None, None)), ("1", ["high"], (None, None)),
])
def test_trend_and_state_enums(trend: Any, state: Any, expected: tuple[Any, Any]):
    body = gauge("cm", 300, trend=trend, stateMnwMhw=state)
    readings = {r.field: r.value for r in pegelonline.parse(body, OPTS, NOW)}
    assert (readings["trend"], readings["state"]) == expected
    assert expected[0] in (*pegelonline.TRENDS, None)
    assert expected[1] in (*pegelonline.STATES, None)


def test_gauge_without_current_measurement_gives_nones():
    body = b'[{"uuid": "u", "latitude": 51.6, "longitude": 8.1, "timeseries": [{"shortname": "W", "unit": "cm"}]}]'
    readings = {r.field: r for r in pegelonline.parse(body, OPTS, NOW)}
    assert set(values(readings).values()) == {None}
    assert readings["water_level"].observed_at == NOW
    assert readings["water_level"].attributes["note"] == "the gauge has no current measurement"


def test_gauges_outside_the_radius_or_without_position_are_not_chosen():
    near = pegelonline.Options(latitude=51.571, longitude=8.106, radius_km=10)
    with pytest.raises(ParseError) as info:
        parse("normal.json", near)  # the nearest is 14.6 km away; WERRIES UW has no coordinates
    assert info.value.kind == "not_found"


@pytest.mark.parametrize(("name", "kind"), [("empty.json", "not_found"), ("renamed_fields.json", "bad_schema")])
def test_unusable_fixtures_raise_parse_error(name: str, kind: str):
    with pytest.raises(ParseError) as info:
        parse(name)
    assert info.value.kind == kind


def test_requests():
    base = "https://www.pegelonline.wsv.de/webservices/rest-api/v2/"
    flags = {"includeTimeseries": "true", "includeCurrentMeasurement": "true", "prettyprint": "false"}
    nearest = pegelonline.request(OPTS, base)
    assert nearest.url == "https://www.pegelonline.wsv.de/webservices/rest-api/v2/stations.json"
    assert nearest.params == {"latitude": "51.5710", "longitude": "8.1060", "radius": "30", "timeseries": "W", **flags}
    named = pegelonline.request(pegelonline.Options(latitude=1, longitude=2, station="MÜNSTER OW"), base)
    assert named.url == "https://www.pegelonline.wsv.de/webservices/rest-api/v2/stations/M%C3%9CNSTER%20OW.json"
    assert named.params == flags
    for bad in ({"station": "../stations"}, {"station": ".."}, {"station": ""}, {"radius_km": 0},
                {"timeseries": "W/x"}):
        with pytest.raises(ValidationError):
            pegelonline.Options(latitude=51.571, longitude=8.106, **bad)
