"""Next waste pickups per bin type from the Kreis Soest waste app's iCalendar feed (abfall-app.net)."""

from __future__ import annotations

import calendar
import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field, StringConstraints, model_validator

from adapters.base import Adapter, AdapterOptions, clip
from gateway.errors import ParseError
from gateway.records import Reading, Request, Value

# Our waste type key -> case-insensitive substring of the VEVENT SUMMARY (Kreis Soest's bin names).
DEFAULT_TYPES = {"residual": "Restmüll", "bio": "Bio", "paper": "Papier", "packaging": "Gelbe"}
# Field table: "<type>_<suffix>" -> value from (that type's pickup days from today on, sorted; today; zone).
VALUES: dict[str, Callable[[list[date], date, ZoneInfo], Value]] = {
    "next": lambda days, today, zone: datetime.combine(days[0], time(), tzinfo=zone),
    "days": lambda days, today, zone: (days[0] - today).days,
    "tomorrow": lambda days, today, zone: today + timedelta(days=1) in days,
}
FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")   # finer ones (HOURLY, ...) make no sense for bins
STEP_DAYS = {"DAILY": 1, "WEEKLY": 7}
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
HORIZON = timedelta(days=731)   # recurrences are expanded this far ahead of today
DAY_BUDGET = 250_000            # candidate days one parse may examine: hostile RRULEs cannot stall us
LINE = re.compile(r'([A-Za-z0-9-]+)((?:;[A-Za-z0-9-]+=(?:"[^"]*"|[^";:,]*)(?:,(?:"[^"]*"|[^";:,]*))*)*):(.*)')
PARAM = re.compile(r';([A-Za-z0-9-]+)=("[^"]*"|[^";:]*)')
STAMP = re.compile(r"(\d{4})(\d\d)(\d\d)(?:T(\d\d)(\d\d)(\d\d)(Z?))?")
BYDAY = re.compile(r"([+-]?\d{1,2})?(MO|TU|WE|TH|FR|SA|SU)")

TypeKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=40)]
Needle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Props = dict[str, list[tuple[dict[str, str], str]]]


class Options(AdapterOptions):
    street_id: int | None = Field(default=None, ge=1)
    district_id: int | None = Field(default=None, ge=1)
    types: dict[TypeKey, Needle] = Field(default_factory=lambda: dict(DEFAULT_TYPES), min_length=1, max_length=30)

    @model_validator(mode="after")
    def _location_and_zone(self) -> Options:
        if self.street_id is None and self.district_id is None:
            raise ValueError("set street_id or district_id (the ids in the soest.abfall-app.net start page)")
        try:  # an unknown zone is a configuration error, not a parse error later
            ZoneInfo(self.timezone)
        except (ValueError, KeyError, OSError):
            raise ValueError(f"unknown timezone {self.timezone!r}") from None
        return self


def request(opts: Options, base_url: str) -> Request:
    where = {"street": str(opts.street_id)} if opts.street_id is not None else {"district": str(opts.district_id)}
    params = {"system": "ical", "period": "2", **where, "categories": "", "view": "month"}
    return Request(url=f"{base_url.rstrip('/')}/download", params=params, accept="text/calendar")


def parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    cal, events = _calendar(body)
    zone = ZoneInfo(opts.timezone)
    today = now.astimezone(zone).date()
    # A RECURRENCE-ID event replaces one occurrence of its master: drop that day from the master.
    moved = {(_value(e, "UID"), _day(e, "RECURRENCE-ID", zone)) for e in events if "RECURRENCE-ID" in e}
    budget = [DAY_BUDGET]  # a countdown shared by all expansions of this parse
    found: dict[str, dict[date, str]] = {key: {} for key in opts.types}
    for event in events:
        summary = _text(_value(event, "SUMMARY") or "")
        keys = [k for k, needle in opts.types.items() if needle.casefold() in summary.casefold()]
        if not keys or (_value(event, "STATUS") or "").strip().upper() == "CANCELLED":
            continue
        for day in _event_days(event, zone, today, budget, moved):
            for key in keys:
                found[key].setdefault(day, summary)
    stamps = [s for props in (cal, *events) if (s := _stamp(props, zone)) is not None]
    observed = min(max(stamps), now) if stamps else now
    readings: list[Reading] = []
    for key in opts.types:
        days = sorted(found[key])
        attrs = {"next_dates": [d.isoformat() for d in days[:3]],
                 "summary": clip(found[key][days[0]]) if days else None}
        readings.extend(Reading(f"{key}_{suffix}", value(days, today, zone) if days else None, observed, None, attrs)
                        for suffix, value in VALUES.items())
    return readings


