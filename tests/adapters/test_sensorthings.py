"""OGC SensorThings API (FROST): one Thing, the newest Observation of each configured Datastream."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from pydantic import ValidationError

from adapters import ADAPTERS, sensorthings
from gateway import catalog
from gateway.config import loads
from gateway.errors import ParseError
from gateway.fetch import make_session
from gateway.pipeline import collect
from gateway.records import Reading
from tests.helpers import FIXTURES, ROOT, FixtureServer

STREAMS = {"illuminance": "Beleuchtungsstärke", "temperature": "Lufttemperatur", "humidity": "Relative Luftfeuchte",
           "precipitation": "Niederschlag", "battery": "Batteriestatus", "wind_speed": "Windgeschwindigkeit"}
OPTS = sensorthings.Options(latitude=51.571, longitude=8.106, datastreams=STREAMS)
NOW = datetime(2025, 6, 21, 10, 25, tzinfo=UTC)


def parse(name: str, opts: sensorthings.Options = OPTS) -> dict[str, Reading]:
    body = (FIXTURES / "sensorthings" / name).read_bytes()
    return {r.field: r for r in sensorthings.parse(body, opts, NOW)}


def test_normal_response_gives_each_alias_its_latest_observation():
    readings = parse("normal.json")
    assert set(readings) == sensorthings.ADAPTER.fields_for(OPTS) == set(STREAMS)
    values = {k: r.value for k, r in readings.items()}
    assert values == {"illuminance": 48210.0, "temperature": 23.8, "humidity": 49.2,  # "49.2" was a string
                      "precipitation": None, "battery": None, "wind_speed": None}
    stamp = datetime(2025, 6, 21, 10, 20, tzinfo=UTC)
    assert readings["illuminance"].observed_at == stamp
    assert readings["temperature"].observed_at == stamp  # the end of "10:10/10:20"
    assert readings["illuminance"].attributes == {"datastream": "Beleuchtungsstärke", "upstream_unit": "lx",
                                                  "datastream_id": "42", "unit": "lx"}
    assert readings["temperature"].attributes["upstream_unit"] == "°C"
    assert readings["precipitation"].attributes["note"] == "no Observation yet"
    assert readings["precipitation"].observed_at == NOW
    assert readings["wind_speed"].attributes["note"] == "no Datastream of this name"
    station = readings["illuminance"].station
    assert station is not None
    assert (station.name, station.id, station.latitude, station.longitude) == ("Sensorbox 37", "17", 52.2799, 8.0472)
    assert station.distance_m == pytest.approx(79_200, rel=0.01)  # Osnabrück from Soest


def test_default_options_match_the_normal_fixture():
    opts = sensorthings.Options(latitude=51.571, longitude=8.106)
    readings = parse("normal.json", opts)
    assert {k: r.value for k, r in readings.items()} == {"illuminance": 48210.0, "temperature": 23.8}
    assert sensorthings.ADAPTER.fields_for(opts) == sensorthings.ADAPTER.fields


def test_geojson_feature_location_and_other_timestamps():
    readings = parse("feature_location.json")
    assert readings["illuminance"].value == 0.0
    assert readings["illuminance"].observed_at == datetime(2025, 6, 21, 10, 20, tzinfo=UTC)
    # A timestamp without offset cannot be placed in time: the value stays, the fetch time is used.
    assert readings["temperature"].value == 21.5
    assert readings["temperature"].observed_at == NOW
    assert "fetch time used" in readings["temperature"].attributes["note"]
    station = readings["illuminance"].station
    assert station is not None
    assert (station.id, station.latitude, station.longitude) == ("box-37", 51.5712, 8.1054)
    assert station.distance_m == pytest.approx(47, abs=2)


@pytest.mark.parametrize("location", [
    "null", '{"type": "Point", "coordinates": [8.1]}', '{"type": "Polygon", "coordinates": [[8.1, 51.5]]}',
    '{"type": "Point", "coordinates": [51.5, 181.0]}', '"51.5,8.1"'])
def test_unusable_locations_give_a_station_without_position(location: str):
    head = '{"value": [{"@iot.id": 5, "Locations": [{"location": ' + location + '}], '
    tail = '"Datastreams": [{"name": "Lufttemperatur", "Observations": [{"phenomenonTime": "2025-06-21T10:20:00Z", ' \
           '"result": 1e999}]}]}]}'
    readings = {r.field: r for r in sensorthings.parse((head + tail).encode(), OPTS, NOW)}
    assert readings["temperature"].value is None  # 1e999 is infinite
    station = readings["temperature"].station
    assert station is not None
    assert (station.name, station.latitude, station.distance_m) == ("Thing 5", None, None)


@pytest.mark.parametrize(("name", "kind"), [
    ("empty.json", "not_found"),
    ("error.json", "upstream_error"),
    ("renamed_fields.json", "bad_schema"),
])
def test_unusable_fixtures_raise_parse_error(name: str, kind: str):
    with pytest.raises(ParseError) as info:
        parse(name)
    assert info.value.kind == kind


def test_request_is_one_url_with_odata_options():
    opts = sensorthings.Options(latitude=51.571, longitude=8.106, thing_filter="@iot.id eq 17")
    req = sensorthings.request(opts, "https://daten-api.osnabrueck.de/")
    assert req.url == "https://daten-api.osnabrueck.de/v1.1/Things"
    assert req.params == {
        "$filter": "@iot.id eq 17", "$top": "1",
        "$expand": "Locations,Datastreams($expand=Observations($orderby=phenomenonTime desc;$top=1))"}
    prepared = requests.Request("GET", req.url, params=req.params).prepare()
    assert parse_qs(urlsplit(prepared.url).query)["$filter"] == ["@iot.id eq 17"]  # survives URL encoding
    v10 = sensorthings.Options(latitude=1, longitude=2, version="v1.0")
    assert sensorthings.request(v10, "http://x").url == "http://x/v1.0/Things"


@pytest.mark.parametrize("bad", [
    {"datastreams": {}}, {"datastreams": {"Lux": "Beleuchtungsstärke"}}, {"datastreams": {"lux": " "}},
    {"datastreams": {"a/b": "x"}}, {"version": "1.1"}, {"thing_filter": ""},
])
def test_invalid_options_are_refused(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        sensorthings.Options(latitude=51.571, longitude=8.106, **bad)


# --- push: an Observation as FROST publishes it on v1.1/Datastreams(<id>)/Observations -------------------------

PUSHED = (b'{"@iot.selfLink": "https://daten-api.osnabrueck.de/v1.1/Observations(901300)", "@iot.id": 901300, '
          b'"phenomenonTime": "2025-06-21T10:30:00.000Z", "resultTime": "2025-06-21T10:30:05.000Z", "result": 24.6, '
          b'"Datastream@iot.navigationLink": "https://daten-api.osnabrueck.de/v1.1/Observations(901300)/Datastream"}')
PUSH_OPTS = sensorthings.Options(latitude=51.571, longitude=8.106, datastreams=STREAMS,
                                 mqtt={"host": "daten-api.osnabrueck.de"})


def test_push_topic_is_frosts_observations_topic_of_the_polled_datastream():
    readings = parse("normal.json", PUSH_OPTS)
    assert sensorthings.push_topic(PUSH_OPTS, readings["temperature"]) == "v1.1/Datastreams(43)/Observations"
    assert sensorthings.push_topic(PUSH_OPTS, readings["wind_speed"]) is None  # no such Datastream: no id
    prefixed = PUSH_OPTS.model_copy(update={"mqtt": PUSH_OPTS.mqtt.model_copy(update={"topic_prefix": "sta/v1.1"})})
    assert sensorthings.push_topic(prefixed, readings["temperature"]) == "sta/v1.1/Datastreams(43)/Observations"
    assert sensorthings.push_topic(OPTS, readings["temperature"]) is None  # push not configured
    text_id = Reading("temperature", 1.0, NOW, None, {"datastream_id": "ds-43"})
    assert sensorthings.push_topic(PUSH_OPTS, text_id) == "v1.1/Datastreams('ds-43')/Observations"


def test_pushed_observation_is_read_like_the_polled_one():
    polled = parse("normal.json", PUSH_OPTS)["temperature"]
    ident, reading = sensorthings.parse_pushed(PUSHED, polled, NOW)
    assert ident == "901300"
    assert (reading.field, reading.value) == ("temperature", 24.6)
    assert reading.observed_at == datetime(2025, 6, 21, 10, 30, tzinfo=UTC)
    assert reading.station == polled.station  # the push carries no Thing: the poll's station
    assert reading.attributes == polled.attributes == {"datastream": "Lufttemperatur", "upstream_unit": "°C",
                                                       "datastream_id": "43", "unit": "°C"}


def test_pushed_observation_of_a_datastream_polled_without_observations_drops_the_note():
    polled = parse("normal.json", PUSH_OPTS)["precipitation"]
    assert polled.attributes["note"] == "no Observation yet"
    _, reading = sensorthings.parse_pushed(PUSHED, polled, NOW)
    assert "note" not in reading.attributes
    assert reading.value == 24.6


@pytest.mark.parametrize(("body", "kind"), [
    (b"<html></html>", "not_json"), (b'{"result": ', "bad_json"), (b"[1]", "bad_schema"), (b"17", "bad_schema")])
def test_unusable_pushed_payloads_raise_parse_error(body: bytes, kind: str):
    polled = parse("normal.json", PUSH_OPTS)["temperature"]
    with pytest.raises(ParseError) as info:
        sensorthings.parse_pushed(body, polled, NOW)
    assert info.value.kind == kind


@pytest.mark.parametrize("body", [b'{"@iot.id": 1, "result": 3.0}',
                                  b'{"phenomenonTime": "2025-06-21 10:30", "result": 3}'])
def test_pushed_observation_without_usable_time_falls_back_to_now(body: bytes):
    # The core drops such a push as malformed (a push must carry its own time): observed_at is `now` itself.
    polled = parse("normal.json", PUSH_OPTS)["temperature"]
    _, reading = sensorthings.parse_pushed(body, polled, NOW)
    assert reading.observed_at is NOW


@pytest.mark.parametrize("bad", [
    {"host": ""}, {"host": "mqtt://x"}, {"host": "x", "port": 0}, {"host": "x", "protocol": "4"},
    {"host": "x", "password_env": "not-a-var"}, {"host": "x", "topic_prefix": "v1.1/#"},
    {"host": "x", "max_payload": 10}, {"host": "x", "passwort": "secret"},
])
def test_invalid_mqtt_options_are_refused(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        sensorthings.Options(latitude=51.571, longitude=8.106, mqtt=bad)


WILD = {"temperature": "Lufttemperatur", "case_temperature": "Temperatur Gehäuse", "pressure": "Luftdruck",
        "rain_rate": "Niederschlagsintensität", "passers_by": "Passanten", "pm10": "Feinstaub PM10",
        "wind_speed": "Windgeschwindigkeit"}


def test_a_paged_thing_with_a_polygon_location_and_units_as_servers_write_them():
    # The shape of real FROST answers (issue #16, points 1, 4, 5): "@iot.nextLink" for the next Thing and
    # "Datastreams@iot.nextLink" for expanded Datastreams beyond the server's page (as Hamburg's Urban Data Hub
    # documents for its FROST server), @iot.selfLink/navigationLink members, "resultTime": null, a result sent as
    # text, unitOfMeasurement with name/symbol/definition (UCUM), "C" for Celsius with a QUDT definition (a
    # public SensorThings setup script), a null unit for a count, and the Location as a GeoJSON Feature holding
    # a building's Polygon. Values, names and ids are ours.
    opts = sensorthings.Options(latitude=51.571, longitude=8.106, datastreams=WILD)
    readings = parse("paged_polygon_units.json", opts)
    values = {k: r.value for k, r in readings.items()}
    assert values == {"temperature": 18.4, "case_temperature": None, "pressure": pytest.approx(1002.3),
                      "rain_rate": None, "passers_by": 212.0, "pm10": 11.2, "wind_speed": None}
    attrs = {k: r.attributes for k, r in readings.items()}
    assert (attrs["pressure"]["upstream_unit"], attrs["pressure"]["unit"]) == ("Pa", "hPa")
    assert attrs["pm10"]["unit"] == "µg/m³"
    # Units we do not know are refused with the reason, not guessed ("C" is coulomb in SI; mm/h is a rate).
    assert attrs["case_temperature"]["refused"] == "unit 'C' is not one we know; the value is not published"
    assert "'mm/h'" in attrs["rain_rate"]["refused"]
    assert attrs["passers_by"]["unit"] is None
    assert "refused" not in attrs["passers_by"]
    # A Datastream behind a next-page link that was not followed (parse alone follows none) is said to be so.
    assert attrs["wind_speed"]["note"] == "no Datastream of this name on the pages read (more are on another host)"
    # The polygon's centroid stands in for the Thing's position.
    station = readings["temperature"].station
    assert station is not None
    assert (station.latitude, station.longitude) == (pytest.approx(52.2799), pytest.approx(8.0472))
    assert station.distance_m == pytest.approx(79_200, rel=0.01)


@pytest.mark.parametrize(("symbol", "result", "expected"), [
    ("K", 293.15, (20.0, "°C")), ("°F", 68, (20.0, "°C")), ("degC", 20, (20.0, "°C")), ("Cel", 20, (20.0, "°C")),
    ("klx", 48.2, (48200.0, "lx")), ("lux", 480, (480.0, "lx")), ("μg/m³", 9, (9.0, "µg/m³")),  # Greek mu
    ("mg/m³", 0.012, (12.0, "µg/m³")), ("m/s", 5, (18.0, "km/h")), ("mbar", 1003, (1003.0, "hPa")),
    ("W/m2", 512, (512.0, "W/m²")), (" % ", 48, (48.0, "%")),
    ("C", 20, (None, None)), ("cd", 300, (None, None)), ("ppb", 12, (None, None)),
])
def test_units_are_converted_to_ours_or_refused(symbol: str, result: float, expected: tuple[object, object]):
    body = {"value": [{"@iot.id": 1, "Datastreams": [{"name": "Lufttemperatur", "unitOfMeasurement": {"symbol": symbol},
            "Observations": [{"phenomenonTime": "2025-06-21T10:20:00Z", "result": result}]}]}]}
    opts = sensorthings.Options(latitude=51.571, longitude=8.106, datastreams={"value": "Lufttemperatur"})
    reading = sensorthings.parse(json.dumps(body).encode(), opts, NOW)[0]
    value, unit = expected
    assert reading.attributes["unit"] == unit
    assert reading.value == (None if value is None else pytest.approx(value))
    assert ("refused" in reading.attributes) is (unit is None)


# --------------------------------------------------------------------------- paging, against a local server

PAGE_2 = {"value": [{"@iot.id": 47, "name": "Windgeschwindigkeit", "unitOfMeasurement": {"symbol": "m/s"},
                     "Observations": [{"@iot.id": 9001, "phenomenonTime": "2025-06-21T10:20:00.000Z", "result": 2.5}]}]}
NEXT = "/v1.1/Things(17)/Datastreams"


def paged_spec(base_url: str) -> catalog.SourceSpec:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    source = {**data["sources"]["urban_sensors"], "enabled": True, "base_url": base_url}
    source["options"] = {**source["options"], "datastreams": {"temperature": "Lufttemperatur",
                                                             "wind_speed": "Windgeschwindigkeit"}}
    source["entities"] = {"temperature": {"name": "Temperature"}, "wind_speed": {"name": "Wind speed"}}
    data["sources"] = {"urban_sensors": source}
    return catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml"),
                         ADAPTERS).sources["urban_sensors"]


def first_page(link: str) -> bytes:
    return (FIXTURES / "sensorthings" / "paged_polygon_units.json").read_text().replace(
        "https://daten-api.example.de/v1.1/Things(17)/Datastreams", link).encode()


def test_expanded_datastreams_on_further_pages_are_fetched(upstream: FixtureServer):
    upstream.serve("/v1.1/Things", first_page(upstream.url + NEXT))
    upstream.serve(NEXT, PAGE_2)
    got = collect(paged_spec(upstream.url), make_session(), None, None, NOW)
    readings = {r.field: r for r in got.readings or []}
    assert readings["wind_speed"].value == pytest.approx(9.0)  # 2.5 m/s
    assert "note" not in readings["wind_speed"].attributes
    assert readings["temperature"].value == 18.4
    paths = [p for p, _ in upstream.requests]
    assert [p.split("?")[0] for p in paths] == ["/v1.1/Things", NEXT]
    # The link is followed as the server wrote it (its $skip and nested $expand), not rebuilt.
    assert parse_qs(urlsplit(paths[1]).query)["$skip"] == ["6"]
    assert "Observations" in parse_qs(urlsplit(paths[1]).query)["$expand"][0]


def test_a_next_page_link_to_another_host_is_not_followed(upstream: FixtureServer):
    upstream.serve("/v1.1/Things", first_page("http://internal.frost:8080/FROST-Server/v1.1/Things(17)/Datastreams"))
    got = collect(paged_spec(upstream.url), make_session(), None, None, NOW)
    readings = {r.field: r for r in got.readings or []}
    assert readings["wind_speed"].value is None
    assert readings["wind_speed"].attributes["note"] == sensorthings.MISSING[1]
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("page", [b"<html>502 Bad Gateway</html>", b'{"value": "none"}', b"[1]"])
def test_a_broken_further_page_fails_the_fetch(upstream: FixtureServer, page: bytes):
    upstream.serve("/v1.1/Things", first_page(upstream.url + NEXT))
    upstream.serve(NEXT, page)
    with pytest.raises(ParseError) as info:
        collect(paged_spec(upstream.url), make_session(), None, None, NOW)
    assert info.value.kind == "bad_schema"


def test_pages_beyond_the_limit_are_an_error_not_a_silent_cut(upstream: FixtureServer):
    upstream.serve("/v1.1/Things", first_page(upstream.url + NEXT))
    upstream.serve(NEXT, {**PAGE_2, "@iot.nextLink": upstream.url + NEXT + "?$skip=7"})  # a server that loops
    with pytest.raises(ParseError) as info:
        collect(paged_spec(upstream.url), make_session(), None, None, NOW)
    assert info.value.kind == "too_large"
    assert len(upstream.requests) == 20
