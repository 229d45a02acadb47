"""Bright Sky /alerts: active DWD warnings, hazards by event code, expiry without a new fetch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from adapters import dwd_alerts
from gateway.errors import ParseError
from gateway.records import Reading
from tests.helpers import FIXTURES

OPTS = dwd_alerts.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 6, 21, 14, 41, tzinfo=UTC)
STORM = "Amtliche UNWETTERWARNUNG vor SCHWEREM GEWITTER mit HEFTIGEM STARKREGEN und HAGEL"


def parse(name: str, now: datetime = NOW) -> dict[str, Reading]:
    body = (FIXTURES / "dwd_alerts" / name).read_bytes()
    return {r.field: r for r in dwd_alerts.parse(body, OPTS, now)}


def values(readings: dict[str, Reading]) -> dict[str, object]:
    return {k: r.value for k, r in readings.items()}


def one_alert(**fields: object) -> bytes:
    alert = {"status": "actual", "onset": "2026-06-21T12:00:00+00:00", "expires": None, "severity": "minor",
             "headline_de": "Amtliche WARNUNG", **fields}
    return json.dumps({"alerts": [alert]}).encode()


def test_normal_response_counts_warnings_in_effect():
    readings = parse("normal.json")
    assert set(readings) == dwd_alerts.ADAPTER.fields
    # In effect at 14:41Z: the thunderstorm (severe), the heat (no end) and the wind gusts. Not counted:
    # heavy rain from 18:00 (upcoming), a pre-alert for tomorrow, one expired at 12:00, a test message.
    assert values(readings) == {
        "count": 3, "highest_severity": "severe", "headline": STORM,
        "wind": True, "thunderstorm": True, "hail": True, "heavy_rain": True, "frost": False, "heat": True,
    }
    assert all(r.observed_at == NOW for r in readings.values())
    station = readings["count"].station
    assert station is not None
    assert (station.name, station.id) == ("Stadt Soest", "805974040")


def test_attributes_list_warnings_most_severe_first():
    readings = parse("normal.json")
    warnings = readings["headline"].attributes["warnings"]
    assert [w["event_code"] for w in warnings] == [46, 247, 51]
    assert warnings[0] == {
        "event": "SCHWERES GEWITTER mit HEFTIGEM STARKREGEN und HAGEL", "event_code": 46, "severity": "severe",
        "onset": "2026-06-21T14:00:00+00:00", "expires": "2026-06-21T16:00:00+00:00", "headline": STORM,
        "description": warnings[0]["description"], "instruction": warnings[0]["instruction"],
    }
    assert warnings[0]["description"].startswith("Von Südwesten ziehen schwere Gewitter auf.")
    assert warnings[1]["expires"] is None
    count_attrs = readings["count"].attributes
    assert [w["event"] for w in count_attrs["upcoming"]] == ["STARKREGEN"]
    assert [w["event"] for w in count_attrs["pre_alerts"]] == ["VORABINFORMATION SCHWERES GEWITTER"]
    assert readings["wind"].attributes == {"events": ["WINDBÖEN"]}
    assert readings["frost"].attributes == {"events": []}
    json.dumps([dict(r.attributes) for r in readings.values()])  # plain JSON, no datetimes


@pytest.mark.parametrize(("now", "expected"), [
    # Before the storm: gusts and heat only.
    (datetime(2026, 6, 21, 13, 30, tzinfo=UTC), {"count": 2, "highest_severity": "minor", "hail": False}),
    # The storm stops counting at its expiry, 16:00Z, with the same body.
    (datetime(2026, 6, 21, 16, 0, tzinfo=UTC), {"count": 2, "highest_severity": "minor", "hail": False}),
    # 18:00: the rain has begun; 19:00 the gusts end.
    (datetime(2026, 6, 21, 18, 30, tzinfo=UTC), {"count": 3, "highest_severity": "moderate", "heavy_rain": True}),
    (datetime(2026, 6, 21, 21, 0, tzinfo=UTC), {"count": 1, "wind": False, "heavy_rain": False, "heat": True}),
    # A week later only the open-ended heat warning is left.
    (NOW + timedelta(days=7), {"count": 1, "headline": "Amtliche WARNUNG vor HITZE"}),
])
def test_the_same_body_changes_with_time(now: datetime, expected: dict[str, object]):
    got = values(parse("normal.json", now))
    assert {k: got[k] for k in expected} == expected


def test_reevaluate_is_set_so_expiry_needs_no_fetch():
    assert dwd_alerts.ADAPTER.reevaluate is True


def test_empty_result_is_all_clear():
    readings = parse("empty.json")
    assert values(readings) == {
        "count": 0, "highest_severity": "none", "headline": None,
        "wind": False, "thunderstorm": False, "hail": False, "heavy_rain": False, "frost": False, "heat": False,
    }
    assert readings["headline"].attributes == {"warnings": []}
    assert readings["count"].station is not None


def test_nulls_count_without_guessing_severity_or_hazards():
    readings = values(parse("nulls.json"))
    assert readings["count"] == 1
    assert readings["highest_severity"] is None  # a warning exists, its level is unknown
    assert readings["headline"] == "Amtliche WARNUNG vor WINDBÖEN"
    assert not any(readings[h] for h in dwd_alerts.HAZARDS)


def test_missing_fields_fall_back_to_english_and_keywords():
    readings = parse("missing_fields.json")
    # No event_code: "severe thunderstorm with heavy rain and hail" decides the hazards.
    assert values(readings) == {
        "count": 1, "highest_severity": None,
        "headline": "Official SEVERE WEATHER WARNING of SEVERE THUNDERSTORM with HEAVY RAIN and HAIL",
        "wind": False, "thunderstorm": True, "hail": True, "heavy_rain": True, "frost": False, "heat": False,
    }
    assert readings["count"].station is None
    assert readings["headline"].attributes["warnings"][0]["description"] is None


@pytest.mark.parametrize(("code", "event_en", "hazards"), [
    (52, "gale-force gusts", {"wind"}),
    (55, "hurricane-force gusts", {"wind"}),
    (48, "severe thunderstorm", {"wind", "thunderstorm", "hail", "heavy_rain"}),
    (31, "thunderstorm", {"thunderstorm"}),
    (85, "glaze", {"frost"}),
    (248, "extreme heat", {"heat"}),
    (59, "fog", set()),
    (73, "extremely heavy snowfall", set()),  # a known code wins over the keywords
    (None, "violent thunderstorm", {"thunderstorm"}),  # "storm" inside a word is not wind
    (301, "storm gusts and icy roads", {"wind", "frost"}),  # a code from a newer profile
    (True, "heat", {"heat"}),  # a boolean is not an event code
])
def test_hazards_from_event_codes(code: object, event_en: str, hazards: set[str]):
    body = one_alert(event_code=code, event_en=event_en)
    readings = {r.field: r.value for r in dwd_alerts.parse(body, OPTS, NOW)}
    assert {h for h in dwd_alerts.HAZARDS if readings[h]} == hazards


def test_upstream_text_is_clipped():
    body = one_alert(headline_de="W" * 400, description_de="D" * 2000, event_de="E" * 200)
    readings = {r.field: r for r in dwd_alerts.parse(body, OPTS, NOW)}
    assert len(readings["headline"].value) == 255  # type: ignore[arg-type]
    warning = readings["headline"].attributes["warnings"][0]
    assert len(warning["description"]) == 500
    assert len(warning["event"]) == 80


def test_unknown_severity_and_odd_times_do_not_raise():
    body = one_alert(severity="catastrophic", onset="soon", effective=None, expires=17)
    readings = {r.field: r.value for r in dwd_alerts.parse(body, OPTS, NOW)}
    assert readings["count"] == 1
    assert readings["highest_severity"] is None
    # A local time without offset is read as UTC, Bright Sky's default.
    later = one_alert(onset="2026-06-21T15:00:00")
    assert {r.field: r.value for r in dwd_alerts.parse(later, OPTS, NOW)}["count"] == 0


@pytest.mark.parametrize(("name", "kind"), [
    ("renamed_fields.json", "bad_schema"),
    ("not_found.json", "upstream_error"),
])
def test_unusable_fixtures_raise(name: str, kind: str):
    with pytest.raises(ParseError) as info:
        parse(name)
    assert info.value.kind == kind


def test_request_by_coordinates_or_warn_cell():
    req = dwd_alerts.request(OPTS, "http://mirror.example/api/")
    assert req.url == "http://mirror.example/api/alerts"
    assert dict(req.params) == {"lat": "51.5710", "lon": "8.1060"}
    by_cell = dwd_alerts.Options(latitude=51.571, longitude=8.106, warn_cell_id=805974040)
    assert dict(dwd_alerts.request(by_cell, "https://api.brightsky.dev").params) == {"warn_cell_id": "805974040"}


def test_alerts_in_the_2023_shape_without_status():
    # The shape of real /alerts answers from August 2023 that a public weewx extension keeps in its comments
    # (issue #16, point 5): no "status" member (the API added it later), "instruction_de": null, category
    # "health" for heat (event_code 247). Ids, texts and our warn cell are ours. Without a status an alert counts.
    at = datetime(2023, 8, 26, 15, 0, tzinfo=UTC)
    readings = parse("without_status.json", at)
    got = values(readings)
    # 15:00 UTC: the heat warning is active, the rain warning starts at 22:00.
    assert (got["count"], got["highest_severity"], got["heat"], got["heavy_rain"]) == (1, "minor", True, False)
    assert readings["count"].attributes["upcoming"][0]["event"] == "DAUERREGEN"
    later = values(parse("without_status.json", datetime(2023, 8, 26, 23, 0, tzinfo=UTC)))
    assert (later["count"], later["highest_severity"], later["heat"], later["heavy_rain"]) == (
        1, "moderate", False, True)
    warning = parse("without_status.json", datetime(2023, 8, 26, 23, 0, tzinfo=UTC))["headline"]
    assert warning.value == "Amtliche WARNUNG vor DAUERREGEN"
    assert warning.attributes["warnings"][0]["instruction"] is None
    assert warning.station is not None
    assert (warning.station.name, warning.station.id) == ("Stadt Soest", "805974040")