def _calendar(body: bytes) -> tuple[Props, list[Props]]:
    """The VCALENDAR's own properties and its VEVENTs; nested components (VALARM) are skipped."""
    if body.lstrip()[:1] == b"<":
        raise ParseError("got HTML instead of iCalendar", kind="not_ics")
    # Unfold before decoding: RFC 5545 §3.1 folds at octets, possibly inside a UTF-8 sequence.
    lines = re.sub(rb"\r?\n[ \t]", b"", body).decode("utf-8-sig", errors="replace").splitlines()
    head = next((line for line in lines if line.strip()), "")
    if head.strip().upper() != "BEGIN:VCALENDAR":
        raise ParseError(f"not an iCalendar body: {head[:40]!r}", kind="not_ics")
    cal: Props = {}
    events: list[Props] = []
    stack: list[str] = []
    for line in lines:
        m = LINE.match(line)
        if m is None:
            continue
        name, value = m.group(1).upper(), m.group(3)
        if name in ("BEGIN", "END"):
            kind = value.strip().upper()
            if name == "BEGIN":
                stack.append(kind)
                if stack == ["VCALENDAR", "VEVENT"]:
                    events.append({})
            elif not stack or stack.pop() != kind:
                raise ParseError(f"END:{kind[:20]} does not close the open component", kind="bad_schema")
            if not stack:
                return cal, events
            continue
        target = cal if stack == ["VCALENDAR"] else events[-1] if stack == ["VCALENDAR", "VEVENT"] else None
        if target is not None:
            params = {k.upper(): v.strip('"') for k, v in PARAM.findall(m.group(2))}
            target.setdefault(name, []).append((params, value))
    raise ParseError("the calendar is truncated (no END:VCALENDAR)", kind="bad_schema")


def _value(props: Props, name: str) -> str | None:
    return props[name][0][1] if name in props else None


def _text(value: str) -> str:
    """Undo RFC 5545 §3.3.11 TEXT escapes."""
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value).strip()


def _moment(value: str, tzid: str | None, zone: ZoneInfo) -> date | datetime | None:
    """A DATE, or a DATE-TIME in UTC (Z), its TZID or floating (the configured zone); None if malformed."""
    m = STAMP.fullmatch(value.strip())
    if m is None:
        return None
    y, mo, d, hh, mi, ss, utc = m.groups()
    try:
        if hh is None:
            return date(int(y), int(mo), int(d))
        tz = UTC if utc else _zone(tzid, zone)
        return datetime(int(y), int(mo), int(d), int(hh), int(mi), min(int(ss), 59), tzinfo=tz)
    except ValueError:
        return None


def _zone(tzid: str | None, zone: ZoneInfo) -> ZoneInfo:
    # TZIDs are usually IANA names; anything else (Outlook names, custom VTIMEZONEs) means local time here.
    try:
        return ZoneInfo(tzid) if tzid else zone
    except (ValueError, KeyError, OSError):
        return zone


def _local(moment: date | datetime | None, zone: ZoneInfo) -> date | None:
    try:
        return moment.astimezone(zone).date() if isinstance(moment, datetime) else moment
    except (OverflowError, ValueError):
        return None


