"""DWD s31fg.json: pollen levels as numbers and legend texts, region matching and the day shift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters import dwd_pollen
from gateway.errors import ParseError
from tests.helpers import FIXTURES

OPTS = dwd_pollen.Options(latitude=51.571, longitude=8.106)
NOW = datetime(2026, 4, 10, 10, 0, tzinfo=UTC)  # Friday 12:00 in Soest, an hour after the issue
BERLIN = ZoneInfo("Europe/Berlin")


def fixture() -> dict[str, Any]:
    return json.loads((FIXTURES / "dwd_pollen" / "normal.json").read_text())


def parse(body: dict[str, Any] | bytes, now: datetime = NOW, opts: dwd_pollen.Options = OPTS,
          ) -> dict[str, dwd_pollen.Reading]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {r.field: r for r in dwd_pollen.parse(raw, opts, now)}


def values(body: dict[str, Any] | bytes, now: datetime = NOW, opts: dwd_pollen.Options = OPTS) -> dict[str, object]:
    return {k: r.value for k, r in parse(body, now, opts).items()}


def test_normal_response():
    readings = parse((FIXTURES / "dwd_pollen" / "normal.json").read_bytes())
    assert set(readings) == dwd_pollen.ADAPTER.fields
    assert len(readings) == 32
    got = {k: r.value for k, r in readings.items()}
    numbers = {k: v for k, v in got.items() if not k.endswith("_text")}
    assert numbers == {
        "hasel_today": 0.0, "hasel_tomorrow": 0.0, "erle_today": 0.5, "erle_tomorrow": 0.0,
        "esche_today": 2.0, "esche_tomorrow": 2.5, "birke_today": 2.5, "birke_tomorrow": 3.0,
        "graeser_today": 0.0, "graeser_tomorrow": 0.5, "roggen_today": 0.0, "roggen_tomorrow": 0.0,
        "beifuss_today": 0.0, "beifuss_tomorrow": 0.0, "ambrosia_today": None, "ambrosia_tomorrow": 0.0,
    }
    assert got["birke_today_text"] == "mittlere bis hohe Belastung"
    assert got["birke_tomorrow_text"] == "hohe Belastung"
    assert got["erle_today_text"] == "keine bis geringe Belastung"
    assert got["ambrosia_today_text"] is None  # "-1": no forecast
    assert all(v in dwd_pollen.LEVEL_TEXTS for k, v in got.items() if k.endswith("_text") and v is not None)
    assert all(r.observed_at == datetime(2026, 4, 10, 11, 0, tzinfo=BERLIN) for r in readings.values())
    station = readings["birke_today"].station
    assert station is not None
    assert (station.name, station.id) == ("Rhein.-Westfäl. Tiefland", "41")
    assert readings["birke_today"].attributes == {"upstream_field": "Birke", "upstream_day": "today", "index": "2-3"}


def test_every_level_maps_to_a_number_and_a_text():
    body = fixture()
    entry = next(c for c in body["content"] if c["partregion_id"] == 41)
    levels = ["0", "0-1", "1", "1-2", "2", "2-3", "3", "-1"]
    for kind, level in zip(dwd_pollen.POLLEN.values(), levels, strict=True):
        entry["Pollen"][kind]["today"] = level
    got = values(body)
    assert [got[f"{k}_today"] for k in dwd_pollen.POLLEN] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, None]
    assert [got[f"{k}_today_text"] for k in dwd_pollen.POLLEN] == [*dwd_pollen.LEVEL_TEXTS, None]


@pytest.mark.parametrize("legend", [None, {}, {"id1": "0", "id1_desc": "gar keine Pollen"}, "keine"])
def test_missing_or_unknown_legend_uses_the_built_in_texts(legend: object):
    body = fixture()
    if legend is None:
        del body["legend"]
    else:
        body["legend"] = legend
    got = values(body)
    assert got["hasel_today_text"] == "keine Belastung"
    assert got["birke_tomorrow_text"] == "hohe Belastung"


def test_legend_from_the_body_is_used():
    body = fixture()
    body["legend"] = {"id1": "0", "id1_desc": "geringe Belastung", "id2": "-1", "id2_desc": "keine Belastung"}
    got = values(body)
    assert got["hasel_today_text"] == "geringe Belastung"  # the file says so
    assert got["ambrosia_today_text"] is None  # "-1" stays no forecast whatever the legend says


@pytest.mark.parametrize(("now", "birke_today", "birke_tomorrow", "upstream"), [
    (datetime(2026, 4, 10, 21, 59, tzinfo=UTC), 2.5, 3.0, "today"),  # Friday 23:59
    (datetime(2026, 4, 10, 22, 0, tzinfo=UTC), 3.0, 2.5, "tomorrow"),  # Saturday 00:00, no new issue
    (datetime(2026, 4, 11, 22, 0, tzinfo=UTC), 2.5, None, "dayafter_to"),  # Sunday: Friday's dayafter_to
    (datetime(2026, 4, 12, 22, 0, tzinfo=UTC), None, None, None),  # Monday before 11:00: not covered
    (datetime(2026, 4, 9, 12, 0, tzinfo=UTC), None, 2.5, None),  # a file from our future
])
def test_stale_file_shifts_days(now: datetime, birke_today: float | None, birke_tomorrow: float | None,
                                upstream: str | None):
    readings = parse(fixture(), now=now)
    assert readings["birke_today"].value == birke_today
    assert readings["birke_tomorrow"].value == birke_tomorrow
    assert readings["birke_today"].attributes["upstream_day"] == upstream
    texts = {None: None, 2.5: "mittlere bis hohe Belastung", 3.0: "hohe Belastung"}
    assert readings["birke_today_text"].value == texts[birke_today]


@pytest.mark.parametrize(("region_id", "partregion_id", "station"), [
    (40, 43, ("Mittelgebirge NRW", "43")),
    (20, -1, ("Mecklenburg-Vorpommern", "20")),  # no partregions: matched by region_id
    (50, -1, ("Brandenburg und Berlin", "50")),
])
def test_region_matching(region_id: int, partregion_id: int, station: tuple[str, str]):
    opts = dwd_pollen.Options(latitude=51.571, longitude=8.106, region_id=region_id, partregion_id=partregion_id)
    readings = parse(fixture(), opts=opts)
    got = readings["birke_today"].station
    assert got is not None
    assert (got.name, got.id) == station
    assert readings["birke_today"].value in {v for v, _ in dwd_pollen.LEVELS.values()}


@pytest.mark.parametrize(("region_id", "partregion_id"), [(40, 44), (40, -1), (99, -1)])
def test_region_absent_is_not_found(region_id: int, partregion_id: int):
    opts = dwd_pollen.Options(latitude=51.571, longitude=8.106, region_id=region_id, partregion_id=partregion_id)
    with pytest.raises(ParseError) as info:
        parse(fixture(), opts=opts)
    assert info.value.kind == "not_found"


def test_nulls_and_missing_fields_become_none():
    body = fixture()
    entry = next(c for c in body["content"] if c["partregion_id"] == 41)
    entry["Pollen"]["Birke"] = {"today": None, "tomorrow": 3}  # an int level is read like "3"
    entry["Pollen"]["Esche"] = ["2", "2"]
    entry["Pollen"]["Erle"] = {"today": "0-1 ", "tomorrow": "viel"}
    del entry["Pollen"]["Hasel"]
    del entry["partregion_name"]
    readings = parse(body)
    got = {k: r.value for k, r in readings.items()}
    assert set(got) == dwd_pollen.ADAPTER.fields
    assert (got["birke_today"], got["birke_today_text"]) == (None, None)
    assert (got["birke_tomorrow"], got["birke_tomorrow_text"]) == (3.0, "hohe Belastung")
    assert got["esche_today"] is None
    assert got["hasel_today"] is None
    assert (got["erle_today"], got["erle_tomorrow"]) == (0.5, None)
    assert readings["birke_today"].station is not None
    assert readings["birke_today"].station.name == "region 41"


def test_empty_content_is_not_an_error():
    body = fixture()
    body["content"] = []
    got = values(body)
    assert set(got) == dwd_pollen.ADAPTER.fields
    assert set(got.values()) == {None}


def test_request_url():
    req = dwd_pollen.request(OPTS, "http://127.0.0.1:8080/")
    assert req.url == "http://127.0.0.1:8080/climate_environment/health/alerts/s31fg.json"
    assert not req.params
    assert dwd_pollen.request(OPTS, "https://opendata.dwd.de").url == \
        "https://opendata.dwd.de/climate_environment/health/alerts/s31fg.json"


def test_file_with_an_empty_legend_and_another_configured_zone():
    # Shape seen in a public Dart client's test fixture (a s31fg.json of 23 July with "legend": {} and
    # "YYYY-MM-DD HH:MM Uhr" times) and in real files (partregion_id -1 with partregion_name "", "-1" for
    # dayafter_to on weekdays); values ours. The legend is empty, so the built-in texts stand in; the issue
    # time is German time even when the city is configured in UTC.
    body = (FIXTURES / "dwd_pollen" / "summer_empty_legend.json").read_bytes()
    opts = dwd_pollen.Options(latitude=51.571, longitude=8.106, timezone="UTC")
    readings = parse(body, datetime(2026, 7, 23, 12, 0, tzinfo=UTC), opts)
    assert {r.observed_at for r in readings.values()} == {datetime(2026, 7, 23, 9, 0, tzinfo=UTC)}
    assert readings["graeser_today"].value == 2.5
    assert readings["graeser_today_text"].value == "mittlere bis hohe Belastung"
    assert readings["graeser_tomorrow"].value == 3.0
    assert readings["beifuss_today_text"].value == "keine bis geringe Belastung"
    berlin = parse(body, datetime(2026, 7, 23, 12, 0, tzinfo=UTC))["hasel_today"].observed_at
    assert berlin == datetime(2026, 7, 23, 11, 0, tzinfo=BERLIN)
    # A region without partregions by region_id.
    brandenburg = dwd_pollen.Options(latitude=52.5, longitude=13.4, region_id=50, partregion_id=-1)
    assert parse(body, datetime(2026, 7, 23, 12, 0, tzinfo=UTC), brandenburg)["birke_today"].value == 0.0
