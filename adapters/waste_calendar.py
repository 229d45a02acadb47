"""Next waste pickups per bin type from the Kreis Soest waste app's iCalendar feed (abfall-app.net)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, available_timezones

import icalendar
import recurring_ical_events
from dateutil.rrule import rrulestr
from pydantic import Field, StringConstraints, model_validator

from gateway import adapter_api as api

# Our waste type key -> case-insensitive substring of the VEVENT SUMMARY (Kreis Soest's bin names).
DEFAULT_TYPES = {"residual": "Restmüll", "bio": "Bio", "paper": "Papier", "packaging": "Gelbe"}
# Field table: "<type>_<suffix>" -> value from (that type's pickup days from today on, sorted; today; zone).
# Times: a floating DTSTART is in the configured zone, a TZID is an IANA zone or the calendar's own VTIMEZONE,
# a DATE is that local day; DTSTAMP is UTC (RFC 5545 §3.8.7.2), also when written without the Z.
VALUES: dict[str, Callable[[list[date], date, ZoneInfo], api.Value]] = {
    "next": lambda days, today, zone: datetime.combine(days[0], time(), tzinfo=zone),
    "days": lambda days, today, zone: (days[0] - today).days,
    "tomorrow": lambda days, today, zone: today + timedelta(days=1) in days,
}
# Days per period of the frequencies we expand; finer ones (HOURLY, ...) make no sense for bins.
PERIOD_DAYS = {"DAILY": 1, "WEEKLY": 7, "MONTHLY": 28, "YEARLY": 365}
HORIZON = timedelta(days=731)   # recurrences are expanded this far ahead of today
# Periods from DTSTART to the horizon that one parse may step through (the expansion starts at DTSTART):
# a hostile RRULE (DAILY since year 1) cannot stall us.
PERIOD_BUDGET = 100_000
DAY = timedelta(days=1)
COUNT = re.compile(r"(?:^|;)COUNT=([^;]*)", re.I)
VTIMEZONE = re.compile(r"^BEGIN:VTIMEZONE\r?$.*?^END:VTIMEZONE\r?$", re.I | re.M | re.S)
VTIMEZONE_ID = re.compile(r"^TZID:(.+?)\r?$", re.I | re.M)
IANA = frozenset(available_timezones())
MAX_ZONES = 50

TypeKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=40)]
Needle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]


class Options(api.AdapterOptions):
    street_id: int | None = Field(default=None, ge=1)
    district_id: int | None = Field(default=None, ge=1)
    types: dict[TypeKey, Needle] = Field(default_factory=lambda: dict(DEFAULT_TYPES), min_length=1, max_length=30)

    @model_validator(mode="after")
    def _location(self) -> Options:
        if self.street_id is None and self.district_id is None:
            raise ValueError("set street_id or district_id (the ids in the soest.abfall-app.net start page)")
        return self


def request(opts: Options, base_url: str) -> api.Request:
    where = {"street": str(opts.street_id)} if opts.street_id is not None else {"district": str(opts.district_id)}
    params = {"system": "ical", "period": "2", **where, "categories": "", "view": "month"}
    return api.get(base_url, "/download", params, accept="text/calendar")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    cal, ignored = _calendar(body)
    zone = ZoneInfo(opts.timezone)
    today = now.astimezone(zone).date()
    found: dict[str, dict[date, str]] = {key: {} for key in opts.types}
    for event in _occurrences(cal, today):
        summary = str(event.get("SUMMARY", "")).strip()
        keys = [k for k, needle in opts.types.items() if needle.casefold() in summary.casefold()]
        day = _local_day(event, "DTSTART", zone)
        if keys and day is not None and day >= today and str(event.get("STATUS", "")).upper() != "CANCELLED":
            for key in keys:
                found[key].setdefault(day, summary)
    stamps = [s for c in (cal, *cal.walk("VEVENT")) if (s := _stamp(c)) is not None]
    observed = min(max(stamps), now) if stamps else now
    readings: list[api.Reading] = []
    for key in opts.types:
        days = sorted(found[key])
        attrs = {"next_dates": [d.isoformat() for d in days[:3]],
                 "summary": api.clip(found[key][days[0]]) if days else None}
        # A rule we could not expand leaves its start date only: say so, or the gap looks like no pickups.
        unread = [api.clip(f"{summary}: RRULE:{rule}", 160) for summary, rule in ignored
                  if opts.types[key].casefold() in summary.casefold()]
        if unread:
            attrs["ignored_rules"] = unread[:5]
        readings.extend(api.Reading(f"{key}_{suffix}", value(days, today, zone) if days else None, observed, None,
                                    attrs) for suffix, value in VALUES.items())
    return readings


def _calendar(body: bytes) -> tuple[icalendar.Calendar, list[tuple[str, str]]]:
    """The VCALENDAR, checked for what icalendar lets through (mismatched END lines), with unusable RRULEs dropped
    (returned as (summary, rule) pairs)."""
    if body.lstrip()[:1] == b"<":
        raise api.ParseError("got HTML instead of iCalendar", kind="not_ics")
    # Unfold before decoding: RFC 5545 §3.1 folds at octets, possibly inside a UTF-8 sequence.
    text = re.sub(rb"\r?\n[ \t]", b"", body).decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    head = next((line for line in lines if line.strip()), "")
    if head.strip().upper() != "BEGIN:VCALENDAR":
        raise api.ParseError(f"not an iCalendar body: {head[:40]!r}", kind="not_ics")
    _check_nesting(lines)
    try:
        cal = icalendar.Calendar.from_ical(_own_zones(text))
    except ValueError as exc:
        raise api.ParseError(f"invalid iCalendar: {str(exc)[:120]}", kind="bad_schema") from None
    ignored: list[tuple[str, str]] = []
    for event in cal.walk("VEVENT"):
        _check_count(event)
        if _local_day(event, "DTSTART", ZoneInfo("UTC")) is None:
            cal.subcomponents.remove(event)  # no usable start: nothing to place on a day
        elif "RRULE" in event and not _usable_rule(event):
            ignored.append((str(event.get("SUMMARY", "")).strip(), _rule_text(event["RRULE"])))
            del event["RRULE"]  # then DTSTART and RDATE still count, as a calendar app would show them
        elif "RRULE" in event:
            _spell_out_plain_weekdays(event["RRULE"])
    return cal, ignored


def _own_zones(text: str) -> str:
    """The calendar with each VTIMEZONE of a non-IANA TZID renamed after its content.

    icalendar keeps the first VTIMEZONE it parses for a TZID it does not know in a process-wide cache and uses it
    for every later calendar with that TZID: a feed whose own "Amtszeit Soest" changes (or two feeds that define
    it differently) would be read with the rules of the first one. A TZID named after its definition makes the
    cache hold one entry per distinct definition, each always right.
    """
    blocks = VTIMEZONE.findall(text)
    if len(blocks) > MAX_ZONES:  # each costs a pass over the text; real feeds define one or two
        raise api.ParseError(f"{len(blocks)} VTIMEZONE components (at most {MAX_ZONES})", kind="bad_schema")
    for block in blocks:
        found = VTIMEZONE_ID.search(block)
        tzid = found[1].strip().strip('"') if found else ""
        if not tzid or tzid in IANA or '"' in tzid:
            continue
        renamed = f"{tzid} {hashlib.sha1(block.encode(), usedforsecurity=False).hexdigest()[:12]}"
        text = text.replace(block, block.replace(found[0], f"TZID:{renamed}", 1), 1)
        reference = re.compile(rf';TZID="?{re.escape(tzid)}"?(?=[:;])', re.I)
        text = reference.sub(lambda _, new=renamed: f';TZID="{new}"', text)
    return text


def _check_count(event: icalendar.Event) -> None:
    """COUNT is a positive integer (RFC 5545 §3.3.10). A rule with COUNT=-3 cannot mean anything a calendar app
    would show: taken literally it silently loses every pickup of the series, so the feed is refused instead."""
    rule = event.get("RRULE")
    raw = rule.to_ical().decode() if isinstance(rule, icalendar.vRecur) else str(rule or "")
    count = COUNT.search(raw)
    if count and not (count[1].isdigit() and int(count[1]) >= 1):
        summary = api.clip(str(event.get("SUMMARY", "")), 40)
        raise api.ParseError(f"RRULE COUNT={api.clip(count[1], 20)} of {summary!r} is not a positive integer",
                             kind="bad_schema")


def _spell_out_plain_weekdays(rule: icalendar.vRecur) -> None:
    """BYDAY=MO,3SA is every Monday *and* the 3rd Saturday (RFC 5545), but dateutil intersects plain and
    ordinal weekdays and yields nothing (the bug jkbrzt/rrule#71 inherited); "MO" becomes 1MO..5MO (..53MO)."""
    days = [str(d) for d in rule.get("BYDAY", [])]
    plain = [d for d in days if d.isalpha()]
    if not plain or len(plain) == len(days) or rule["FREQ"][0] not in ("MONTHLY", "YEARLY"):
        return
    last = 5 if rule["FREQ"][0] == "MONTHLY" or "BYMONTH" in rule else 53
    rule["BYDAY"] = [d for d in days if not d.isalpha()] + [f"{n}{d}" for d in plain for n in range(1, last + 1)]


def _check_nesting(lines: list[str]) -> None:
    stack: list[str] = []
    for line in lines:
        name, _, value = line.partition(":")
        if name.upper() in ("BEGIN", "END"):
            kind = value.strip().upper()
            if name.upper() == "BEGIN":
                stack.append(kind)
            elif not stack or stack.pop() != kind:
                raise api.ParseError(f"END:{kind[:20]} does not close the open component", kind="bad_schema")
            if not stack:
                return
    raise api.ParseError("the calendar is truncated (no END:VCALENDAR)", kind="bad_schema")


def _rule_text(rule: object) -> str:
    """The rule as the calendar wrote it, for the attributes (several RRULEs, or one icalendar cannot write)."""
    try:
        rules = rule if isinstance(rule, list) else [rule]
        # A rule icalendar could not read stays text (vText escapes its ';' when written back).
        return ", ".join(r.to_ical().decode(errors="replace") if isinstance(r, icalendar.vRecur) else str(r)
                         for r in rules)
    except (ValueError, TypeError, AttributeError):
        return "(unreadable)"


def _usable_rule(event: icalendar.Event) -> bool:
    """An RRULE of a frequency we expand that dateutil (under recurring-ical-events) accepts."""
    try:
        rule = event["RRULE"]
        start = event["DTSTART"].dt
        if rule.get("FREQ", [""])[0] not in PERIOD_DAYS:
            return False
        start = start if isinstance(start, datetime) else datetime.combine(start, time())
        rrulestr(rule.to_ical().decode(), dtstart=start)
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return True


def _occurrences(cal: icalendar.Calendar, today: date) -> Iterator[icalendar.Event]:
    """Every occurrence near and after today: RRULE, RDATE, EXDATE and RECURRENCE-ID overrides applied."""
    cost = 0
    for event in cal.walk("VEVENT"):
        if "RRULE" in event:
            start = _local_day(event, "DTSTART", ZoneInfo("UTC")) or today
            cost += (today + HORIZON - start).days // (PERIOD_DAYS[event["RRULE"]["FREQ"][0]] *
                                                       max(1, int(event["RRULE"].get("INTERVAL", [1])[0])))
    if cost > PERIOD_BUDGET:
        raise api.ParseError("the recurrence rules expand to too many periods", kind="bad_schema")
    # A day of margin either side: the local date is decided below, in the configured zone.
    query = recurring_ical_events.of(cal, skip_bad_series=True)
    try:
        yield from query.between(today - DAY, today + HORIZON + DAY)
    except (ValueError, OverflowError) as exc:  # a period past year 9999, or a rule dateutil accepts but it not
        raise api.ParseError(f"cannot expand the calendar: {str(exc)[:120]}", kind="bad_schema") from None


