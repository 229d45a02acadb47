"""NINA dashboard: active civil-protection warnings per Kreis, Update/Cancel by id, provider filter."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from adapters import nina
from gateway.records import Reading
from tests.helpers import FIXTURES

OPTS = nina.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 6, 21, 14, 41, tzinfo=UTC)
GAS = "Gasaustritt in Soest-Ampen: Fenster und Türen geschlossen halten"


def parse(name: str, opts: nina.Options = OPTS, now: datetime = NOW) -> dict[str, Reading]:
    body = (FIXTURES / "nina" / name).read_bytes()
    return {r.field: r for r in nina.parse(body, opts, now)}


def values(readings: dict[str, Reading]) -> dict[str, object]:
    return {k: r.value for k, r in readings.items()}


def test_normal_response():
    readings = parse("normal.json")
    assert set(readings) == nina.ADAPTER.fields
    # KATWARN, DWD (16:00-18:00 local), MoWaS and police are active; the LHP flood message is a Cancel.
    assert values(readings) == {"count": 4, "highest_severity": "severe", "latest_headline": GAS}
    assert all(r.observed_at == NOW for r in readings.values())
    station = readings["count"].station
    assert station is not None
    assert (station.name, station.id) == ("Kreis Soest", "059740000000")
    assert readings["latest_headline"].attributes == {"id": "kat.1B3C9F0A2D7E4F21", "provider": "KATWARN"}


def test_attributes_list_warnings_newest_first():
    attrs = parse("normal.json")["count"].attributes
    assert [w["provider"] for w in attrs["warnings"]] == ["KATWARN", "DWD", "MOWAS", "POLICE"]
    assert attrs["warnings"][2] == {
        "id": "mow.DE-NW-SO-W001-20260621-000", "provider": "MOWAS", "severity": "minor", "msg_type": "Update",
        "headline": "Rauchentwicklung nach Brand in Soest", "sent": "2026-06-21T15:02:11+02:00",
        "event": "BBK-EVC-040",
    }
    assert [w["id"] for w in attrs["cancelled"]] == ["lhp.LHP.NW.2718_12"]
    assert attrs["upcoming"] == []
    json.dumps(dict(attrs))  # plain JSON


@pytest.mark.parametrize(("now", "expected"), [
    # Before the DWD item's onset (14:00Z) it is upcoming, after its expiry (16:00Z) it is gone.
    (datetime(2026, 6, 21, 13, 50, tzinfo=UTC), {"count": 3, "highest_severity": "moderate"}),
    (datetime(2026, 6, 21, 16, 0, tzinfo=UTC), {"count": 3, "highest_severity": "moderate"}),
])
def test_onset_and_expires_are_honoured_when_present(now: datetime, expected: dict[str, object]):
    readings = parse("normal.json", now=now)
    assert {k: r.value for k, r in readings.items() if k in expected} == expected


def test_reevaluate_is_off():
    assert nina.ADAPTER.reevaluate is False


@pytest.mark.parametrize("reverse", [False, True])
def test_update_replaces_and_cancel_removes_by_id(reverse: bool):
    items = json.loads((FIXTURES / "nina" / "update_cancel.json").read_bytes())
    body = json.dumps(items[::-1] if reverse else items).encode()
    readings = {r.field: r for r in nina.parse(body, OPTS, NOW)}
    assert values(readings) == {"count": 1, "highest_severity": "severe",
                                "latest_headline": "Hochwasser an der Ahse: Pegel steigt weiter"}
    attrs = readings["count"].attributes
    assert [(w["msg_type"], w["severity"]) for w in attrs["warnings"]] == [("Update", "severe")]
    assert [w["id"] for w in attrs["cancelled"]] == ["biw.BIWAPP-91457"]


def test_empty_array_means_no_warnings():
    readings = parse("empty.json")
    assert values(readings) == {"count": 0, "highest_severity": "none", "latest_headline": None}
    assert readings["count"].attributes == {"warnings": [], "upcoming": [], "cancelled": []}
    assert readings["latest_headline"].attributes == {}


@pytest.mark.parametrize("name", ["nulls.json", "missing_fields.json"])
def test_nulls_and_missing_fields(name: str):
    readings = parse(name)
    assert readings["count"].value == 1
    assert readings["highest_severity"].value == "unknown"  # a warning without a level is still one
    assert readings["latest_headline"].value in ("Stromausfall in Teilen von Soest",
                                                 "Bombenentschärfung in Soest: Sperrkreis")
    warning = readings["count"].attributes["warnings"][0]
    assert warning["provider"] is None
    assert warning["sent"] is None


@pytest.mark.parametrize(("providers", "expected"), [
    (("dwd",), {"count": 1, "highest_severity": "severe"}),
    (("MOWAS", "POLICE"), {"count": 2, "highest_severity": "minor"}),
    (("LHP",), {"count": 0, "highest_severity": "none"}),
])
def test_provider_filter(providers: tuple[str, ...], expected: dict[str, object]):
    opts = nina.Options(latitude=51.571, longitude=8.106, providers=providers)
    readings = parse("normal.json", opts)
    assert {k: r.value for k, r in readings.items() if k in expected} == expected


@pytest.mark.parametrize(("severity", "expected"), [
    ("Extreme", "extreme"), ("Minor", "minor"), ("Unknown", "unknown"), ("Cancel", "unknown"), (3, "unknown"),
])
def test_severity_mapping(severity: object, expected: str):
    body = json.dumps([{"id": "x", "payload": {"data": {"severity": severity, "msgType": "Alert"}}}]).encode()
    assert {r.field: r.value for r in nina.parse(body, OPTS, NOW)}["highest_severity"] == expected


def test_long_headline_is_clipped():
    body = json.dumps([{"id": "x", "payload": {"data": {}}, "i18nTitle": {"de": "H" * 1000}}]).encode()
    headline = {r.field: r.value for r in nina.parse(body, OPTS, NOW)}["latest_headline"]
    assert isinstance(headline, str)
    assert len(headline) == 255


def test_non_object_items_are_skipped():
    readings = {r.field: r.value for r in nina.parse(b'[1, "x", null, []]', OPTS, NOW)}
    assert readings == {"count": 0, "highest_severity": "none", "latest_headline": None}


def test_municipality_ars_becomes_kreis_level():
    opts = nina.Options(latitude=51.571, longitude=8.106, ars="059740040040")  # Stadt Soest
    assert opts.ars == "059740000000"
    req = nina.request(opts, "https://warnung.bund.de/api31/")
    assert req.url == "https://warnung.bund.de/api31/dashboard/059740000000.json"
    assert dict(req.params) == {}
    assert nina.request(OPTS, "http://127.0.0.1:8080").url == "http://127.0.0.1:8080/dashboard/059740000000.json"


@pytest.mark.parametrize("ars", ["05974", "05974004004X", "0597400400400"])
def test_invalid_ars_is_a_config_error(ars: str):
    with pytest.raises(ValidationError):
        nina.Options(latitude=51.571, longitude=8.106, ars=ars)


def test_an_all_clear_sent_as_update_is_not_an_active_warning():
    # Shape of real dashboard items (issue #16, point 5): payload.version/type/id/hash, payload.data with
    # headline, provider, severity, urgency, msgType, transKeys.event and an area of type "ZGEM", "valid" present
    # on some items and absent on others, severity "Unknown" for flood information, "sent" with an offset (as in
    # the dashboard example of a public NINA client's documentation). A public client's tests note that the BBK
    # does not always send a Cancel: the all-clear arrives as an Update titled "Entwarnung: ...". Ids and texts ours.
    readings = parse("all_clear_as_update.json", now=datetime(2026, 6, 21, 14, 10, tzinfo=UTC))
    got = values(readings)
    assert got == {"count": 2, "highest_severity": "severe",
                   "latest_headline": "Großbrand in Lippetal: Fenster und Türen geschlossen halten"}
    cancelled = readings["count"].attributes["cancelled"]
    assert [w["headline"] for w in cancelled] == ["Entwarnung: Gasaustritt in Soest-Ampen"]
    assert [w["severity"] for w in readings["count"].attributes["warnings"]] == ["severe", "unknown"]