def _days(props: Props, name: str, zone: ZoneInfo) -> Iterator[date]:
    """Every local date in every (comma-separated) value of a date property such as EXDATE."""
    for params, value in props.get(name, []):
        for item in value.split(","):
            if (day := _local(_moment(item, params.get("TZID"), zone), zone)) is not None:
                yield day


def _day(props: Props, name: str, zone: ZoneInfo) -> date | None:
    return next(_days(props, name, zone), None)


def _stamp(props: Props, zone: ZoneInfo) -> datetime | None:
    moment = _moment(_value(props, "DTSTAMP") or "", None, zone)
    if moment is None or isinstance(moment, datetime):
        return moment
    return datetime.combine(moment, time(), tzinfo=zone)


def _event_days(event: Props, zone: ZoneInfo, today: date, budget: list[int],
                moved: set[tuple[str | None, date | None]]) -> list[date]:
    """The event's occurrence dates from today on: DTSTART, RRULE and RDATE minus EXDATE and moved ones."""
    start = _day(event, "DTSTART", zone)
    if start is None:
        return []
    days = {start, *_days(event, "RDATE", zone)}
    if "RECURRENCE-ID" in event:  # an override is the one occurrence it describes
        return sorted(d for d in days if d >= today)
    rrule = _value(event, "RRULE")
    rule = _rule(rrule, start, zone) if rrule else None
    if rule is not None:
        with contextlib.suppress(OverflowError, ValueError):  # a period past year 9999: keep what we have
            days.update(_expand(start, rule, today, today + HORIZON, budget))
    uid = _value(event, "UID")
    gone = {*_days(event, "EXDATE", zone), *(day for u, day in moved if u == uid and uid is not None)}
    return sorted(d for d in days - gone if d >= today)


@dataclass(frozen=True)
class _Rule:
    freq: str
    interval: int
    count: int | None
    until: date | None
    bymonth: frozenset[int]
    bymonthday: frozenset[int]
    byday: tuple[tuple[int | None, int], ...]
    wkst: int


def _rule(text: str, start: date, zone: ZoneInfo) -> _Rule | None:
    """An RRULE (RFC 5545 §3.3.10) we can expand by day, or None (then only DTSTART and RDATE count)."""
    parts = {k.strip().upper(): v.strip().upper() for k, _, v in (p.partition("=") for p in text.split(";"))}
    freq = parts.get("FREQ", "")
    if freq not in FREQS or parts.keys() & {"BYSETPOS", "BYYEARDAY", "BYWEEKNO"}:
        return None
    byday = [BYDAY.fullmatch(item) for item in parts.get("BYDAY", "").split(",") if item]
    try:
        interval = int(parts.get("INTERVAL") or 1)
        count = int(parts["COUNT"]) if "COUNT" in parts else None
        bymonth = frozenset(int(x) for x in parts.get("BYMONTH", "").split(",") if x)
        bymonthday = frozenset(int(x) for x in parts.get("BYMONTHDAY", "").split(",") if x)
        days = tuple((int(m.group(1)) if m.group(1) else None, WEEKDAYS.index(m.group(2))) for m in byday if m)
    except ValueError:
        return None
    until = _local(_moment(parts["UNTIL"], None, zone), zone) if "UNTIL" in parts else None
    if (interval < 1 or (count is not None and count < 1) or not bymonth <= set(range(1, 13))
            or not bymonthday <= set(range(-31, 32)) - {0} or len(days) != len(byday)
            or 0 in {n for n, _ in days} or ("UNTIL" in parts and until is None)):
        return None
    # Without BYDAY/BYMONTHDAY a rule repeats DTSTART's weekday, day of month or date.
    if not days and not bymonthday:
        if freq == "WEEKLY":
            days = ((None, start.weekday()),)
        elif freq in ("MONTHLY", "YEARLY"):
            bymonthday = frozenset({start.day})
            if freq == "YEARLY" and not bymonth:
                bymonth = frozenset({start.month})
    wkst = WEEKDAYS.index(parts["WKST"]) if parts.get("WKST") in WEEKDAYS else 0
    return _Rule(freq, interval, count, until, bymonth, bymonthday, days, wkst)


