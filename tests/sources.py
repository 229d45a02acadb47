"""Every configured network source with its fixtures, for end-to-end and fault tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
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

CONTENT_TYPES = {".json": "application/json", ".ics": "text/calendar; charset=utf-8"}
# Fixtures are dated; the gateway checks freshness against the real clock. Daily products name
# "today" by date: those dates move to the real today (local). Observation timestamps become "now".
FRESHEN = {
    "open_meteo": ("2026-06-21", "2026-06-22"),
    "dwd_uv": ("2026-06-21", "2026-06-22"),
    "dwd_pollen": ("2026-04-10", "2026-04-11"),
    "uba_air": ("2025-06-21",),
}
STAMPED = {"brightsky", "sensor_community", "pegelonline"}


def freshened(adapter: str, body: bytes) -> bytes:
    if adapter in STAMPED:
        stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
        body = re.sub(rb'"(timestamp|last_record)":"[^"]+"', lambda m: b'"%s":"%s"' % (m.group(1), stamp.encode()),
                      body)
    if adapter == "open_meteo":
        body = _current_now(body)
    dates = FRESHEN.get(adapter)
    if dates is None:
        return body
    today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    for offset, old in enumerate(dates):
        body = body.replace(old.encode(), (today + timedelta(days=offset)).isoformat().encode())
    return body


def _current_now(body: bytes) -> bytes:
    """Open-Meteo's ``current.time`` (local at the body's own offset) moved to the last quarter hour.

    Its date alone moving to today is not enough: at 14:30 local it is stale (max_age 1 h) for
    most of the day.
    """
    offset = re.search(rb'"utc_offset_seconds":\s*(-?\d+)', body)
    zone = timezone(timedelta(seconds=int(offset.group(1)) if offset else 0))
    now = datetime.now(zone)
    stamp = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")
    return re.sub(rb'("current":\s*\{"time":\s*")[^"]+"', lambda m: m.group(1) + stamp.encode() + b'"', body)


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
            server.serve(urlsplit(request.url).path, self.lookup.read_bytes(),
                         headers={"Content-Type": CONTENT_TYPES[self.lookup.suffix]})
            opts = opts.model_copy(update=adapter.lookup.parse(self.lookup.read_bytes(), opts))
        request = adapter.request(opts, base_url)
        assert request is not None
        path = urlsplit(request.url).path
        assert path.startswith(prefix)
        server.serve(path, self.body(), headers={"Content-Type": CONTENT_TYPES[self.normal.suffix]})

    def body(self) -> bytes:
        return freshened(self.adapter, self.normal.read_bytes())

    def break_with(self, server: FixtureServer, base_url: str, **reply: Any) -> None:
        """Replace the main response (not the lookup) with a fault."""
        spec = source_spec(self.key)
        opts = spec.options
        if self.lookup is not None and spec.adapter.lookup is not None:
            opts = opts.model_copy(update=spec.adapter.lookup.parse(self.lookup.read_bytes(), opts))
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
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    data["sources"][key]["enabled"] = True
    return catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml")).sources[key]


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
