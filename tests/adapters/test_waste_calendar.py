"""Kreis Soest waste calendar (abfall-app.net iCalendar): next pickups per bin type."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from adapters import waste_calendar
from gateway.errors import ParseError
from gateway.records import Reading
from tests.helpers import FIXTURES

BERLIN = ZoneInfo("Europe/Berlin")
OPTS = waste_calendar.Options(latitude=51.571, longitude=8.106, street_id=24260)
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # Thursday 09:00 in Soest
RRULE_TYPES = {**waste_calendar.DEFAULT_TYPES, "hazardous": "schadstoff"}


def fixture(name: str) -> bytes:
    return (FIXTURES / "waste_calendar" / name).read_bytes()


def parse(body: bytes, now: datetime = NOW, opts: waste_calendar.Options = OPTS) -> dict[str, Reading]:
    return {r.field: r for r in waste_calendar.parse(body, opts, now)}


def values(body: bytes, now: datetime = NOW, opts: waste_calendar.Options = OPTS) -> dict[str, object]:
    return {k: r.value for k, r in parse(body, now, opts).items()}


def midnight(y: int, m: int, d: int, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(y, m, d, tzinfo=zone)


def calendar(*events: str, head: str = "") -> bytes:
    """A minimal VCALENDAR around VEVENTs given as property lines separated by '\\n'."""
    blocks = "".join(f"BEGIN:VEVENT\r\n{e.strip().replace(chr(10), chr(13) + chr(10))}\r\nEND:VEVENT\r\n"
                     for e in events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{head}{blocks}END:VCALENDAR\r\n".encode()


def test_normal_calendar_gives_next_pickup_per_type():
    readings = parse(fixture("normal.ics"))
    assert set(readings) == waste_calendar.ADAPTER.fields
    got = {k: r.value for k, r in readings.items()}
    assert got == {
        "residual_next": midnight(2026, 12, 1), "residual_days": 5, "residual_tomorrow": False,
        "bio_next": midnight(2026, 12, 8), "bio_days": 12, "bio_tomorrow": False,
        "paper_next": midnight(2026, 12, 18), "paper_days": 22, "paper_tomorrow": False,
        "packaging_next": midnight(2026, 11, 26), "packaging_days": 0, "packaging_tomorrow": False,
    }
    assert got["residual_next"].utcoffset().total_seconds() == 3600  # local midnight, CET
    assert readings["residual_days"].attributes == {
        "next_dates": ["2026-12-01", "2026-12-15", "2026-12-29"], "summary": "Restmüll"}
    assert readings["packaging_next"].attributes["next_dates"] == ["2026-11-26", "2026-12-10", "2026-12-24"]
    # DTSTAMP says when the calendar was generated.
    assert {r.observed_at for r in readings.values()} == {datetime(2026, 11, 25, 3, 15, 2, tzinfo=UTC)}
    assert all(r.station is None for r in readings.values())


@pytest.mark.parametrize(("now", "expected"), [
    # Monday noon: the residual bin goes out tomorrow.
    (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), {"residual_days": 1, "residual_tomorrow": True}),
    # 00:30 in Soest is already the pickup day although it is still the 30th in UTC.
    (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), {"residual_days": 0, "residual_tomorrow": False}),
    # "Gelbe" matches "Gelber Sack (Zusatzabfuhr)" too.
    (datetime(2026, 12, 27, 9, 0, tzinfo=UTC), {"packaging_next": midnight(2026, 12, 28), "packaging_tomorrow": True}),
    # Holiday shift: Corpus Christi (Thu 27 May 2027) moves the yellow bin to Friday.
    (datetime(2027, 5, 25, 9, 0, tzinfo=UTC), {"packaging_next": midnight(2027, 5, 28), "packaging_days": 3}),
    # Summer time: local midnight is 22:00 UTC the day before.
    (datetime(2027, 6, 1, 9, 0, tzinfo=UTC), {"residual_next": datetime(2027, 5, 31, 22, 0, tzinfo=UTC),
                                              "residual_days": 0}),
])
def test_days_and_tomorrow_follow_the_local_date(now: datetime, expected: dict[str, object]):
    got = values(fixture("normal.ics"), now)
    assert {k: got[k] for k in expected} == expected


def test_summary_attribute_is_the_matched_event():
    readings = parse(fixture("normal.ics"), datetime(2026, 12, 27, 9, 0, tzinfo=UTC))
    assert readings["packaging_next"].attributes["summary"] == "Gelber Sack (Zusatzabfuhr)"
    assert readings["packaging_next"].attributes["next_dates"] == ["2026-12-28", "2027-01-07", "2027-01-21"]


def test_recurring_events_with_exceptions_and_folded_lines():
    opts = waste_calendar.Options(latitude=51.571, longitude=8.106, district_id=1321, types=RRULE_TYPES)
    readings = parse(fixture("rrule.ics"), opts=opts)
    dates = {k[:-5]: r.attributes["next_dates"] for k, r in readings.items() if k.endswith("_next")}
    assert dates == {
        # Biweekly Tuesdays; EXDATE drops 8 Dec, a separate event (folded inside "ü") replaces it.
        "residual": ["2026-12-09", "2026-12-22", "2027-01-05"],
        # Weekly Mondays at 06:00 Berlin; a RECURRENCE-ID moves 30 Nov to 1 Dec.
        "bio": ["2026-12-01", "2026-12-07", "2026-12-14"],
        # Last Friday of the month in UTC; EXDATE 25 Dec, RDATE 28 Dec.
        "paper": ["2026-11-27", "2026-12-28", "2027-01-29"],
        # INTERVAL=2 without BYDAY keeps DTSTART's Thursday; the 24 Dec occurrence is CANCELLED.
        "packaging": ["2026-11-26", "2026-12-10", "2027-01-07"],
        # YEARLY in March and September on the second Saturday.
        "hazardous": ["2027-03-13", "2027-09-11", "2028-03-11"],
    }
    assert readings["residual_next"].attributes["summary"] == "Restmüll (Ersatztermin)"
    assert readings["bio_next"].attributes["summary"] == "Biotonne (verlegt)"
    assert readings["paper_next"].attributes["summary"] == "Papier, Pappe; Kartonagen"
    assert readings["packaging_days"].value == 0
    assert readings["hazardous_days"].value == 107
    # The newest DTSTAMP in the calendar.
    assert readings["bio_next"].observed_at == datetime(2026, 11, 21, 7, 15, tzinfo=UTC)
    assert set(readings) == waste_calendar.ADAPTER.fields_for(opts)


def test_type_without_future_pickup_is_none_not_an_error():
    opts = waste_calendar.Options(latitude=51.571, longitude=8.106, street_id=1, types=RRULE_TYPES)
    readings = parse(fixture("rrule.ics"), datetime(2027, 1, 10, 9, 0, tzinfo=UTC), opts)
    # The bio series ends with UNTIL on 31 Dec 2026.
    assert [readings[f"bio_{s}"].value for s in ("next", "days", "tomorrow")] == [None, None, None]
    assert readings["bio_next"].attributes == {"next_dates": [], "summary": None}
    assert readings["residual_next"].value == midnight(2027, 1, 19)


@pytest.mark.parametrize(("lines", "expected"), [
    ("DTSTART;VALUE=DATE:20261120\nRRULE:FREQ=DAILY;INTERVAL=3", ["2026-11-26", "2026-11-29", "2026-12-02"]),
    ("DTSTART;VALUE=DATE:20260131\nRRULE:FREQ=MONTHLY;BYMONTHDAY=-1", ["2026-11-30", "2026-12-31", "2027-01-31"]),
    ("DTSTART;VALUE=DATE:20260112\nRRULE:FREQ=MONTHLY;BYDAY=2MO", ["2026-12-14", "2027-01-11", "2027-02-08"]),
    ("DTSTART;VALUE=DATE:20260130\nRRULE:FREQ=MONTHLY;BYDAY=-1FR", ["2026-11-27", "2026-12-25", "2027-01-29"]),
    ("DTSTART;VALUE=DATE:20260115\nRRULE:FREQ=MONTHLY;INTERVAL=2", ["2027-01-15", "2027-03-15", "2027-05-15"]),
    # Mixed plain and ordinal BYDAY is a union (RFC 5545), here every Monday and the 3rd Saturday.
    ("DTSTART;VALUE=DATE:20261102\nRRULE:FREQ=MONTHLY;BYDAY=MO,3SA", ["2026-11-30", "2026-12-07", "2026-12-14"]),
    # Recurrences are expanded two years ahead.
    ("DTSTART;VALUE=DATE:20250106\nRRULE:FREQ=YEARLY", ["2027-01-06", "2028-01-06"]),
    ("DTSTART;VALUE=DATE:20260103\nRRULE:FREQ=YEARLY;BYMONTH=1,7;BYDAY=1SA",
     ["2027-01-02", "2027-07-03", "2028-01-01"]),
    # COUNT includes DTSTART and the occurrences already past.
    ("DTSTART;VALUE=DATE:20261123\nRRULE:FREQ=WEEKLY;BYDAY=MO,TH;COUNT=4", ["2026-11-26", "2026-11-30", "2026-12-03"]),
    ("DTSTART;TZID=Europe/Berlin:20261119T060000\nRRULE:FREQ=WEEKLY;UNTIL=20261203T225959Z",
     ["2026-11-26", "2026-12-03"]),
    # WKST decides which weeks INTERVAL=2 skips (the RFC 5545 example, moved to 2026).
    ("DTSTART;VALUE=DATE:20261201\nRRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
     ["2026-12-01", "2026-12-06", "2026-12-15"]),
    ("DTSTART;VALUE=DATE:20261201\nRRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
     ["2026-12-01", "2026-12-13", "2026-12-15"]),
    # BYSETPOS picks from each month's set: the last Monday or Tuesday; DTSTART and RDATE count as well.
    ("DTSTART;VALUE=DATE:20261127\nRRULE:FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=-1\nRDATE;VALUE=DATE:20261204",
     ["2026-11-27", "2026-11-30", "2026-12-04"]),
    ("DTSTART;VALUE=DATE:20261130\nRRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
     ["2026-11-30", "2026-12-31", "2027-01-29"]),
    # UNTIL is an instant: 06:00 Berlin on 3 Dec is 05:00 UTC, after UNTIL, so that day is not a pickup.
    ("DTSTART;TZID=Europe/Berlin:20261119T060000\nRRULE:FREQ=WEEKLY;UNTIL=20261203T045959Z", ["2026-11-26"]),
    ("DTSTART;VALUE=DATE:20261101\nRRULE:FREQ=WEEKLY;BYDAY=SU\nEXDATE;TZID=Europe/Berlin:20261129T000000,20261206T000000",
     ["2026-12-13", "2026-12-20", "2026-12-27"]),
    # Rules we cannot expand leave DTSTART (and RDATE) only.
    ("DTSTART;VALUE=DATE:20261127\nRRULE:FREQ=HOURLY", ["2026-11-27"]),
    ("DTSTART;VALUE=DATE:20261127\nRRULE:FREQ=WEEKLY;INTERVAL=x", ["2026-11-27"]),
    ("DTSTART;VALUE=DATE:20261127\nRRULE:FREQ=YEARLY;BYMONTH=13", ["2026-11-27"]),
    ("DTSTART;VALUE=DATE:20261127\nRRULE:FREQ=DAILY;BYDAY=0MO", ["2026-11-27"]),
])
def test_recurrence_rules(lines: str, expected: list[str]):
    readings = parse(calendar(f"SUMMARY:Restmüll\n{lines}"))
    assert readings["residual_next"].attributes["next_dates"] == expected
    assert readings["residual_next"].value == midnight(*map(int, expected[0].split("-")))


@pytest.mark.parametrize(("dtstart", "day"), [
    ("DTSTART;VALUE=DATE:20261203", date(2026, 12, 3)),
    ("DTSTART:20261203", date(2026, 12, 3)),
    ("DTSTART:20261203T060000", date(2026, 12, 3)),                          # floating: Soest time
    ("DTSTART:20261203T230000Z", date(2026, 12, 4)),                         # 00:00 CET on the 4th
    ("DTSTART;TZID=America/New_York:20261203T200000", date(2026, 12, 4)),    # 02:00 CET
    ('DTSTART;TZID="Europe/Berlin":20261203T000000', date(2026, 12, 3)),
    ("DTSTART;TZID=W. Europe Standard Time:20261203T060000", date(2026, 12, 3)),  # not IANA: local
])
def test_date_forms(dtstart: str, day: date):
    got = values(calendar(f"SUMMARY:Biotonne\n{dtstart}"))
    assert got["bio_next"] == midnight(day.year, day.month, day.day)
    assert got["bio_days"] == (day - date(2026, 11, 26)).days


def test_vtimezone_of_a_custom_tzid_places_the_event():
    # Not an IANA name: the calendar's own VTIMEZONE (UTC+1) says 03:00 there is 02:00 UTC, 21:00 the day before
    # in New York.
    zone = ("BEGIN:VTIMEZONE\r\nTZID:Amtszeit Soest\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
            "TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")
    body = calendar("SUMMARY:Papier\nDTSTART;TZID=Amtszeit Soest:20261203T030000", head=zone)
    opts = waste_calendar.Options(latitude=40.7, longitude=-74.0, timezone="America/New_York", street_id=1)
    assert values(body, opts=opts)["paper_next"] == datetime(2026, 12, 2, tzinfo=ZoneInfo("America/New_York"))


def test_configured_timezone_decides_the_day():
    opts = waste_calendar.Options(latitude=40.7, longitude=-74.0, timezone="America/New_York", street_id=1)
    got = values(calendar("SUMMARY:Papier\nDTSTART:20261203T030000Z"), opts=opts)
    assert got["paper_next"] == datetime(2026, 12, 2, tzinfo=ZoneInfo("America/New_York"))


def test_text_escapes_case_insensitive_matching_and_clipping():
    body = calendar("SUMMARY:RESTMÜLL\\, Sperrmüll\\; Hinweis\\nZweite Zeile\\\\ Ende\nDTSTART:20261201",
                    f"SUMMARY:Gelbe Tonne {'x' * 600}\nDTSTART:20261202")
    opts = waste_calendar.Options(latitude=51.571, longitude=8.106, street_id=1,
                                  types={"residual": "restmüll", "bins": "E", "sperr": "sperrmüll"})
    readings = parse(body, opts=opts)
    assert readings["residual_next"].attributes["summary"] == "RESTMÜLL, Sperrmüll; Hinweis\nZweite Zeile\\ Ende"
    # One event can feed several types.
    assert readings["sperr_next"].value == midnight(2026, 12, 1)
    assert readings["bins_next"].attributes["next_dates"] == ["2026-12-01", "2026-12-02"]
    long = parse(body, datetime(2026, 12, 1, 23, 30, tzinfo=UTC), opts)["bins_next"].attributes["summary"]
    assert len(long) == 500
    assert long.endswith("…")


def test_missing_fields_cancelled_and_past_events_are_skipped():
    body = calendar(
        "SUMMARY:Restmüll",                                      # no DTSTART
        "SUMMARY:Restmüll\nDTSTART:2026-12-03",                  # not the iCalendar format
        "SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261332",         # no such date
        "DTSTART;VALUE=DATE:20261204",                           # no SUMMARY
        "SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261205\nSTATUS:CANCELLED",
        "SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261125",         # yesterday
        "SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261210",
        "SUMMARY:Altkleider\nDTSTART;VALUE=DATE:20261127",       # no configured type
    )
    got = values(body)
    assert got["residual_next"] == midnight(2026, 12, 10)
    assert got["bio_next"] is None
    assert got["paper_days"] is None
    assert got["packaging_tomorrow"] is None


def test_empty_calendar_gives_none_for_every_field():
    readings = parse(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//abfall-app.net//DE\r\nEND:VCALENDAR\r\n")
    assert set(readings) == waste_calendar.ADAPTER.fields
    assert all(r.value is None for r in readings.values())
    assert all(r.observed_at == NOW for r in readings.values())  # no DTSTAMP: the fetch time


@pytest.mark.parametrize(("head", "stamp", "observed"), [
    ("DTSTAMP:20261126T050000Z\r\n", "DTSTAMP:20261120T000000Z", datetime(2026, 11, 26, 5, 0, tzinfo=UTC)),
    ("", "DTSTAMP:20261120T000000Z", datetime(2026, 11, 20, 0, 0, tzinfo=UTC)),
    ("", "DTSTAMP:20301231T000000Z", NOW),                        # from the future: capped at now
    ("", "DTSTAMP:yesterday", NOW),
    ("", "DTSTAMP:20261120T060000", datetime(2026, 11, 20, 6, 0, tzinfo=UTC)),  # RFC 5545: always UTC
])
def test_observed_at_is_the_newest_dtstamp(head: str, stamp: str, observed: datetime):
    body = calendar(f"SUMMARY:Bio\nDTSTART:20261201\n{stamp}", head=head)
    assert {r.observed_at for r in waste_calendar.parse(body, OPTS, NOW)} == {observed}


def test_truncated_fixture_is_bad_schema():
    body = fixture("normal.ics")
    with pytest.raises(ParseError) as info:
        waste_calendar.parse(body[: len(body) // 2], OPTS, NOW)
    assert info.value.kind == "bad_schema"


def test_runaway_recurrence_is_refused():
    body = calendar(*["SUMMARY:Bio\nDTSTART;VALUE=DATE:00010101\nRRULE:FREQ=DAILY;COUNT=999999999"] * 2)
    with pytest.raises(ParseError) as info:
        waste_calendar.parse(body, OPTS, NOW)
    assert info.value.kind == "bad_schema"


def test_request_by_street_or_district():
    req = waste_calendar.request(OPTS, "https://soest.abfall-app.net/")
    assert req.url == "https://soest.abfall-app.net/download"
    assert dict(req.params) == {"system": "ical", "period": "2", "street": "24260", "categories": "",
                                "view": "month"}
    assert req.accept == "text/calendar"
    by_district = waste_calendar.request(
        waste_calendar.Options(latitude=51.571, longitude=8.106, district_id=1321), "http://127.0.0.1:8080")
    assert by_district.url == "http://127.0.0.1:8080/download"
    assert by_district.params["district"] == "1321"
    assert "street" not in by_district.params


@pytest.mark.parametrize("bad", [
    {},                                                  # neither street nor district
    {"street_id": 0},
    {"street_id": 1, "types": {}},
    {"street_id": 1, "types": {"Rest Müll": "Restmüll"}},
    {"street_id": 1, "types": {"residual": "  "}},
    {"street_id": 1, "timezone": "Mars/Olympus"},
])
def test_invalid_options(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        waste_calendar.Options(latitude=51.571, longitude=8.106, **bad)


def test_fields_follow_the_configured_types():
    adapter = waste_calendar.ADAPTER
    assert adapter.reevaluate is True
    assert adapter.fields == {f"{k}_{s}" for k in ("residual", "bio", "paper", "packaging")
                              for s in ("next", "days", "tomorrow")}
    opts = waste_calendar.Options(latitude=51.571, longitude=8.106, street_id=1, types={"glass": "Glas"})
    assert adapter.fields_for(opts) == {"glass_next", "glass_days", "glass_tomorrow"}
    assert adapter.fields_for(OPTS) == adapter.fields


def test_feeds_in_the_shapes_seen_in_the_wild():
    # Issue #16, point 5: shapes from German waste feeds pasted into public issue reports of a Home Assistant
    # waste-collection integration: SUMMARY;LANGUAGE=de:..., a VALARM with TRIGGER:-P0DT0H0M0S,
    # X-MICROSOFT-CDO-BUSYSTATUS, STATUS:CONFIRMED and DTEND the next day (AWISTA Starnberg); "DTSTART:20220712", a
    # date without VALUE=DATE, no DTEND, PRODID "Müllkalender" and a DESCRIPTION folded with two spaces (an
    # "Abfall App" feed). Dates, UIDs and texts ours.
    opts = waste_calendar.Options(latitude=51.571, longitude=8.106, street_id=1,
                                  types={"residual": "Rest", "bio": "Bio", "paper": "Papier", "packaging": "Gelbe"})
    readings = parse(fixture("wild.ics"), opts=opts)
    got = {k: r.value for k, r in readings.items()}
    assert (got["paper_days"], got["packaging_tomorrow"], got["residual_days"], got["bio_days"]) == (0, True, 5, 8)
    assert readings["residual_next"].attributes["summary"] == "Restabfall"
    assert readings["paper_next"].attributes["summary"] == "Papiertonne"  # the LANGUAGE parameter is not text
    assert {r.observed_at for r in readings.values()} == {datetime(2026, 11, 20, 3, 17, 42, tzinfo=UTC)}


def test_a_rule_that_cannot_be_expanded_is_named_in_the_attributes():
    """Only its start date counts (as a calendar app shows it); the attribute says why the dates stop."""
    readings = parse(calendar("SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261127\nRRULE:FREQ=WEEKLY;INTERVAL=x",
                              "SUMMARY:Papier\nDTSTART;VALUE=DATE:20261204\nRRULE:FREQ=WEEKLY"))
    assert readings["residual_next"].attributes["ignored_rules"] == ["Restmüll: RRULE:FREQ=WEEKLY;INTERVAL=x"]
    assert "ignored_rules" not in readings["paper_next"].attributes
    assert readings["paper_next"].attributes["next_dates"] == ["2026-12-04", "2026-12-11", "2026-12-18"]


def test_several_rules_in_one_event_are_named_too():
    readings = parse(calendar("SUMMARY:Restmüll\nDTSTART;VALUE=DATE:20261203\nRRULE:FREQ=WEEKLY\nRRULE:FREQ=DAILY"))
    # RFC 5545 allows one RRULE (SHOULD NOT occur more than once): both are named, the start date stays.
    attrs = readings["residual_next"].attributes
    assert attrs["next_dates"] == ["2026-12-03"]
    assert attrs["ignored_rules"] == ["Restmüll: RRULE:FREQ=WEEKLY, FREQ=DAILY"]