def _expand(start: date, rule: _Rule, lo: date, hi: date, budget: list[int]) -> Iterator[date]:
    """Occurrences after DTSTART up to ``hi``: each period's days filtered by the BY* parts."""
    if rule.freq == "DAILY":
        anchor = start
    elif rule.freq == "WEEKLY":
        anchor = start - timedelta(days=(start.weekday() - rule.wkst) % 7)
    else:
        anchor = start.replace(day=1) if rule.freq == "MONTHLY" else date(start.year, 1, 1)
    end = min(hi, rule.until) if rule.until else hi
    # COUNT counts from DTSTART; without it the periods before today can be skipped.
    k = 0 if rule.count else max(0, _index(anchor, lo, rule.freq) // rule.interval)
    seen = 1
    while (first := _shift(anchor, rule.freq, k * rule.interval)) <= end:
        period = _period(first, rule.freq)
        budget[0] -= len(period)
        if budget[0] < 0:
            raise ParseError("the recurrence rules expand to too many days", kind="bad_schema")
        for day in period:
            if day > end:
                return
            if day > start and _match(day, rule):
                seen += 1
                if rule.count and seen > rule.count:
                    return
                yield day
        k += 1


def _index(anchor: date, day: date, freq: str) -> int:
    """How many periods of ``freq`` lie between ``anchor`` and ``day``."""
    if freq in STEP_DAYS:
        return (day - anchor).days // STEP_DAYS[freq]
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    return months if freq == "MONTHLY" else day.year - anchor.year


def _shift(anchor: date, freq: str, n: int) -> date:
    if freq in STEP_DAYS:
        return anchor + timedelta(days=n * STEP_DAYS[freq])
    if freq == "MONTHLY":
        year, month = divmod(anchor.year * 12 + anchor.month - 1 + n, 12)
        return date(year, month + 1, 1)
    return date(anchor.year + n, 1, 1)


def _period(first: date, freq: str) -> list[date]:
    length = STEP_DAYS.get(freq) or (
        calendar.monthrange(first.year, first.month)[1] if freq == "MONTHLY" else 365 + calendar.isleap(first.year))
    return [first + timedelta(days=i) for i in range(length)]


def _match(day: date, rule: _Rule) -> bool:
    if rule.bymonth and day.month not in rule.bymonth:
        return False
    month_len = calendar.monthrange(day.year, day.month)[1]
    if rule.bymonthday and not rule.bymonthday & {day.day, day.day - month_len - 1}:
        return False
    if not rule.byday:
        return True
    # An ordinal (2MO, -1FR) counts within the month for MONTHLY (or YEARLY with BYMONTH), else the year.
    if rule.freq == "MONTHLY" or rule.bymonth:
        pos, length = day.day, month_len
    else:
        pos, length = day.timetuple().tm_yday, 365 + calendar.isleap(day.year)
    return any(weekday == day.weekday() and (
        n is None or rule.freq in ("DAILY", "WEEKLY") or n == (pos - 1) // 7 + 1 or -n == (length - pos) // 7 + 1)
        for n, weekday in rule.byday)


ADAPTER = Adapter(
    name="waste_calendar",
    title="Waste collection",
    provider="Kreis Soest (Abfall-App, abfall-app.net)",
    dataset="Waste collection calendar (iCalendar export)",
    license="Terms of the Kreis Soest waste app (abfall-app.net); for personal use",
    attribution="Abfallkalender Kreis Soest (abfall-app.net)",
    info_url="https://soest.abfall-app.net",
    fields=frozenset(f"{key}_{suffix}" for key in DEFAULT_TYPES for suffix in VALUES),
    options=Options,
    request=request,
    parse=parse,
    dynamic_fields=lambda opts: frozenset(f"{key}_{suffix}" for key in opts.types for suffix in VALUES),
    reevaluate=True,
)
