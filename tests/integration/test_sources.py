"""Every network source, end to end: fixture API → gateway → Mosquitto → subscriber; and `fetch`.

The expected payloads are written by hand from the fixtures (tests/fixtures/<adapter>/normal.*),
not computed by the adapters' own ``parse``: a wrong conversion in an adapter must fail here.
The few values that depend on the clock are derived below by rules of this file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import (
    FIXTURES,
    ROOT,
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    expected_tree,
    retained_tree,
    write_config,
)
from tests.sources import SourceFixture, network_sources, only

pytestmark = pytest.mark.broker

SOURCES = network_sources()
BERLIN = ZoneInfo("Europe/Berlin")

# DWD's pollen codes (dwd_pollen/normal.json "legend"): a range "a-b" is the half step between.
POLLEN_INDEX = {"0": "0", "0-1": "0.5", "1": "1", "1-2": "1.5", "2": "2", "2-3": "2.5", "3": "3"}
POLLEN_TEXT = {"0": "keine Belastung", "0-1": "keine bis geringe Belastung", "1": "geringe Belastung",
               "1-2": "geringe bis mittlere Belastung", "2": "mittlere Belastung",
               "2-3": "mittlere bis hohe Belastung", "3": "hohe Belastung"}

# topic -> exact payload, per source, read off the fixture by hand.
FIXED: dict[str, dict[str, str]] = {
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
    # dwd_alerts/normal.json is not freshened: every warning of June 2026 with an `expires` has
    # expired, the "test" status one never counts. Left: STARKE HITZE (minor, no expiry).
    "dwd_alerts": {
        "soest/dwd_alerts/count": "1",
        "soest/dwd_alerts/highest_severity": "minor",
        "soest/dwd_alerts/headline": "Amtliche WARNUNG vor HITZE",
        "soest/dwd_alerts/wind": "OFF",
        "soest/dwd_alerts/thunderstorm": "OFF",
        "soest/dwd_alerts/hail": "OFF",
        "soest/dwd_alerts/heavy_rain": "OFF",
        "soest/dwd_alerts/frost": "OFF",
        "soest/dwd_alerts/heat": "ON",
    },
    # open_meteo/normal.json "current": radiation in W/m², gusts in km/h; is_day 1. The 3-hour
    # look-ahead depends on the clock: see open_meteo_window().
    "open_meteo": {
        "soest/open_meteo/shortwave_radiation": "748",
        "soest/open_meteo/direct_radiation": "561",
        "soest/open_meteo/diffuse_radiation": "187",
        "soest/open_meteo/cloud_cover": "31",
        "soest/open_meteo/wind_gusts": "26.6",
        "soest/open_meteo/temperature": "24.1",
        "soest/open_meteo/is_day": "ON",
    },
    # nina/normal.json: five messages; the LHP "Cancel" does not count and the DWD one expired on
    # 2026-06-21 18:00. Left: KATWARN (Moderate, sent 16:20, the newest), MoWaS (Minor update),
    # police (Minor).
    "nina": {
        "soest/nina/count": "3",
        "soest/nina/highest_severity": "moderate",
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
    # uba_air/normal.json: the latest hour of the day's series for station DENW068 (numeric id
    # 1234 from lookup.json); components 5 PM10, 9 PM2.5, 1 O3, 3 NO2 in µg/m³; index 1 = good.
    "uba_air": {
        "soest/uba_air/pm10": "14",
        "soest/uba_air/pm25": "7",
        "soest/uba_air/no2": "9",
        "soest/uba_air/o3": "96",
        "soest/uba_air/index": "1",
        "soest/uba_air/index_text": "good",
    },
    # sensor_community/normal.json: the latest reading per sensor within 5 km; -145.2 °C and
    # 99.9 % are outside the physical range; the two ~50 µg/m³ PM sensors at 51.552/8.095 are MAD
    # outliers (> 3.5 σ); medians of the rest, pressure in hPa (Pa / 100), 15 sensors used.
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
}


def number(value: float) -> str:
    """A payload as the gateway writes numbers: no trailing zeros, integers without a point."""
    return f"{round(value, 6):.6f}".rstrip("0").rstrip(".")


def open_meteo_window(now: datetime) -> dict[str, str]:
    """Max gust and mean global radiation over the hourly values overlapping (now, now + 3 h].

    Open-Meteo's hourly value at time t covers the hour before t; times are local at the fixture's
    utc_offset_seconds. The fixture's dates move to today and tomorrow (tests/sources.py FRESHEN).
    """
    data = json.loads((FIXTURES / "open_meteo" / "normal.json").read_text())
    zone = timezone(timedelta(seconds=data["utc_offset_seconds"]))
    today = datetime.now(BERLIN).date()
    moved = {"2026-06-21": today, "2026-06-22": today + timedelta(days=1)}
    hourly = data["hourly"]
    gusts, radiation = [], []
    for stamp, gust, rad in zip(hourly["time"], hourly["wind_gusts_10m"], hourly["shortwave_radiation"],
                                strict=True):
        day, clock = stamp.split("T")
        t = datetime.combine(moved[day], datetime.strptime(clock, "%H:%M").time(), tzinfo=zone)
        if now < t < now + timedelta(hours=4):
            gusts.append(gust)
            radiation.append(rad)
    return {"soest/open_meteo/max_gust_3h": number(max(gusts)),
            "soest/open_meteo/mean_radiation_3h": number(sum(radiation) / len(radiation))}


WASTE_TYPES = {"residual": "restmüll", "bio": "bio", "paper": "papier", "packaging": "gelbe"}


def waste_days(now: datetime) -> dict[str, str]:
    """Next pickup per type from the ICS's dated events (not freshened), counted from today."""
    text = (FIXTURES / "waste_calendar" / "normal.ics").read_text()
    events = re.findall(r"DTSTART;VALUE=DATE:(\d{8}).*?SUMMARY:([^\r\n]+)", text, re.S)
    today = now.astimezone(BERLIN).date()
    out: dict[str, str] = {}
    for key, word in WASTE_TYPES.items():
        days = sorted(d for stamp, summary in events if word in summary.lower()
                      and (d := date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))) >= today)
        assert days, f"the waste fixture has no {key} pickup left after {today}: extend it"
        out[f"soest/waste_calendar/{key}_next"] = datetime.combine(days[0], datetime.min.time(),
                                                                   tzinfo=BERLIN).isoformat()
        out[f"soest/waste_calendar/{key}_days"] = str((days[0] - today).days)
        out[f"soest/waste_calendar/{key}_tomorrow"] = "ON" if today + timedelta(days=1) in days else "OFF"
    return out


