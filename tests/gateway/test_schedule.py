"""Crontab weekday numbers (Sunday = 0 and 7) survive the trip to APScheduler, which counts Monday = 0."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.schedule import cron_trigger

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 6, 17, 12, 0, tzinfo=BERLIN)  # a Wednesday noon


def fire_dates(expr: str, count: int) -> list[str]:
    trigger = cron_trigger(expr, BERLIN)
    out: list[str] = []
    previous, now = None, START
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        out.append(fire.strftime("%a %Y-%m-%d %H:%M"))
        previous = now = fire
    return out


@pytest.mark.parametrize(("expr", "expected"), [
    ("0 6 * * 0", ["Sun 2026-06-21 06:00", "Sun 2026-06-28 06:00"]),
    ("0 6 * * 7", ["Sun 2026-06-21 06:00", "Sun 2026-06-28 06:00"]),
    ("0 6 * * 1-5", ["Thu 2026-06-18 06:00", "Fri 2026-06-19 06:00", "Mon 2026-06-22 06:00",
                     "Tue 2026-06-23 06:00"]),
    ("0 6 * * 5-7", ["Fri 2026-06-19 06:00", "Sat 2026-06-20 06:00", "Sun 2026-06-21 06:00",
                     "Fri 2026-06-26 06:00"]),
])
def test_crontab_weekdays_fire_on_the_right_days(expr: str, expected: list[str]):
    assert fire_dates(expr, len(expected)) == expected


@pytest.mark.parametrize("expr", ["0 6 * * 8", "0 6 * * 5-3", "0 6 * *"])
def test_bad_weekday_or_field_count_is_refused(expr: str):
    with pytest.raises(ValueError, match=r"out of range|expected 5 fields|Error"):
        cron_trigger(expr, BERLIN)
