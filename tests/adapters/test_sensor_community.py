"""sensor.community /airrohr/v1/filter: robust medians over the sensors around the city."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters import sensor_community as sc
from tests.helpers import FIXTURES

OPTS = sc.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2025, 6, 21, 12, 36, tzinfo=UTC)


def readings(body: bytes, opts: sc.Options = OPTS) -> dict[str, sc.Reading]:
    return {r.field: r for r in sc.parse(body, opts, NOW)}


def entry(sensor_id: Any, values: dict[str, Any], stamp: str = "2025-06-21 12:31:05", indoor: Any = 0) -> dict:
    return {"id": 1, "sampling_rate": None, "timestamp": stamp,
            "location": {"id": 7, "latitude": "51.57", "longitude": "8.11", "altitude": "98.0", "country": "DE",
                         "exact_location": 0, "indoor": indoor},
            "sensor": {"id": sensor_id, "pin": "1", "sensor_type": {"id": 14, "name": "SDS011",
                                                                   "manufacturer": "Nova Fitness"}},
            "sensordatavalues": [{"id": 2, "value": v, "value_type": k} for k, v in values.items()]}


def encode(*entries: dict) -> bytes:
    return json.dumps(list(entries)).encode()


def test_normal_response_gives_robust_medians():
    got = readings((FIXTURES / "sensor_community" / "normal.json").read_bytes())
    assert set(got) == sc.ADAPTER.fields
    values = {k: r.value for k, r in got.items()}
    # Medians after dropping: PM sensor 27301 (48.3/31.7 µg/m³ among ~11/~6), the BMP280 27302 (27.6 °C in
    # a sunny housing, 991.2 hPa), the DHT22 25521 stuck at 99.9 % and 28891's -145.2 °C (out of range).
    assert values["pm10"] == pytest.approx(11.16)
    assert values["pm25"] == pytest.approx(6.34)
    assert values["temperature"] == pytest.approx(24.25)
    assert values["humidity"] == pytest.approx(49.75)
    assert values["pressure"] == pytest.approx(1003.98)  # 100398 Pa -> hPa
    assert values["sensor_count"] == 15
    pm10 = got["pm10"]
    assert pm10.attributes["sensors_used"] == 8
    assert pm10.attributes["outliers_dropped"] == {"count": 1, "sensor_ids": [27301]}
    assert pm10.attributes["radius_km"] == 5
    assert got["temperature"].attributes["out_of_range_dropped"] == {"count": 1, "sensor_ids": [28891]}
    assert got["temperature"].attributes["outliers_dropped"] == {"count": 1, "sensor_ids": [27302]}
    assert got["humidity"].attributes["outliers_dropped"]["sensor_ids"] == [25521]
    # observed_at: the newest timestamp among the sensors used; 27301's newer 12:34:58 was an outlier.
    assert pm10.observed_at == datetime(2025, 6, 21, 12, 34, 24, tzinfo=UTC)
    assert got["pressure"].observed_at == datetime(2025, 6, 21, 12, 32, 18, tzinfo=UTC)
    assert got["sensor_count"].observed_at == datetime(2025, 6, 21, 12, 34, 26, tzinfo=UTC)
    assert got["sensor_count"].attributes == {
        "radius_km": 5, "indoor_skipped": 2,
        "per_quantity": {"pm10": 8, "pm25": 8, "temperature": 6, "humidity": 6, "pressure": 3}}
    assert pm10.station is not None
    assert pm10.station.name == "8 sensors within 5 km"
    assert (pm10.station.latitude, pm10.station.longitude, pm10.station.distance_m) == (51.571, 8.106, None)


def test_newest_entry_per_sensor_wins_in_any_order():
    body = encode(entry(1, {"P1": "30.00"}, "2025-06-21 12:33:30"), entry(1, {"P1": "10.00"}, "2025-06-21 12:31:05"),
                  entry(2, {"P1": "12.00"}))
    got = readings(body)
    assert got["pm10"].value == pytest.approx(21.0)  # (30 + 12) / 2: sensor 1's 10.00 is older
    assert got["pm10"].attributes["sensors_used"] == 2
    assert got["sensor_count"].value == 2


def test_a_timestamp_tie_goes_to_the_later_entry():
    # The API lists measurements in arrival order; fixtures with refreshed timestamps rely on this too.
    got = readings(encode(entry(1, {"P1": "10.00"}), entry(1, {"P1": "14.00"})))
    assert got["pm10"].value == 14


@pytest.mark.parametrize("indoor", [1, "1", True])
def test_indoor_sensors_are_skipped(indoor: object):
    got = readings(encode(entry(1, {"P1": "5.0"}, indoor=indoor), entry(2, {"P1": "9.0"})))
    assert got["pm10"].value == 9
    assert got["sensor_count"].attributes["indoor_skipped"] == 1


def test_empty_array_is_not_an_error():
    got = readings(b"[]")
    assert set(got) == sc.ADAPTER.fields
    assert all(got[f].value is None for f in sc.QUANTITIES)
    assert got["sensor_count"].value == 0
    assert all(r.observed_at == NOW for r in got.values())
    assert got["pm10"].attributes["sensors_used"] == 0


def test_nulls_and_missing_values_are_ignored():
    body = encode(entry(1, {"P1": None, "P2": "", "temperature": "nan", "humidity": "inf", "pressure": "1e400"}),
                  entry(2, {"P1": 8.5, "P2": "abc", "noise_LAeq": "51.2"}),
                  {"timestamp": "2025-06-21 12:31:05", "sensor": {"id": 3}},
                  entry(4, {"P1": "9.5"}, stamp="21.06.2025 12:31"),
                  entry(5, {"P1": "9.5"}, stamp="9999-12-31T23:59:59-05:00"),
                  entry({"nested": 1}, {"P1": "9.5"}), entry(True, {"P1": "9.5"}), "junk", None, [1])
    got = readings(body)
    assert got["pm10"].value == 8.5
    assert got["pm25"].value is None
    assert got["temperature"].value is None
    assert got["pressure"].value is None
    assert got["sensor_count"].value == 1


@pytest.mark.parametrize(("values", "expected", "dropped"), [
    (["5.0", "50.0"], 27.5, 0),  # two sensors: no majority, nothing is an outlier
    (["20.0", "20.0", "20.0", "20.3"], 20.0, 0),  # zero MAD: the floor keeps 20.3
    (["20.0", "20.0", "20.0", "23.0"], 20.0, 1),
    (["-60.0", "21.0"], 21.0, 0),  # out of range is dropped before the outlier test
])
def test_outlier_rules_for_temperature(values: list[str], expected: float, dropped: int):
    got = readings(encode(*(entry(i, {"temperature": v}) for i, v in enumerate(values))))
    assert got["temperature"].value == pytest.approx(expected)
    assert got["temperature"].attributes["outliers_dropped"]["count"] == dropped


def test_request_url():
    req = sc.request(OPTS, "https://data.sensor.community/")
    assert req.url == "https://data.sensor.community/airrohr/v1/filter/area=51.5710,8.1060,5"
    assert req.params == {}
    wide = sc.Options(latitude=51.571, longitude=8.106, radius_km=2.5)
    assert sc.request(wide, "http://x").url == "http://x/airrohr/v1/filter/area=51.5710,8.1060,2.5"


def test_mixed_sensor_types_use_only_mass_concentrations():
    # The shape of a real response (issue #16): several sensor types in one answer. The PPD42NS entries copy the
    # shape of a 2018 capture in a public luftdaten-to-PostgreSQL script (durP1/durP2/ratioP1/ratioP2 beside P1/P2,
    # P1 "972.68" counts per 0.01 ft³; location without indoor/exact_location, sensor without pin, no
    # sampling_rate), values ours. Before the type table, the median of 9.2, 10.4, 494.3 and 612.9 was 252 µg/m³,
    # with one PPD42NS fewer 494.
    got = readings((FIXTURES / "sensor_community" / "mixed_types.json").read_bytes())
    assert got["pm10"].value == pytest.approx(9.8)   # SDS011 9.20 and PMS7003 10.40
    assert got["pm25"].value == pytest.approx(5.7)
    assert got["pm10"].attributes["sensors_used"] == 2
    assert got["pm10"].attributes["not_mass_concentration_dropped"] == {
        "count": 2, "sensor_ids": [7102, 7103], "sensor_types": ["PPD42NS"]}
    assert got["pm25"].attributes["not_mass_concentration_dropped"]["count"] == 2
    # Temperature, humidity and pressure do not depend on the type; pressure_at_sealevel is not our pressure.
    assert got["temperature"].value == pytest.approx(21.65)
    assert got["pressure"].value == pytest.approx(1003.2)
    assert "not_mass_concentration_dropped" not in got["temperature"].attributes
    # The PPD42NS sensors count nowhere: they sent nothing we use.
    assert got["sensor_count"].value == 4


@pytest.mark.parametrize(("sensor", "dropped_as"), [
    ({"id": 1, "sensor_type": {"id": 14, "name": "SDS011"}}, None),
    ({"id": 1, "sensor_type": {"name": "sds021"}}, None),            # matched without case
    ({"id": 1, "sensor_type": {"name": "NextPM"}}, None),
    ({"id": 1, "sensor_type": {"name": "HPM"}}, None),
    ({"id": 1, "sensor_type": {"name": "PPD42NS"}}, "PPD42NS"),
    ({"id": 1, "sensor_type": {"name": "GP2Y1010"}}, "GP2Y1010"),   # a type whose unit we do not know
    ({"id": 1, "sensor_type": None}, "unknown"),
    ({"id": 1}, "unknown"),                                           # type not named at all
])
def test_pm_counts_only_from_listed_types(sensor: dict[str, Any], dropped_as: str | None):
    item = entry(1, {"P1": "12.00", "P2": "7.00", "temperature": "20.0"})
    item["sensor"] = sensor
    got = readings(encode(item))
    dropped = got["pm10"].attributes["not_mass_concentration_dropped"]
    assert got["pm10"].value == (12.0 if dropped_as is None else None)
    assert dropped == ({"count": 0, "sensor_ids": [], "sensor_types": []} if dropped_as is None
                       else {"count": 1, "sensor_ids": [1], "sensor_types": [dropped_as]})
    assert got["temperature"].value == 20.0  # temperature is read whatever the type


def test_every_listed_type_is_a_known_pm_sensor():
    assert {"sds011", "sds021", "pms1003", "pms3003", "pms5003", "pms6003", "pms7003", "hpm", "sps30", "nextpm"} \
        == sc.MASS_PM_TYPES
    assert "ppd42ns" not in sc.MASS_PM_TYPES
