"""Every network source, end to end: fixture API → gateway → Mosquitto → subscriber; and `fetch`.

The expected payloads are written by hand from the fixtures (tests/fixtures/<adapter>/normal.*),
not computed by the adapters' own ``parse``: a wrong conversion in an adapter must fail here.
tests/sources.py moves each fixture to the real clock when it is fetched, so the gateway always
sees the moment the fixture describes and every table below is exact, whatever the date.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import (
    ROOT,
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    expected_tree,
    retained_tree,
    write_config,
)
from tests.sources import SourceFixture, network_sources, only

pytestmark = [pytest.mark.broker, pytest.mark.both_protocols, pytest.mark.usefixtures("gateway_protocol")]

SOURCES = network_sources()
BERLIN = ZoneInfo("Europe/Berlin")

# DWD's pollen codes (dwd_pollen/normal.json "legend"): a range "a-b" is the half step between.
POLLEN_INDEX = {"0": "0", "0-1": "0.5", "1": "1", "1-2": "1.5", "2": "2", "2-3": "2.5", "3": "3"}
POLLEN_TEXT = {"0": "keine Belastung", "0-1": "keine bis geringe Belastung", "1": "geringe Belastung",
               "1-2": "geringe bis mittlere Belastung", "2": "mittlere Belastung",
               "2-3": "mittlere bis hohe Belastung", "3": "hohe Belastung"}



@dataclass(frozen=True)
class Midnight:
    """The payload of a date ``days`` after today: local midnight with the zone's offset that day."""

    days: int

    def payload(self, today: date) -> str:
        return datetime.combine(today + timedelta(days=self.days), datetime.min.time(), tzinfo=BERLIN).isoformat()


