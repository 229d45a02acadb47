"""Sun position: computed locally, checked against published almanac values for Soest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from adapters import sun

OPTS = sun.Options(latitude=51.571, longitude=8.106, elevation=98)
BERLIN = ZoneInfo("Europe/Berlin")


def at(moment: datetime) -> dict[str, object]:
    return {r.field: r.value for r in sun.parse(b"", OPTS, moment)}


def test_midsummer_noon():
    values = at(datetime(2026, 6, 21, 11, 30, tzinfo=UTC))  # 13:30 CEST, near solar noon
    # Solar noon elevation at 51.57 N on the solstice is 90 - 51.57 + 23.44 = 61.9 degrees.
    assert values["elevation"] == pytest.approx(61.9, abs=0.3)
    assert values["azimuth"] == pytest.approx(180, abs=6)
    assert values["daylight"] is True
    sunrise = values["next_sunrise"]
    sunset = values["next_sunset"]
    assert isinstance(sunset, datetime)
    assert isinstance(sunrise, datetime)
    # Almanac values for Soest on 21 June: sunset about 21:53 CEST, sunrise next day about 05:12 CEST.
    assert sunset.astimezone(BERLIN).date() == datetime(2026, 6, 21).date()
    assert abs(sunset.astimezone(BERLIN).replace(tzinfo=None) - datetime(2026, 6, 21, 21, 53)) < timedelta(minutes=6)
    assert abs(sunrise.astimezone(BERLIN).replace(tzinfo=None) - datetime(2026, 6, 22, 5, 12)) < timedelta(minutes=6)
    assert sunrise.utcoffset() == timedelta(hours=2)


def test_winter_night():
    values = at(datetime(2026, 12, 21, 23, 0, tzinfo=UTC))
    assert values["daylight"] is False
    assert isinstance(values["elevation"], float)
    assert values["elevation"] < -50
    sunrise = values["next_sunrise"]
    assert isinstance(sunrise, datetime)
    # About 08:30 CET on 22 December.
    assert abs(sunrise.astimezone(BERLIN).replace(tzinfo=None) - datetime(2026, 12, 22, 8, 30)) < timedelta(minutes=8)


def test_polar_night_gives_no_daylight_value():
    arctic = sun.Options(latitude=78.2, longitude=15.6, timezone="Arctic/Longyearbyen")
    values = {r.field: r.value for r in sun.parse(b"", arctic, datetime(2026, 12, 21, 12, tzinfo=UTC))}
    assert values["daylight"] is None
    assert values["next_sunrise"] is None


def test_no_network_request():
    assert sun.request(OPTS, "https://astral.readthedocs.io") is None
