"""FIWARE NGSI-LD / NGSI-v2: Smart Data Model entities, unitCode conversion, paging against a local broker.

Fixtures: tests/fixtures/ngsi_ld/README.md says where each shape comes from.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from adapters import ADAPTERS, ngsi_ld
from gateway import catalog
from gateway.config import loads
from gateway.errors import ParseError
from gateway.fetch import make_session
from gateway.pipeline import collect
from gateway.records import Reading, Request
from tests.helpers import FIXTURES, ROOT
from tests.ngsi_broker import NgsiBroker

OPTS = ngsi_ld.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 11, 30, 7, 5, tzinfo=UTC)
AT_7 = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
SOEST = "urn:ngsi-ld:WeatherObserved:Soest-Wetterstation-Rathaus"


def parse(name: str, **options: Any) -> dict[str, Reading]:
    opts = ngsi_ld.Options(latitude=51.571, longitude=8.106, **options)
    return {r.field: r for r in ngsi_ld.parse((FIXTURES / "ngsi_ld" / name).read_bytes(), opts, NOW)}


def values(readings: dict[str, Reading]) -> dict[str, object]:
    return {k: r.value for k, r in readings.items()}


def test_normalized_weather_observed_of_the_nearest_station():
    readings = parse("normal.json")
    # relativeHumidity 0.54 has no unitCode: the model's ratio, 54 %; windSpeed 2 MTS (m/s) = 7.2 km/h.
    # temperature: the default instance (3.3 °C), not the roof sensor's datasetId instance (38.3 °F).
    assert values(readings) == {"temperature": 3.3, "dew_point": None, "humidity": 54.0, "pressure": 1013.2,
                                "wind_speed": 7.2, "wind_direction": 135.0, "precipitation": 0.0,
                                "illuminance": 1000.0, "irradiance": None}
    assert {r.observed_at for r in readings.values()} == {AT_7}
    station = readings["temperature"].station
    assert station is not None
    assert (station.name, station.id, station.latitude, station.longitude) == ("Soest Rathaus", SOEST, 51.5711, 8.1061)
    assert station.distance_m == pytest.approx(13, abs=2)
    assert readings["temperature"].attributes == {"entity_id": SOEST, "upstream_field": "temperature",
                                                  "upstream_unit": "CEL"}
    assert readings["irradiance"].attributes["note"] == "the entity has no 'solarRadiation'"


def test_key_values_form_reads_the_models_units():
    assert values(parse("keyvalues.json", key_values=True)) == values(parse("normal.json"))


def test_ngsi_v2_normalized_with_metadata_unit_codes():
    readings = parse("v2_normalized.json", version="v2", entity_type="AirQualityObserved")
    # SO2 0.002 GP (mg/m³) = 2 µg/m³; pm25 null stays unknown.
    assert values(readings) == {"pm10": 17.5, "pm25": None, "nitrogen_dioxide": 22.0, "ozone": 41.0,
                                "sulphur_dioxide": 2.0, "temperature": 2.1, "humidity": 81.0}
    assert readings["temperature"].observed_at == datetime(2026, 11, 30, 6, 55, tzinfo=UTC)  # TimeInstant
    assert readings["pm10"].observed_at == AT_7  # the end of dateObserved's interval
    assert readings["sulphur_dioxide"].attributes["upstream_unit"] == "GP"


def test_parking_spots_summed_count_the_free_ones():
    readings = parse("parking.json", entity_type="ParkingSpot", combine="sum")
    free = readings["free_spaces"]
    assert free.value == 2  # free, occupied, free, unknown
    assert free.attributes == {"upstream_field": "status", "entities": 4, "entities_with_value": 3}
    assert free.observed_at == AT_7  # the newest status change among them


def test_off_street_car_parks_summed():
    readings = parse("offstreet.json", entity_type="OffStreetParking", combine="sum", key_values=True)
    assert values(readings) == {"free_spaces": 169.0, "total_spaces": 534.0}


def test_noise_and_water_quality_models():
    assert values(parse("noise.json", entity_type="NoiseLevelObserved")) == {
        "noise_laeq": 67.8, "noise_lamax": 94.5, "noise_las": 91.6}
    water = parse("water.json", entity_type="WaterQualityObserved")
    # conductivity 0.005 S/m (the model's unit) = 50 µS/cm; NO3 0.01 GL (g/L) = 10 mg/L.
    assert values(water) == {"water_temperature": 8.4, "ph": 7.4, "conductivity": 50.0, "dissolved_oxygen": 10.9,
                             "nitrate": 10.0}
    assert water["ph"].observed_at == datetime(2026, 11, 30, 6, 45, tzinfo=UTC)


def test_a_unit_code_of_another_quantity_is_refused_not_guessed():
    doc = json.loads((FIXTURES / "ngsi_ld" / "normal.json").read_text())
    doc[0]["temperature"] = {"type": "Property", "value": 3.3, "unitCode": "KMH"}
    doc[0]["windSpeed"]["unitCode"] = "XYZ"
    readings = {r.field: r for r in ngsi_ld.parse(json.dumps(doc).encode(), OPTS, NOW)}
    assert readings["temperature"].value is None
    assert readings["temperature"].attributes["note"] == "unitCode 'KMH' is not convertible to °C"
    assert readings["wind_speed"].value is None


@pytest.mark.parametrize(("code", "value", "expected"), [("FAH", 41.0, 5.0), ("KEL", 278.15, 5.0), ("CEL", 5.0, 5.0)])
def test_temperature_unit_codes(code: str, value: float, expected: float):
    doc = [{"id": SOEST, "type": "WeatherObserved", "temperature": {"type": "Property", "value": value,
                                                                    "unitCode": code}}]
    readings = {r.field: r for r in ngsi_ld.parse(json.dumps(doc).encode(), OPTS, NOW)}
    assert readings["temperature"].value == pytest.approx(expected)


def test_entity_id_selects_one_entity_and_custom_attributes_extend_the_model():
    readings = parse("normal.json", entity_id="urn:ngsi-ld:WeatherObserved:Lippstadt-Bahnhof",
                     attributes={"station_code": "stationCode"})
    assert readings["temperature"].value == 2.9
    assert readings["humidity"].value == 61.0  # P1: already percent
    assert readings["station_code"].value is None  # Lippstadt has no stationCode
    assert parse("normal.json", attributes={"station_code": "dataProvider"})["station_code"].value is None  # text
    assert ngsi_ld.ADAPTER.fields_for(ngsi_ld.Options(latitude=1, longitude=2, attributes={"x": "y"})) == {
        *ngsi_ld.MODELS["WeatherObserved"], "x"}
    with pytest.raises(ParseError) as info:
        parse("normal.json", entity_id="urn:ngsi-ld:WeatherObserved:nowhere")
    assert info.value.kind == "not_found"


def test_a_notification_carries_entities_under_data():
    readings = parse("notification.json")
    assert readings["temperature"].value == 3.9
    assert readings["temperature"].observed_at == datetime(2026, 11, 30, 7, 10, tzinfo=UTC)


@pytest.mark.parametrize(("body", "kind"), [
    ((FIXTURES / "ngsi_ld" / "error.json").read_bytes(), "upstream_error"),
    (b'{"error": "BadRequest", "description": "Invalid characters in attribute type"}', "upstream_error"),
    (b"[]", "not_found"),
    (b'[{"type": "WeatherObserved"}]', "bad_schema"),
    (b"<html>502</html>", "not_json"),
])
def test_errors_and_garbage(body: bytes, kind: str):
    with pytest.raises(ParseError) as info:
        ngsi_ld.parse(body, OPTS, NOW)
    assert info.value.kind == kind


def test_ld_request_sends_context_tenant_and_token(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CITY_TOKEN", "s3cret")
    opts = ngsi_ld.Options(latitude=1, longitude=2, q='stationCode=="SO-01"', tenant="soest", token_env="CITY_TOKEN",
                           context="https://smart-data-models.github.io/dataModel.Weather/context.jsonld",
                           key_values=True, limit=50)
    req = ngsi_ld.request(opts, "https://broker.example/")
    assert req.url == "https://broker.example/ngsi-ld/v1/entities"
    assert req.params == {"type": "WeatherObserved", "limit": "50", "offset": "0", "q": 'stationCode=="SO-01"',
                          "count": "true", "options": "keyValues"}
    assert req.headers == {
        "NGSILD-Tenant": "soest", "Authorization": "Bearer s3cret",
        "Link": '<https://smart-data-models.github.io/dataModel.Weather/context.jsonld>; '
                'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'}


def test_v2_request_uses_fiware_service_headers():
    opts = ngsi_ld.Options(latitude=1, longitude=2, version="v2", tenant="soest", service_path="/umwelt",
                           entity_id="Soest-1", context="https://ignored.example/ctx.jsonld")
    req = ngsi_ld.request(opts, "http://orion:1026")
    assert req.url == "http://orion:1026/v2/entities"
    assert req.params == {"type": "WeatherObserved", "limit": "100", "offset": "0", "id": "Soest-1",
                          "options": "count"}
    assert req.headers == {"Fiware-Service": "soest", "Fiware-ServicePath": "/umwelt"}


@pytest.mark.parametrize("bad", [
    {"token_env": "NOT_SET_ANYWHERE_14"}, {"entity_type": "Streetlight"}, {"entity_type": "a b"},
    {"subscribe": True}, {"limit": 0}, {"context": "ftp://x"}, {"attributes": {"Bad": "x"}},
])
def test_invalid_options_are_refused(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        ngsi_ld.Options(latitude=1, longitude=2, **bad)


def test_next_page_follows_the_count_header_or_full_pages():
    first = Request("http://b/ngsi-ld/v1/entities", {"type": "T", "limit": "2", "offset": "0"})
    two = json.dumps([{"id": "a"}, {"id": "b"}]).encode()
    opts = ngsi_ld.Options(latitude=1, longitude=2, limit=2)
    nxt = ngsi_ld.next_page(opts, first, two, {"ngsild-results-count": "5"})
    assert nxt is not None
    assert nxt.params["offset"] == "2"
    last = Request(first.url, {**first.params, "offset": "4"})
    assert ngsi_ld.next_page(opts, last, b'[{"id": "e"}]', {"ngsild-results-count": "5"}) is None
    assert ngsi_ld.next_page(opts, first, two, {}) is not None  # a full page without a count: ask on
    assert ngsi_ld.next_page(opts, first, b'[{"id": "a"}]', {}) is None
    assert ngsi_ld.next_page(opts, first, b'{"error": "x"}', {}) is None  # parse reports it
    assert json.loads(ngsi_ld.merge([two, b'[{"id": "c"}]'])) == [{"id": "a"}, {"id": "b"}, {"id": "c"}]


def test_every_model_unit_is_the_unit_of_the_measurement_of_that_name():
    measurements = yaml.safe_load((ROOT / "topics.yaml").read_text())["measurements"]
    for model, table in ngsi_ld.MODELS.items():
        for field, (_, unit, _) in table.items():
            assert field in measurements, (model, field)
            expected = measurements[field].get("unit")
            assert (unit if unit != ngsi_ld.FREE else None) == expected, (model, field)


# --------------------------------------------------------------------------- against a local broker


def spec_for(base_url: str, **options: Any) -> catalog.SourceSpec:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    source = data["sources"]["city_platform"]
    source.update(enabled=True, base_url=base_url)
    source["options"].update(options)
    data["sources"] = {"city_platform": source}
    return catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml"),
                         ADAPTERS).sources["city_platform"]


def stations(count: int) -> list[dict[str, Any]]:
    """``count`` WeatherObserved entities; the one at index 137 stands in Soest, the others 50 km north."""
    out = []
    for i in range(count):
        lat = 51.5711 if i == 137 else 52.0
        out.append({"id": f"urn:ngsi-ld:WeatherObserved:s{i}", "type": "WeatherObserved",
                    "temperature": {"type": "Property", "value": float(i), "unitCode": "CEL",
                                    "observedAt": "2026-11-30T07:00:00Z"},
                    "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.1061, lat]}}})
    return out


@pytest.fixture
def broker() -> Any:
    server = NgsiBroker(stations(250))
    yield server
    server.close()


def test_pages_are_fetched_until_the_results_count_and_merged(broker: NgsiBroker, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CITY_TOKEN", "t0ken")
    spec = spec_for(broker.url, tenant="soest", token_env="CITY_TOKEN",
                    context="https://smart-data-models.github.io/dataModel.Weather/context.jsonld")
    result = collect(spec, make_session(), None, None, NOW)
    seen = broker.entity_requests()
    assert [p.split("offset=")[1].split("&")[0] for p, _ in seen] == ["0", "100", "200"]
    assert all(h["NGSILD-Tenant"] == "soest" and h["Authorization"] == "Bearer t0ken" and
               h["Link"].startswith("<https://smart-data-models.github.io/") for _, h in seen)
    assert result.readings is not None
    readings = {r.field: r for r in result.readings}
    assert readings["temperature"].value == 137.0  # the nearest of all 250, found on the second page
    assert len(json.loads(result.body or b"")) == 250


def test_v2_pages_follow_fiware_total_count(broker: NgsiBroker):
    for entity in broker.entities:
        entity["temperature"] = {"type": "Number", "value": entity["temperature"]["value"],
                                 "metadata": {"unitCode": {"type": "Text", "value": "CEL"}}}
        entity["location"] = {"type": "geo:json", "value": entity["location"]["value"]}
    result = collect(spec_for(broker.url, version="v2", limit=120), make_session(), None, None, NOW)
    assert [p.split("offset=")[1].split("&")[0] for p, _ in broker.entity_requests()] == ["0", "120", "240"]
    assert {r.field: r.value for r in result.readings or []}["temperature"] == 137.0


def test_more_pages_than_allowed_is_an_error_not_a_silent_cut(broker: NgsiBroker):
    broker.entities = stations(2100)  # 21 pages of 100
    with pytest.raises(ParseError) as info:
        collect(spec_for(broker.url), make_session(), None, None, NOW)
    assert info.value.kind == "too_large"
    assert len(broker.entity_requests()) == ngsi_ld.ADAPTER.paging.max_pages  # type: ignore[union-attr]


@pytest.mark.parametrize(("options", "message"), [
    ({"token_env": "CITY_PLATFORM_TOKEN_14"}, "options.token_env: environment variable CITY_PLATFORM_TOKEN_14"),
    ({"subscribe": True}, "options: subscribe needs notify_url"),
    ({"entity_type": "Streetlight"}, "options: entity_type 'Streetlight' has no Smart Data Model mapping"),
])
def test_bad_options_are_one_line_config_errors(options: dict[str, Any], message: str):
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        spec_for("http://broker.example", **options)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert "topics.yaml" in str(info.value)


def test_pages_larger_than_the_cap_together_are_an_error(broker: NgsiBroker):
    with pytest.raises(ParseError) as info:  # each page of 100 is about 30 kB; three of them exceed 64 kB
        collect(spec_for(broker.url), make_session(), None, None, NOW, max_bytes=64 * 1024)
    assert info.value.kind == "too_large"


def test_hostile_notifications_give_readings_or_a_parse_error():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                          max_leaves=30)
    entity = st.fixed_dictionaries({"id": st.sampled_from([SOEST, "urn:x"]), "type": st.just("WeatherObserved")},
                                   optional={"temperature": values, "location": values, "dateObserved": values})
    last = (FIXTURES / "ngsi_ld" / "normal.json").read_bytes()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(entity | values, max_size=4), values)
    def check(data: list[Any], noise: Any) -> None:
        doc = json.dumps({"subscriptionId": "urn:s", "data": data, "x": noise}).encode()
        _ident, entities = ngsi_ld.notified(doc)
        merged = ngsi_ld.apply_notified(last, entities)
        with contextlib.suppress(ParseError):
            assert isinstance(ngsi_ld.parse(merged, OPTS, NOW), list)

    check()