# topic -> exact payload, per source, read off the fixture by hand.
FIXED: dict[str, dict[str, str | Midnight]] = {
    # brightsky/normal.json "weather": the *_10 fields are the last 10 minutes. solar_10 is
    # 0.128 kWh/m² in 10 min = 0.128 kW·h/m² / (1/6 h) = 0.768 kW/m² = 768 W/m²; sunshine_30 is
    # 24 min; precipitation_60 0.2 mm is the hourly sum; wind in km/h as served.
    "brightsky": {
        "soest/brightsky/temperature": "24.3",
        "soest/brightsky/dew_point": "11.2",
        "soest/brightsky/humidity": "48",
        "soest/brightsky/pressure": "1018.4",
        "soest/brightsky/wind_speed": "14.4",
        "soest/brightsky/wind_direction": "250",
        "soest/brightsky/wind_gust_speed": "29.5",
        "soest/brightsky/precipitation": "0",
        "soest/brightsky/precipitation_1h": "0.2",
        "soest/brightsky/cloud_cover": "25",
        "soest/brightsky/visibility": "50000",
        "soest/brightsky/sunshine": "24",
        "soest/brightsky/irradiance": "768",
        "soest/brightsky/condition": "dry",
        "soest/brightsky/icon": "partly-cloudy-day",
    },
    # dwd_alerts/normal.json at its moment, 2026-06-21 14:41 UTC: in effect are the severe
    # thunderstorm 46 (14:00-16:00; code 46 = thunderstorm with heavy rain and hail), wind gusts 51
    # (minor, 13:00-19:00) and heat 247 (minor, no end). Not counted: strong thunderstorm 33
    # (expired 12:00), heavy rain 61 (from 18:00: upcoming), the pre-information (urgency future)
    # and the "test" status one. Headline: the most severe.
    "dwd_alerts": {
        "soest/dwd_alerts/count": "3",
        "soest/dwd_alerts/highest_severity": "severe",
        "soest/dwd_alerts/headline": "Amtliche UNWETTERWARNUNG vor SCHWEREM GEWITTER mit HEFTIGEM STARKREGEN und HAGEL",
        "soest/dwd_alerts/wind": "ON",
        "soest/dwd_alerts/thunderstorm": "ON",
        "soest/dwd_alerts/hail": "ON",
        "soest/dwd_alerts/heavy_rain": "ON",
        "soest/dwd_alerts/frost": "OFF",
        "soest/dwd_alerts/heat": "ON",
    },
    # open_meteo/normal.json "current" (14:30 local): radiation in W/m², gusts in km/h; is_day 1.
    # Look-ahead: hourly values cover the hour *ending* at their time, so (14:30, 17:30] overlaps
    # 15:00..18:00: gusts 27.4, 31.3, 29.9, 22.3 -> max 31.3; shortwave 742, 668, 560, 431 -> 2401/4.
    "open_meteo": {
        "soest/open_meteo/shortwave_radiation": "748",
        "soest/open_meteo/direct_radiation": "561",
        "soest/open_meteo/diffuse_radiation": "187",
        "soest/open_meteo/cloud_cover": "31",
        "soest/open_meteo/wind_gusts": "26.6",
        "soest/open_meteo/temperature": "24.1",
        "soest/open_meteo/is_day": "ON",
        "soest/open_meteo/max_gust_3h": "31.3",
        "soest/open_meteo/mean_radiation_3h": "600.25",
    },
    # nina/normal.json at 16:41 local: five messages; the LHP "Cancel" does not count. Left: KATWARN
    # (Moderate, sent 16:20, the newest), DWD (Severe, 16:00-18:00), MoWaS (Minor update), police (Minor).
    "nina": {
        "soest/nina/count": "4",
        "soest/nina/highest_severity": "severe",
        "soest/nina/latest_headline": "Gasaustritt in Soest-Ampen: Fenster und Türen geschlossen halten",
    },
    # dwd_uv/normal.json, city "Kahler Asten": today 7, tomorrow 6; WHO scale 6-7 is "high".
    "dwd_uv": {
        "soest/dwd_uv/uv_today": "7",
        "soest/dwd_uv/uv_tomorrow": "6",
        "soest/dwd_uv/risk_today": "high",
    },
    # dwd_pollen/normal.json region 40 / part-region 41, as served; Ambrosia today is "-1" (no
    # forecast), so it has no value.
    "dwd_pollen": {
        f"soest/dwd_pollen/{plant}_{day}{suffix}": value
        for plant, today, tomorrow in (("hasel", "0", "0"), ("erle", "0-1", "0"), ("esche", "2", "2-3"),
                                       ("birke", "2-3", "3"), ("graeser", "0", "0-1"), ("roggen", "0", "0"),
                                       ("beifuss", "0", "0"), ("ambrosia", None, "0"))
        for day, code in (("today", today), ("tomorrow", tomorrow)) if code is not None
        for suffix, value in (("", POLLEN_INDEX[code]), ("_text", POLLEN_TEXT[code]))
    },
    # uba_air/normal.json: the newest hour (13:00-14:00 CET) of station DENW068 (numeric id 1234
    # from lookup.json): [component, value, index, ...] with 1 PM10 14, 9 PM2.5 7, 5 NO2 9, 3 O3 96
    # (µg/m³, UBA's component ids); hour index 1 = good.
    "uba_air": {
        "soest/uba_air/pm10": "14",
        "soest/uba_air/pm25": "7",
        "soest/uba_air/no2": "9",
        "soest/uba_air/o3": "96",
        "soest/uba_air/index": "1",
        "soest/uba_air/index_text": "good",
    },
    # sensor_community/normal.json: the latest reading per outdoor sensor (29911/29912 are indoor);
    # -145.2 °C is outside the physical range. MAD outliers (> 3.5 * 1.4826 * MAD, floors 1 µg/m³,
    # 0.5 °C, 2 %, 1 hPa): PM sensor 27301 (48.3/31.7 µg/m³), 27.6 °C, 99.9 %, 991.2 hPa.
    # Medians of the rest: PM10 (10.92 + 11.40) / 2, PM2.5 (6.20 + 6.48) / 2, temperature
    # (24.10 + 24.40) / 2, humidity (49.10 + 50.40) / 2, pressure 100398 Pa / 100 (middle of 3).
    # Sensors behind at least one kept value: 8 PM + 7 climate = 15.
    "sensor_community": {
        "soest/sensor_community/pm10": "11.16",
        "soest/sensor_community/pm25": "6.34",
        "soest/sensor_community/temperature": "24.25",
        "soest/sensor_community/humidity": "49.75",
        "soest/sensor_community/pressure": "1003.98",
        "soest/sensor_community/sensor_count": "15",
    },
    # buergerwolke/normal.json: the nearest station (51.5712, 8.1054); uv 2120.5 µW/cm² is
    # 21.205 W/m² (1 µW/cm² = 0.01 W/m²); lux as served.
    "buergerwolke": {
        "soest/buergerwolke/temperature": "23.8",
        "soest/buergerwolke/humidity": "49.2",
        "soest/buergerwolke/pressure": "1011.6",
        "soest/buergerwolke/precipitation": "0",
        "soest/buergerwolke/illuminance": "48210",
        "soest/buergerwolke/uv_intensity": "21.205",
    },
    # sensorthings/normal.json, "Sensorbox 37": the latest observations of its datastreams.
    "urban_sensors": {
        "soest/urban_sensors/illuminance": "48210",
        "soest/urban_sensors/temperature": "23.8",
    },
    # pegelonline/normal.json: the nearest gauge with a W series is UENTROP, 62.74 m above sea
    # level, gauge zero 58.0 m: (62.74 - 58.0) m = 474 cm; trend 0 = steady; no MNW/MHW state.
    "pegelonline": {
        "soest/pegelonline/water_level": "474",
        "soest/pegelonline/water_level_nn": "62.74",
        "soest/pegelonline/trend": "steady",
        "soest/pegelonline/state": "unknown",
    },
    # ngsi_ld/normal.json: of two WeatherObserved entities the Soest Rathaus station is the nearest;
    # its default temperature instance 3.3 CEL (not the roof's 38.3 FAH), relativeHumidity 0.54 without
    # a unitCode (the model's ratio) = 54 %, windSpeed 2 MTS (m/s) = 7.2 km/h, pressure 1013.2 A97 (hPa).
    "city_platform": {
        "soest/city_platform/temperature": "3.3",
        "soest/city_platform/humidity": "54",
        "soest/city_platform/pressure": "1013.2",
        "soest/city_platform/wind_speed": "7.2",
        "soest/city_platform/wind_direction": "135",
        "soest/city_platform/precipitation": "0",
        "soest/city_platform/illuminance": "1000",
    },
    # ckan/lookup.json names the CSV resource; ckan/normal.csv's last "Soest" row (2024): "48.276"
    # with a German thousands dot, "22,2" with a decimal comma.
    "district_statistics": {
        "soest/district_statistics/population": "48276",
        "soest/district_statistics/population_65": "10702",
        "soest/district_statistics/share_65": "22.2",
        "soest/district_statistics/households": "24010",
    },
}


