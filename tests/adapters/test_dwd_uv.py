"""DWD uvi.json: one city's UV index, the WHO risk category and the shift of a stale file's days."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters import dwd_uv
from gateway.errors import ParseError
from tests.helpers import FIXTURES

OPTS = dwd_uv.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)  # 14:00 in Soest, the file's forecast_day
BERLIN = ZoneInfo("Europe/Berlin")


def fixture() -> dict[str, Any]:
    return json.loads((FIXTURES / "dwd_uv" / "normal.json").read_text())


def parse(body: dict[str, Any] | bytes, now: datetime = NOW, opts: dwd_uv.Options = OPTS) -> dict[str, dwd_uv.Reading]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {r.field: r for r in dwd_uv.parse(raw, opts, now)}


def values(body: dict[str, Any] | bytes, now: datetime = NOW, opts: dwd_uv.Options = OPTS) -> dict[str, object]:
    return {k: r.value for k, r in parse(body, now, opts).items()}


def test_normal_response():
    readings = parse((FIXTURES / "dwd_uv" / "normal.json").read_bytes())
    assert set(readings) == dwd_uv.ADAPTER.fields
    assert {k: r.value for k, r in readings.items()} == {"uv_today": 7, "uv_tomorrow": 6, "risk_today": "high"}
    assert all(r.observed_at == datetime(2026, 6, 21, 7, 45, tzinfo=BERLIN) for r in readings.values())
    assert readings["uv_today"].attributes["forecast_day"] == "2026-06-21"
    assert readings["uv_tomorrow"].attributes["upstream_day"] == "tomorrow"
    station = readings["uv_today"].station
    assert station is not None
    assert station.name == "Kahler Asten"
    assert station.distance_m == pytest.approx(50_997, abs=1)


def test_city_with_umlaut_and_known_position():
    readings = parse(fixture(), opts=dwd_uv.Options(latitude=51.571, longitude=8.106, city="Osnabrück"))
    assert readings["uv_today"].value == 6
    assert readings["uv_today"].station is not None
    assert readings["uv_today"].station.distance_m == pytest.approx(78_813, abs=1)


def test_city_without_known_position_has_no_distance():
    readings = parse(fixture(), opts=dwd_uv.Options(latitude=51.571, longitude=8.106, city="Zugspitze"))
    assert readings["risk_today"].value == "very_high"
    assert readings["uv_today"].station is not None
    assert readings["uv_today"].station.distance_m is None


@pytest.mark.parametrize(("now", "today", "tomorrow", "upstream"), [
    (datetime(2026, 6, 21, 21, 59, tzinfo=UTC), 7, 6, "today"),  # 23:59 local: still the file's day
    (datetime(2026, 6, 21, 22, 0, tzinfo=UTC), 6, 7, "tomorrow"),  # midnight local, before the new file
    (datetime(2026, 6, 22, 22, 0, tzinfo=UTC), 7, None, "dayafter_to"),  # two days stale
    (datetime(2026, 6, 23, 22, 0, tzinfo=UTC), None, None, None),  # beyond what the file covers
    (datetime(2026, 6, 20, 12, 0, tzinfo=UTC), None, 7, None),  # a file from our future: no "today"
])
def test_stale_file_shifts_days(now: datetime, today: int | None, tomorrow: int | None, upstream: str | None):
    readings = parse(fixture(), now=now)
    assert readings["uv_today"].value == today
    assert readings["uv_tomorrow"].value == tomorrow
    assert readings["uv_today"].attributes["upstream_day"] == upstream


@pytest.mark.parametrize(("uv", "risk"), [
    (0, "low"), (2, "low"), (3, "moderate"), (5, "moderate"), (6, "high"), (7, "high"),
    (8, "very_high"), (10, "very_high"), (11, "extreme"), (14, "extreme"), (-1, None), (None, None), ("7", None),
])
def test_who_risk_categories(uv: object, risk: str | None):
    body = fixture()
    body["content"] = [{"city": "Kahler Asten", "forecast": {"today": uv, "tomorrow": 1, "dayafter_to": 1}}]
    assert values(body)["risk_today"] == risk


def test_nulls_and_missing_fields_become_none():
    body = fixture()
    body["content"] = [{"city": "Kahler Asten", "forecast": {"today": None}}, {"city": "Bonn"}]
    assert values(body) == {"uv_today": None, "uv_tomorrow": None, "risk_today": None}
    body["content"] = [{"city": "Kahler Asten", "forecast": [7, 6, 7]}]
    assert values(body) == {"uv_today": None, "uv_tomorrow": None, "risk_today": None}


def test_missing_forecast_day_uses_last_update_and_missing_times_use_now():
    body = fixture()
    del body["forecast_day"]
    assert values(body, now=datetime(2026, 6, 22, 6, 0, tzinfo=UTC))["uv_today"] == 6  # shifted
    body = fixture()
    del body["last_update"]
    readings = parse(body)
    assert readings["uv_today"].value == 7
    assert readings["uv_today"].observed_at == NOW


def test_empty_content_is_not_an_error():
    body = fixture()
    body["content"] = []
    assert values(body) == {"uv_today": None, "uv_tomorrow": None, "risk_today": None}


def test_city_absent_is_not_found():
    with pytest.raises(ParseError) as info:
        parse(fixture(), opts=dwd_uv.Options(latitude=51.571, longitude=8.106, city="Soest"))
    assert info.value.kind == "not_found"


def test_request_url():
    req = dwd_uv.request(OPTS, "http://127.0.0.1:8080/")
    assert req.url == "http://127.0.0.1:8080/climate_environment/health/alerts/uvi.json"
    assert not req.params
    assert dwd_uv.request(OPTS, "https://opendata.dwd.de").url == \
        "https://opendata.dwd.de/climate_environment/health/alerts/uvi.json"


def test_last_update_is_german_time_not_utc():
    # Decided from the file itself (issue #16, point 3): a public repository that commits uvi.json's fields
    # every day (umweltinformationssysteme/dwd-uvi-nrw, data/uvi_nrw.json) fetched the file on 27 March 2026
    # at 07:05:39 UTC and got last_update "2026-03-27T07:30:00" for forecast_day 2026-03-27. Read as UTC that
    # issue lies 24 minutes after the fetch, which is impossible; read as German time (CET then) it is 06:30
    # UTC. The stamp stays 07:30:00 across the change to summer time (29 March), as a job at 07:30 local time
    # would. The shape of this fixture follows those captures (values ours; name/sender were not seen).
    fetched = datetime(2026, 3, 27, 7, 5, 39, tzinfo=UTC)
    readings = parse((FIXTURES / "dwd_uv" / "early_spring.json").read_bytes(), fetched)
    assert {r.observed_at for r in readings.values()} == {datetime(2026, 3, 27, 6, 30, tzinfo=UTC)}
    assert all(r.observed_at <= fetched for r in readings.values())  # UTC would be 07:30Z: "future"
    assert values((FIXTURES / "dwd_uv" / "early_spring.json").read_bytes(), fetched) == {
        "uv_today": 2, "uv_tomorrow": 2, "risk_today": "low"}
    # In summer the same 07:30 is 05:30 UTC.
    summer = {**fixture(), "forecast_day": "2026-07-02", "last_update": "2026-07-02T07:30:00"}
    assert parse(summer, datetime(2026, 7, 2, 9, 0, tzinfo=UTC))["uv_today"].observed_at == datetime(
        2026, 7, 2, 5, 30, tzinfo=UTC)


def test_last_update_stays_german_time_in_another_configured_zone():
    opts = dwd_uv.Options(latitude=51.571, longitude=8.106, timezone="UTC")
    assert parse(fixture(), opts=opts)["uv_today"].observed_at == datetime(2026, 6, 21, 5, 45, tzinfo=UTC)