def _local_day(component: Any, name: str, zone: ZoneInfo) -> date | None:
    """The local date of a DATE or DATE-TIME property; floating times (and unknown TZIDs) are ``zone``'s."""
    try:
        moment = component[name].dt
        if isinstance(moment, datetime):
            return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(zone).date()
    except (KeyError, ValueError, OverflowError, AttributeError):
        return None
    return moment if isinstance(moment, date) else None


def _stamp(component: Any) -> datetime | None:
    """DTSTAMP, which RFC 5545 §3.8.7.2 requires in UTC: a stamp written without the Z is read as UTC too."""
    try:
        moment = component["DTSTAMP"].dt
    except (KeyError, ValueError, AttributeError):
        return None
    if isinstance(moment, datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.combine(moment, time(), tzinfo=UTC) if isinstance(moment, date) else None


ADAPTER = api.Adapter(
    name="waste_calendar", title="Waste collection", provider="Kreis Soest (Abfall-App, abfall-app.net)",
    dataset="Waste collection calendar (iCalendar export)",
    license="Terms of the Kreis Soest waste app (abfall-app.net); for personal use",
    attribution="Abfallkalender Kreis Soest (abfall-app.net)", info_url="https://soest.abfall-app.net",
    fields=frozenset(f"{key}_{suffix}" for key in DEFAULT_TYPES for suffix in VALUES), options=Options, request=request,
    parse=parse, dynamic_fields=lambda opts: frozenset(f"{key}_{suffix}" for key in opts.types for suffix in VALUES),
    reevaluate=True,
)
