"""Every configured network source with its fixtures, for end-to-end and fault tests."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml

from adapters import ADAPTERS
from gateway import catalog
from gateway.checks import check
from gateway.config import loads
from gateway.payloads import encode_value
from tests.helpers import FIXTURES, ROOT, FixtureServer

CONTENT_TYPES = {".json": "application/json", ".ics": "text/calendar; charset=utf-8", ".csv": "text/csv"}
ZONE = ZoneInfo("Europe/Berlin")
# Fixtures are dated; the gateway judges them by the real clock. Each body is moved to the real
# clock at the moment it is fetched (serve() hands the server a callable), so the gateway always
# sees the moment the fixture describes, and a reader derives every value by hand from the file
# (the tables in tests/integration/test_sources.py).
#
# Daily products name "today" by date: those dates move to the real today (local).
FRESHEN = {
    "dwd_uv": ("2026-06-21", "2026-06-22"),
    "dwd_pollen": ("2026-04-10", "2026-04-11"),
}
# Their issue time (pollen 11:00, UV 07:45 local) lies ahead of the clock earlier in the day, and a
# file from the future is rightly refused: issued at today's local midnight it describes the same day.
ISSUED = re.compile(rb'("last_update": "\d{4}-\d\d-\d\d[T ])\d\d:\d\d')
# UBA's hourly means are local "YYYY-MM-DD HH:MM:SS"; the newest (13:00-14:00) is half an hour old
# at this moment, so every time in the file moves by (now local - this moment), to the hour.
UBA_MOMENT = datetime(2025, 6, 21, 14, 30)
UBA_TIMES = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# Observation timestamps become "now".
STAMPED = {"brightsky", "sensor_community", "pegelonline"}
# Values that depend on the time of day (warnings that start and expire, a 3-hour look-ahead):
# every time in the file moves by (now - the fixture's own moment), to the minute.
ISO_AWARE = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
LOCAL_MINUTES = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d(?![:\d])")  # Open-Meteo's local "2026-06-21T14:30"
SHIFTED: dict[str, tuple[datetime, re.Pattern[bytes]]] = {
    # 14:41 UTC, as in the adapters' unit tests: a severe thunderstorm (14:00-16:00), wind gusts
    # (13:00-19:00) and heat (no end) are in effect; heavy rain (from 18:00) is still to come.
    "dwd_alerts": (datetime(2026, 6, 21, 14, 41, tzinfo=UTC), ISO_AWARE),
    # 16:41 local: the DWD thunderstorm message (16:00-18:00 local) is in effect.
    "nina": (datetime(2026, 6, 21, 14, 41, tzinfo=UTC), ISO_AWARE),
    # current.time is 14:30 local at utc_offset_seconds 7200, i.e. 12:30 UTC.
    "open_meteo": (datetime(2026, 6, 21, 12, 30, tzinfo=UTC), LOCAL_MINUTES),
    # The weather station's observations at 07:00 UTC become "now".
    "ngsi_ld": (datetime(2026, 11, 30, 7, 0, tzinfo=UTC), ISO_AWARE),
}
# The waste calendar counts days from today: its dates move by (today - this Monday), the day
# before an organic-waste pickup. The file has no RRULE (only its VTIMEZONE has, and that is left
# alone), so dates leaving their weekday change nothing; and it never runs out of pickups.
WASTE_TODAY = date(2026, 12, 7)
ICS_DATES = re.compile(rb"^((?:DTSTART|DTEND);VALUE=DATE:|DTSTAMP:)(\d{8})", re.M)


def freshened(adapter: str, body: bytes) -> bytes:
    now = datetime.now(UTC)
    if adapter in STAMPED:
        stamp = now.replace(microsecond=0).isoformat()
        body = re.sub(rb'"(timestamp|last_record)":"[^"]+"', lambda m: b'"%s":"%s"' % (m.group(1), stamp.encode()),
                      body)
    if adapter in SHIFTED:
        moment, pattern = SHIFTED[adapter]
        delta = timedelta(minutes=round((now - moment).total_seconds() / 60))
        return pattern.sub(lambda m: _shifted(m.group(), delta), body)
    if adapter == "uba_air":
        local = now.astimezone(ZONE).replace(tzinfo=None)
        delta = timedelta(hours=round((local - UBA_MOMENT).total_seconds() / 3600))
        return UBA_TIMES.sub(lambda m: (datetime.strptime(m.group().decode(), "%Y-%m-%d %H:%M:%S") + delta)
                             .strftime("%Y-%m-%d %H:%M:%S").encode(), body)
    if adapter == "waste_calendar":
        days = timedelta(days=(now.astimezone(ZONE).date() - WASTE_TODAY).days)
        return ICS_DATES.sub(lambda m: m.group(1) + (datetime.strptime(m.group(2).decode(), "%Y%m%d") + days)
                             .strftime("%Y%m%d").encode(), body)
    today = now.astimezone(ZONE).date()
    for offset, old in enumerate(FRESHEN.get(adapter, ())):
        body = body.replace(old.encode(), (today + timedelta(days=offset)).isoformat().encode())
    return ISSUED.sub(rb"\g<1>00:00", body) if adapter in FRESHEN else body


def _shifted(stamp: bytes, delta: timedelta) -> bytes:
    """One timestamp moved by ``delta``, written as it was (offset, "Z", or local minutes)."""
    text = stamp.decode()
    moved = datetime.fromisoformat(text.replace("Z", "+00:00")) + delta
    if moved.tzinfo is None:
        return moved.strftime("%Y-%m-%dT%H:%M").encode()
    out = moved.isoformat()
    return (out.removesuffix("+00:00") + "Z" if text.endswith("Z") else out).encode()


@dataclass(frozen=True)
class SourceFixture:
    """One source of the default topics.yaml and the fixture files that stand in for its API."""

    key: str
    adapter: str
    normal: Path
    lookup: Path | None

    def serve(self, server: FixtureServer, base_url: str) -> None:
        spec = source_spec(self.key)
        prefix = urlsplit(base_url).path.rstrip("/")
        opts = spec.options
        adapter = spec.adapter
        if self.lookup is not None and adapter.lookup is not None:
            request = adapter.lookup.request(opts, base_url)
            looked_up = self.looked_up(base_url)
            server.serve(urlsplit(request.url).path, looked_up,
                         headers={"Content-Type": CONTENT_TYPES[self.lookup.suffix]})
            opts = opts.model_copy(update=adapter.lookup.parse(looked_up, opts))
        request = adapter.request(opts, base_url)
        assert request is not None
        path = urlsplit(request.url).path
        assert path.startswith(prefix)
        server.serve(path, self.body, headers={"Content-Type": CONTENT_TYPES[self.normal.suffix]})

    def looked_up(self, base_url: str) -> bytes:
        """The lookup fixture, with the URLs it hands on (a CKAN resource's download) on the fixture server too."""
        assert self.lookup is not None
        original = source_spec(self.key).config.base_url.rstrip("/").encode()
        return self.lookup.read_bytes().replace(original, base_url.rstrip("/").encode())

    def body(self) -> bytes:
        """The normal fixture as it reads now (moved to the real clock)."""
        return freshened(self.adapter, self.normal.read_bytes())

    def break_with(self, server: FixtureServer, base_url: str, **reply: Any) -> None:
        """Replace the main response (not the lookup) with a fault."""
        spec = source_spec(self.key)
        opts = spec.options
        if self.lookup is not None and spec.adapter.lookup is not None:
            opts = opts.model_copy(update=spec.adapter.lookup.parse(self.looked_up(base_url), opts))
        request = spec.adapter.request(opts, base_url)
        assert request is not None
        server.serve(urlsplit(request.url).path, **reply)

    def expected_states(self, now: datetime | None = None) -> dict[str, str]:
        """What a subscriber should see for each entity after one fetch of ``normal``."""
        spec = source_spec(self.key)
        opts = spec.options
        if self.lookup is not None and spec.adapter.lookup is not None:
            opts = opts.model_copy(update=spec.adapter.lookup.parse(self.lookup.read_bytes(), opts))
        readings = spec.adapter.parse(self.body(), opts, now or datetime.now(UTC))
        out: dict[str, str] = {}
        for reading in readings:
            for entity in spec.by_field.get(reading.field, ()):
                text = encode_value(reading.value)
                if text is not None and check(reading.value, entity.measurement) is None:
                    out[entity.state_topic] = text
        return out


def source_spec(key: str) -> catalog.SourceSpec:
    """A source of the default topics.yaml, resolved as if it were enabled."""
    return _every_source()[key]


@functools.cache  # parsing topics.yaml takes a third of a second; every served source asks thrice
def _every_source() -> dict[str, catalog.SourceSpec]:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    for source in data["sources"].values():
        source["enabled"] = True
    return catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml"), ADAPTERS).sources


def network_sources() -> list[SourceFixture]:
    """Every source in topics.yaml (enabled or not) whose adapter talks to an API."""
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    out = []
    for key, source in data["sources"].items():
        adapter = ADAPTERS[source["adapter"]]
        if adapter.name == "sun":
            continue
        folder = FIXTURES / adapter.name
        normal = next(folder.glob("normal.*"), None) or next(folder.glob("normal.json"))
        lookup = next(folder.glob("lookup.*"), None)
        out.append(SourceFixture(key, adapter.name, normal, lookup))
    return out


def serve_default_sources(server: FixtureServer, base_url: str) -> dict[str, str]:
    """Serve every enabled source of the default config; returns the states a subscriber should see."""
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    expected: dict[str, str] = {}
    for source in network_sources():
        if data["sources"][source.key].get("enabled", True):
            source.serve(server, base_url)
            expected.update(source.expected_states())
    return expected


def only(key: str, data: dict[str, Any], base_url: str) -> None:
    """Edit a topics.yaml dict down to one source, enabled, pointed at ``base_url``, never stale."""
    source = data["sources"][key]
    data["sources"] = {key: {**source, "base_url": base_url, "enabled": True, "max_age": "3650d"}}
