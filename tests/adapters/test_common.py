"""What every adapter must do with garbage: raise ParseError with the right `kind`, never crash."""

from __future__ import annotations

import importlib

import pytest

from adapters import ADAPTERS
from gateway.errors import ParseError
from tests.helpers import FIXTURES

# Adapter -> (body, ParseError.kind) pairs: HTML error pages, truncated and invalid JSON, the wrong shape,
# renamed fields and error documents, as each API really sends them.
GARBAGE: dict[str, list[tuple[bytes, str]]] = {
    "brightsky": [
    (b"<html><body>502 Bad Gateway</body></html>", "not_json"),
    (b'{"weather": {"temperature": 1', "bad_json"),
    (b"[]", "bad_schema"),
    (b'{"weather": {"temperature": 3, "timestamp": "yesterday"}}', "bad_schema"),
    (b'{"weather": {"temperature": 3, "timestamp": "2026-06-21T14:30:00"}}', "bad_schema"),
    ],
    "buergerwolke": [
    (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "not_json"),
    (b'[{"latitude": 51.57', "bad_json"),
    (b"", "bad_json"),
    (b'{"boxes": []}', "bad_schema"),
    (b'"weather2"', "bad_schema"),
    (b"[1, 2, null]", "bad_schema"),
    (b"[" * 100_000, "bad_json"),
    ],
    "ckan": [
    (b"<!DOCTYPE html><html><body>503 Service Unavailable</body></html>", "not_csv"),
    (b"", "not_csv"),
    (b"\r\n\r\n", "not_csv"),
    (b'{"success": false, "error": {"__type": "Not Found Error"}}', "bad_schema"),
    (b"Gebiet;Jahr\r\nSoest;2024\r\n", "bad_schema"),
    (b'Gebiet;Einwohner;"Einwohner 65 und \xc3\xa4lter";Anteil 65+ in %;Haushalte\r\nWerl;1;2;3;4\r\n', "not_found"),
    (b'Gebiet;Einwohner\r\n"Soest;1\r\n' + b"x" * 200_000, "not_csv"),  # an unclosed quote, a huge field
    ],
    "dwd_alerts": [
    (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "not_json"),
    (b'{"alerts": [', "bad_json"),
    (b"[]", "bad_schema"),
    (b'{"alerts": {"id": 1}}', "bad_schema"),
    (b'{"alerts": [{"start": "2026-06-21T12:00:00+00:00", "level": 2}]}', "bad_schema"),
    (b'{"detail": [{"loc": ["query", "lat"], "msg": "field required"}]}', "upstream_error"),
    ],
    "dwd_pollen": [
    (b"<html><body><h1>503 Service Unavailable</h1></body></html>", "not_json"),
    (b'{"last_update": "2026-04-10 11:00 Uhr", "content": [', "bad_json"),
    (b"[]", "bad_schema"),
    (b'{"last_update": "2026-04-10 11:00 Uhr", "regions": []}', "bad_schema"),
    (b'{"last_update": "2026-04-10 11:00 Uhr", "content": [{"regionId": 40, "partregionId": 41}]}', "bad_schema"),
    (b'{"last_update": "2026-04-10 11:00 Uhr", "content": [null, 41]}', "bad_schema"),
    (b'{"content": []}', "bad_schema"),  # no issue time: "today" would be a guess
    (b'{"last_update": "10.04.2026 11:00 Uhr", "content": []}', "bad_schema"),
    (b'{"last_update": "0001-01-01 00:00 Uhr", "content": []}', "bad_schema"),
    ],
    "dwd_uv": [
    (b"<html><head><title>404 Not Found</title></head></html>", "not_json"),
    (b'{"content": [{"city": "Kahler Asten"', "bad_json"),
    (b'[{"city": "Kahler Asten"}]', "bad_schema"),
    (b'{"forecast_day": "2026-06-21", "stations": []}', "bad_schema"),
    (b'{"forecast_day": "2026-06-21", "content": [{"stadt": "Kahler Asten", "forecast": {}}]}', "bad_schema"),
    (b'{"forecast_day": "2026-06-21", "content": ["Kahler Asten"]}', "bad_schema"),
    (b'{"content": [{"city": "Kahler Asten", "forecast": {"today": 7}}]}', "bad_schema"),  # no date at all
    (b'{"forecast_day": "21.06.2026", "last_update": "heute", "content": []}', "bad_schema"),
    ],
    "ngsi_ld": [
    (b"<html><head><title>502 Bad Gateway</title></head></html>", "not_json"),
    (b'[{"id": "urn:ngsi-ld:WeatherObserved:x"', "bad_json"),
    (b'{"type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData", "title": "Bad request"}', "upstream_error"),
    (b'{"error": "BadRequest", "description": "service not found"}', "upstream_error"),
    (b'{"entities": []}', "bad_schema"),
    (b"[1, 2]", "bad_schema"),
    (b"[]", "not_found"),
    (b'[{"id": 17, "type": "WeatherObserved"}]', "not_found"),
    (b'{"subscriptionId": "urn:x", "data": []}', "not_found"),
    ],
    "nina": [
    (b"<html><head><title>404 Not Found</title></head></html>", "not_json"),
    (b'[{"id": "mow.1", "payload": ', "bad_json"),
    (b"\xff\xfe\x00garbage", "bad_json"),
    (b"{}", "bad_schema"),
    (b'"059740000000"', "bad_schema"),
    (b'{"error": "Not found"}', "upstream_error"),
    ((FIXTURES / "nina" / "renamed_fields.json").read_bytes(), "bad_schema"),
    ],
    "open_meteo": [
    ((FIXTURES / "open_meteo" / "error.json").read_bytes(), "upstream_error"),
    (b'{"error": true}', "upstream_error"),
    (b"<!DOCTYPE html><html><body>429 Too Many Requests</body></html>", "not_json"),
    (b'{"current": {"time": "2026-06-21T14:30"', "bad_json"),
    (b'[{"current": {}}]', "bad_schema"),
    (b"{}", "bad_schema"),
    (b'{"current": {"time": "2026-06-21T14:30", "ghi": 700}, "hourly": {"time": []}}', "bad_schema"),
    (b'{"current": [1, 2], "hourly": "none"}', "bad_schema"),
    ],
    "pegelonline": [
    (b"<html><body><h1>HTTP Status 404 - Not Found</h1></body></html>", "not_json"),
    (b'[{"uuid": "x"', "bad_json"),
    (b'{"status": 404, "message": "Station not found"}', "upstream_error"),
    (b'{"stations": []}', "bad_schema"),
    (b"[1, true]", "bad_schema"),
    (b'[{"uuid": "u", "latitude": 51.6, "longitude": 8.1, "timeseries": [{"shortname": "W", "unit": "cm",'
     b' "currentMeasurement": {"timestamp": "2025-06-21T12:15:00", "value": 5}}]}]', "bad_schema"),
    (b'[{"uuid": "u", "latitude": 51.6, "longitude": 8.1, "timeseries": [{"shortname": "W", "unit": "cm",'
     b' "currentMeasurement": {"value": 5}}]}]', "bad_schema"),
    ],
    "sensor_community": [
    (b"<html><body><h1>503 Service Unavailable</h1></body></html>", "not_json"),
    (b'[{"id": 1, "timestamp": "2025-06-21 12:31:05", "sensor": {', "bad_json"),
    (b'{"detail": "Not found."}', "upstream_error"),
    (b'{"results": []}', "bad_schema"),
    (b'"nothing"', "bad_schema"),
    (b"[1, 2, 3]", "bad_schema"),
    (b'[{"time": "2025-06-21 12:31:05", "sensor_id": 1, "values": []}]', "bad_schema"),
    ],
    "sensorthings": [
    (b"<html><head><title>404 Not Found</title></head></html>", "not_json"),
    (b'{"value": [', "bad_json"),
    (b"[]", "bad_schema"),
    (b'{"value": [17]}', "bad_schema"),
    (b'{"value": [{"name": "Sensorbox 37"}]}', "bad_schema"),
    (b'{"value": [{"Datastreams": [{"name": "Luftdruck"}, "x", {"name": 3}]}]}', "not_found"),
    (b'{"value": {"Datastreams": []}}', "bad_schema"),
    ],
    "uba_air": [
    (b"<html><head><title>502 Bad Gateway</title></head></html>", "not_json"),
    (b'{"data": {"1234": {"2025-06-21 13:00:00": [', "bad_json"),
    (b'[{"data": {}}]', "bad_schema"),
    (b'{"daten": {"1234": {}}}', "bad_schema"),
    (b'{"error": "Invalid parameter: station"}', "upstream_error"),
    (b'{"data": "none"}', "bad_schema"),
    (b'{"data": {"9999": {"2025-06-21 13:00:00": ["2025-06-21 14:00:00", 1, 0]}}}', "not_found"),
    (b'{"data": {"1234": [["2025-06-21 14:00:00", 1, 0]]}}', "bad_schema"),
    (b'{"data": {"1234": {"21.06.2025 13:00": ["2025-06-21 14:00:00", 1, 0]}}}', "bad_schema"),
    (b'{"data": {"1234": {"2025-06-21 13:00:00": {"index": 1}}}}', "bad_schema"),
    (b'{"data": {"1234": {"2025-06-21 13:00:00": ["2025-06-21 14:00:00"]}}}', "bad_schema"),
    (b'{"data": {"1234": {"0001-01-01 00:00:00": ["", 1, 0]}}}', "bad_schema"),  # before year 1 in UTC
    ],
    "waste_calendar": [
    (b"<!DOCTYPE html>\n<html><body><h1>Wartungsarbeiten</h1></body></html>", "not_ics"),
    (b"", "not_ics"),
    (b'{"error": "Strasse nicht gefunden"}', "not_ics"),
    (b"\xff\xfe\x00B\x00E\x00G", "not_ics"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Bio\r\nDTSTART:20261201\r\n", "bad_schema"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n", "bad_schema"),
    (b"BEGIN:VCALENDAR\r\nEND:VEVENT\r\n", "bad_schema"),
    ],
}


def options_and_now(name: str) -> tuple[object, object]:
    """The options and clock of the adapter's own test module (station ids, datastreams, the fixture's date)."""
    module = importlib.import_module(f"tests.adapters.test_{name}")
    return module.OPTS, module.NOW


@pytest.mark.parametrize(("name", "body", "kind"), [(name, body, kind) for name, cases in GARBAGE.items()
                                                   for body, kind in cases])
def test_garbage_raises_parse_error(name: str, body: bytes, kind: str):
    opts, now = options_and_now(name)
    with pytest.raises(ParseError) as info:
        ADAPTERS[name].parse(body, opts, now)
    assert info.value.kind == kind


def test_every_network_adapter_has_garbage_cases():
    assert set(GARBAGE) == {name for name in ADAPTERS if name != "sun"}