CLOCKED: dict[str, Callable[[datetime], dict[str, str]]] = {
    "open_meteo": open_meteo_window,
    "waste_calendar": waste_days,
}


def hand_expected(key: str, now: datetime) -> dict[str, str]:
    clocked = CLOCKED.get(key)
    return {**FIXED.get(key, {}), **(clocked(now) if clocked else {})}


def test_every_source_has_a_hand_written_table():
    assert {s.key for s in SOURCES} == set(FIXED) | set(CLOCKED)


@pytest.mark.parametrize("source", SOURCES, ids=[s.key for s in SOURCES])
def test_source_end_to_end(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer, source: SourceFixture):
    base_url = upstream.url + "/api"
    source.serve(upstream, base_url)
    cfg = write_config(tmp_path / "t.yaml", base_url, edit=lambda d: only(source.key, d, base_url))
    before = hand_expected(source.key, datetime.now(UTC))
    proc = GatewayProcess(cfg, broker.port)
    try:
        status = f"soest/{source.key}/status"
        # Everything the test reads below: states, their attributes, discovery configs, the
        # source's status, last fetch and error counter (retained, so they may come in any order).
        tree = retained_tree(broker.port, expected_tree(cfg, before))
        # Clock-dependent values: the gateway fetched between `before` and now.
        after = hand_expected(source.key, datetime.now(UTC))
        assert tree[status] == b"online"
        for topic, value in before.items():
            assert tree[topic].decode() in (value, after[topic]), topic
        ours = {t for t in tree if t.startswith(f"soest/{source.key}/") and "/" not in t.removeprefix(
            f"soest/{source.key}/") and t.rsplit("/", 1)[1] not in ("status", "last_fetch", "fetch_errors")}
        assert ours == set(before), "a state the table does not expect, or one it misses"
        for topic in before:
            attrs = json.loads(tree[f"{topic}/attributes"])
            assert attrs["license"]
            assert attrs["attribution"]
            assert attrs["observed_at"]
            assert attrs["source_url"].startswith(base_url)
        config_topics = [t for t in tree if t.endswith("/config") and f"_{source.key}_" in t]
        assert len(config_topics) >= len(before)
        assert tree[f"soest/{source.key}/fetch_errors"] == b"0"
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()


@pytest.mark.parametrize("source", SOURCES, ids=[s.key for s in SOURCES])
def test_fetch_command(tmp_path: Path, upstream: FixtureServer, source: SourceFixture):
    base_url = upstream.url + "/api"
    source.serve(upstream, base_url)
    cfg = write_config(tmp_path / "t.yaml", base_url, edit=lambda d: only(source.key, d, base_url))
    before = hand_expected(source.key, datetime.now(UTC))
    result = subprocess.run([sys.executable, "-m", "gateway", "fetch", source.key, "--config", str(cfg), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    after = hand_expected(source.key, datetime.now(UTC))
    assert result.returncode == 0, result.stderr
    rows = {r["topic"]: r["value"] for r in json.loads(result.stdout) if r["value"] is not None}
    assert set(before) <= set(rows)
    for topic, value in before.items():
        # `fetch` prints JSON values, not payloads: compare numbers as numbers.
        shown = rows[topic]
        if isinstance(shown, bool):
            assert ("ON" if shown else "OFF") in (value, after[topic]), topic
        elif isinstance(shown, int | float):
            wanted = {value, after[topic]}
            assert any(float(v) == pytest.approx(shown) for v in wanted if v not in ("ON", "OFF")), topic
        else:
            # Timestamps print with a space where the payload has ISO's "T".
            assert shown.replace(" ", "T", 1) in (value, after[topic]) or shown in (value, after[topic]), topic