DATED = {"waste_calendar", "dwd_uv", "dwd_pollen"}  # values that name today's date


FIXED["waste_calendar"] = {
    # waste_calendar/normal.ics, moved so that today is Monday 2026-12-07: the next Biotonne is
    # 12-08 (tomorrow), Gelbe Tonne 12-10, Restmüll 12-15, Papiertonne 12-18.
    f"soest/waste_calendar/{kind}_{suffix}": value
    for kind, days in (("bio", 1), ("packaging", 3), ("residual", 8), ("paper", 11))
    for suffix, value in (("next", Midnight(days)), ("days", str(days)), ("tomorrow", "ON" if days == 1 else "OFF"))
}


def hand_expected(key: str) -> dict[str, str]:
    today = datetime.now(BERLIN).date()
    return {t: v.payload(today) if isinstance(v, Midnight) else v for t, v in FIXED[key].items()}


def clear_of_midnight(key: str) -> None:
    """Set-up: a dated source must not see local midnight pass while the test runs, or "today"
    changes under it. Within two minutes of midnight, wait until just after it (a sleep that sets
    the scenario up; nothing is asserted on it)."""
    now = datetime.now(BERLIN)
    left = (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=BERLIN) - now).total_seconds()
    if key in DATED and left < 120:
        time.sleep(left + 2)


def test_every_source_has_a_hand_written_table():
    assert {s.key for s in SOURCES} == set(FIXED)


@pytest.mark.parametrize("source", SOURCES, ids=[s.key for s in SOURCES])
def test_source_end_to_end(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer, source: SourceFixture):
    clear_of_midnight(source.key)
    base_url = upstream.url + "/api"
    source.serve(upstream, base_url)
    cfg = write_config(tmp_path / "t.yaml", base_url, edit=lambda d: only(source.key, d, base_url))
    expected = hand_expected(source.key)
    proc = GatewayProcess(cfg, broker.port)
    try:
        # Wait for everything the test reads below, not just the states: their attributes, the
        # discovery configs and the source's status, last fetch and error counter. Retained
        # topics come in any order (fetch_errors may follow the first states).
        tree = retained_tree(broker.port, expected_tree(cfg, expected))
        prefix = f"soest/{source.key}/"
        states = {t: p.decode() for t, p in tree.items() if t.startswith(prefix) and "/" not in t.removeprefix(prefix)
                  and t.removeprefix(prefix) not in ("status", "last_fetch", "fetch_errors")}
        assert states == expected  # the whole record: every value exact, none missing, none extra
        assert tree[f"{prefix}status"] == b"online"
        for topic in expected:
            attrs = json.loads(tree[f"{topic}/attributes"])
            assert attrs["license"]
            assert attrs["attribution"]
            assert attrs["observed_at"]
            assert attrs["source_url"].startswith(base_url)
        config_topics = [t for t in tree if t.endswith("/config") and f"_{source.key}_" in t]
        assert len(config_topics) >= len(expected)
        assert tree[f"{prefix}fetch_errors"] == b"0"
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()


def as_payload(value: object) -> str:
    """A `fetch --json` value (JSON, datetimes via str()) written as the gateway's payload."""
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    if isinstance(value, int | float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    try:
        return datetime.fromisoformat(str(value)).isoformat()
    except ValueError:
        return str(value)


@pytest.mark.parametrize("source", SOURCES, ids=[s.key for s in SOURCES])
def test_fetch_command(tmp_path: Path, upstream: FixtureServer, source: SourceFixture):
    clear_of_midnight(source.key)
    base_url = upstream.url + "/api"
    source.serve(upstream, base_url)
    cfg = write_config(tmp_path / "t.yaml", base_url, edit=lambda d: only(source.key, d, base_url))
    result = subprocess.run([sys.executable, "-m", "gateway", "fetch", source.key, "--config", str(cfg), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    shown = {r["topic"]: as_payload(r["value"]) for r in json.loads(result.stdout) if r["value"] is not None}
    assert shown == hand_expected(source.key)
