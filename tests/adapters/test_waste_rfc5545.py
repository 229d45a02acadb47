"""Recurrence exactly as RFC 5545 says (issue #16, point 2): UNTIL is an instant, RDATE may be a PERIOD,
RANGE=THISANDFUTURE moves the rest of a series, a negative COUNT is an error, folding, several bin types
in one SUMMARY and a calendar's own VTIMEZONE."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters import waste_calendar
from gateway.errors import ParseError
from tests.adapters.test_waste_calendar import NOW, OPTS, calendar, midnight, parse, values

# NOW is Thursday 26 Nov 2026, 09:00 in Soest.


@pytest.mark.parametrize(("rule", "dates"), [
    # Weekly Thursdays at 06:00 Berlin. UNTIL 23:00Z on Wednesday 2 Dec is 00:00 CET on the 3rd: the 06:00
    # pickup of the 3rd comes after it, so the UNTIL day (in local terms) has no pickup.
    ("UNTIL=20261202T230000Z", ["2026-11-26"]),
    ("UNTIL=20261203T045959Z", ["2026-11-26"]),                    # one second before 06:00 CET
    ("UNTIL=20261203T050000Z", ["2026-11-26", "2026-12-03"]),      # exactly the occurrence: it is the last one
    ("UNTIL=20261203T000000Z", ["2026-11-26"]),                    # midnight UTC, 01:00 CET
])
def test_until_is_an_instant_not_a_day(rule: str, dates: list[str]):
    body = calendar(f"SUMMARY:Restmüll\nDTSTART;TZID=Europe/Berlin:20261119T060000\nRRULE:FREQ=WEEKLY;{rule}")
    assert parse(body)["residual_next"].attributes["next_dates"] == dates


@pytest.mark.parametrize("until", ["20261127T000000Z", "20261126T230000Z", "20261127"])
def test_until_at_midnight_does_not_announce_tomorrow(until: str):
    # Weekly Fridays at 06:00 Berlin, ending at midnight (UTC or local) before Friday 27 Nov's pickup: on
    # Thursday 26 Nov there is no pickup tomorrow, and no next pickup at all.
    body = calendar(f"SUMMARY:Papier\nDTSTART;TZID=Europe/Berlin:20261106T060000\nRRULE:FREQ=WEEKLY;UNTIL={until}")
    got = values(body)
    assert got["paper_tomorrow"] is None
    assert got["paper_next"] is None


def test_until_synchronised_with_an_all_day_series_includes_that_day():
    # DATE DTSTART, DATE UNTIL on an occurrence: that day is the last pickup, and it is tomorrow.
    body = calendar("SUMMARY:Papier\nDTSTART;VALUE=DATE:20261106\nRRULE:FREQ=WEEKLY;UNTIL=20261127")
    got = values(body)
    assert got["paper_tomorrow"] is True
    assert parse(body)["paper_next"].attributes["next_dates"] == ["2026-11-27"]


def test_rdate_as_period_adds_pickups():
    body = calendar("SUMMARY:Biotonne\nDTSTART;VALUE=DATE:20261120\n"
                    "RDATE;VALUE=PERIOD:20261204T050000Z/20261204T060000Z,20261211T050000Z/PT1H")
    assert parse(body)["bio_next"].attributes["next_dates"] == ["2026-12-04", "2026-12-11"]


def test_range_thisandfuture_moves_the_rest_of_the_series():
    # Mondays; from 7 Dec on the series moves to Tuesdays (one override with RANGE=THISANDFUTURE).
    body = calendar(
        "UID:bio@test\nSUMMARY:Biotonne\nDTSTART;VALUE=DATE:20261102\nRRULE:FREQ=WEEKLY;COUNT=10",
        "UID:bio@test\nSUMMARY:Biotonne (Dienstag)\nRECURRENCE-ID;RANGE=THISANDFUTURE;VALUE=DATE:20261207\n"
        "DTSTART;VALUE=DATE:20261208")
    readings = parse(body)
    assert readings["bio_next"].attributes["next_dates"] == ["2026-11-30", "2026-12-08", "2026-12-15"]
    got = parse(body, datetime(2026, 12, 8, 8, 0, tzinfo=UTC))["bio_next"]
    assert got.attributes == {"next_dates": ["2026-12-08", "2026-12-15", "2026-12-22"],
                              "summary": "Biotonne (Dienstag)"}


@pytest.mark.parametrize("count", ["-3", "0", "x"])
def test_a_count_below_one_is_an_error_not_silence(count: str):
    body = calendar("SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261103\nRRULE:FREQ=WEEKLY;COUNT=" + count,
                    "SUMMARY:Biotonne\nDTSTART;VALUE=DATE:20261201")
    with pytest.raises(ParseError) as info:
        waste_calendar.parse(body, OPTS, NOW)
    assert info.value.kind == "bad_schema"
    assert f"COUNT={count}" in str(info.value)
    assert "Restmüll" in str(info.value)


def test_folded_lines_anywhere_in_a_property():
    # RFC 5545 §3.1: a CRLF followed by one space or tab is removed, also inside a name, a parameter or a value.
    body = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMM\r\n ARY:Gelbe \r\n\tTonne\r\n"
            b"DTSTART;TZID=Europe/Be\r\n rlin:20261119T060000\r\nRRULE:FREQ=WEEKLY;BY\r\n DAY=TH;INTER\r\n\tVAL=2\r\n"
            b"END:VEVENT\r\nEND:VCALENDAR\r\n")
    got = parse(body)["packaging_next"]
    assert got.attributes == {"next_dates": ["2026-12-03", "2026-12-17", "2026-12-31"], "summary": "Gelbe Tonne"}


def test_several_bin_types_in_one_summary():
    # Rural districts collect several bins on one day and name them in one event.
    body = calendar("SUMMARY:Restmüll\\, Biotonne und Papier\nDTSTART;VALUE=DATE:20261127")
    got = values(body)
    assert got["residual_tomorrow"] is got["bio_tomorrow"] is got["paper_tomorrow"] is True
    assert got["packaging_tomorrow"] is None


def test_own_vtimezone_with_summer_time_places_a_late_evening_event():
    # Not an IANA name, with summer time: 23:30 in June is 21:30 UTC, so still 15 June in Soest. Reading only
    # its STANDARD part (+01:00) would move it to 16 June.
    zone = ("BEGIN:VTIMEZONE\r\nTZID:Amtszeit Soest\r\n"
            "BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n"
            "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\n"
            "BEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\n"
            "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")
    body = calendar("SUMMARY:Papier\nDTSTART;TZID=Amtszeit Soest:20270615T233000", head=zone)
    assert values(body)["paper_next"] == midnight(2027, 6, 15)


def test_a_vtimezone_is_read_from_each_calendar_not_from_an_earlier_one():
    # icalendar caches the first VTIMEZONE of an unknown TZID for the whole process; two calendars (or two
    # fetches of one feed) that define "Stadtzeit" differently must each be read with their own definition.
    def zone(offset: str) -> str:
        return (f"BEGIN:VTIMEZONE\r\nTZID:Stadtzeit\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
                f"TZOFFSETFROM:{offset}\r\nTZOFFSETTO:{offset}\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")
    # 00:30 there: at +01:00 that is 00:30 CET on 3 Dec, at +03:00 22:30 CET on 2 Dec.
    event = "SUMMARY:Papier\nDTSTART;TZID=Stadtzeit:20261203T003000"
    assert values(calendar(event, head=zone("+0100")))["paper_next"] == midnight(2026, 12, 3)
    assert values(calendar(event, head=zone("+0300")))["paper_next"] == midnight(2026, 12, 2)
    assert values(calendar(event.replace("TZID=", 'TZID="').replace(":2026", '":2026', 1), head=zone("+0300"))
                  )["paper_next"] == midnight(2026, 12, 2)  # a quoted TZID parameter


def test_a_calendar_with_hundreds_of_vtimezones_is_refused_quickly():
    # Each custom VTIMEZONE costs a pass over the text; 8000 of them took seconds before the cap.
    zones = "".join(f"BEGIN:VTIMEZONE\r\nTZID:Z{i}\r\nEND:VTIMEZONE\r\n" for i in range(8000))
    with pytest.raises(ParseError) as info:
        waste_calendar.parse(calendar("SUMMARY:Bio\nDTSTART:20261201", head=zones), OPTS, NOW)
    assert info.value.kind == "bad_schema"
    assert "8000 VTIMEZONE components" in str(info.value)
