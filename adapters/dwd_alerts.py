"""DWD weather warnings for the configured place through Bright Sky's ``/alerts``."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from gateway import adapter_api as api

SEVERITIES = ("none", "minor", "moderate", "severe", "extreme")
# Hazard binary -> DWD event codes ("II" in CAP). Codes and their names were checked against a
# transcription of the CAP DWD Profil v2.1.13 §3.1 (22 FROST ... 248 EXTREME HITZE); the hazards of
# the combined thunderstorm codes 40-49/95/96 follow their names ("... mit ORKANBÖEN, HEFTIGEM
# STARKREGEN und HAGEL"). Inferred [I]: 33/34/36/38 are all named just "STARKES GEWITTER", so they
# only count as thunderstorm; 11-16 and 57/58 (coast, high seas, lakes) count as wind.
HAZARDS: dict[str, frozenset[int]] = {
    "wind": frozenset({11, 12, 13, 14, 15, 16, 40, 41, 44, 45, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58, 96}),
    "thunderstorm": frozenset({31, 33, 34, 36, 38, 40, 41, 42, 44, 45, 46, 48, 49, 90, 91, 92, 93, 95, 96}),
    "hail": frozenset({46, 48, 49, 95, 96}),
    "heavy_rain": frozenset({42, 44, 45, 46, 48, 49, 61, 62, 63, 64, 65, 66, 95, 96}),
    "frost": frozenset({22, 82, 84, 85, 86, 87}),
    "heat": frozenset({247, 248}),
}
# Every other code of the profile (fog, snow, power-line galloping, thaw, tests, UV): a code outside
# all of these comes from a newer profile, so its English event name decides instead.
OTHER_CODES = frozenset({59, 70, 71, 72, 73, 74, 75, 76, 79, 88, 89, 98, 99, 246})
KNOWN_CODES = frozenset().union(*HAZARDS.values(), OTHER_CODES)
# Whole words, so "thunderstorm" does not count as "storm".
KEYWORDS: dict[str, re.Pattern[str]] = {
    "wind": re.compile(r"\b(gusts?|wind|storm|gale|hurricane)\b"),
    "thunderstorm": re.compile(r"\bthunderstorms?\b"),
    "hail": re.compile(r"\bhail\b"),
    "heavy_rain": re.compile(r"\b(heavy|persistent) rain\b"),
    "frost": re.compile(r"\b(frost|ice|icy|icing|glaze|slippery)\b"),
    "heat": re.compile(r"\bheat\b"),
}
# Times: onset/effective/expires are ISO 8601 with an offset (Bright Sky writes +00:00); one without is UTC.
FIELDS = frozenset({"count", "highest_severity", "headline", *HAZARDS})
MAX_LISTED = 8  # warnings listed in attributes; keeps them under HA's 16 KB recorder limit
PUBLIC = ("event", "event_code", "severity", "onset", "expires", "headline", "description", "instruction")
SHORT = ("event", "severity", "onset", "expires")
EXPECTED = frozenset({"onset", "event_code", "severity", "headline_de"})  # required in Bright Sky's model


class Options(api.AdapterOptions):
    warn_cell_id: int | None = Field(default=None, ge=1, le=999_999_999)  # a Gemeinde cell, e.g. 805974040


def request(opts: Options, base_url: str) -> api.Request:
    params = {"lat": f"{opts.latitude:.4f}", "lon": f"{opts.longitude:.4f}"}
    if opts.warn_cell_id is not None:
        params = {"warn_cell_id": str(opts.warn_cell_id)}
    return api.get(base_url, "/alerts", params)


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    alerts = api.member(data, "alerts", list, f"the response: {api.clip(data.get('detail'), 120)}", ("detail",))
    groups: dict[str, list[dict[str, Any]]] = {"active": [], "upcoming": [], "pre_alerts": [], "expired": []}
    for item in alerts:
        # Test messages are not warnings; a missing status counts, as missing a warning is worse.
        if not isinstance(item, dict) or item.get("status") == "test":
            continue
        api.expect_any(item, EXPECTED, "an alert has none of the expected fields")
        warning = _warning(item)
        phase = api.phase(warning["onset"], warning["expires"], now)
        # A "Vorabinformation" (urgency future) reuses codes such as 40 for another meaning.
        groups["pre_alerts" if phase != "expired" and item.get("urgency") == "future" else phase].append(warning)
    active = groups["active"]
    active.sort(key=lambda w: (-SEVERITIES.index(w["severity"] or "none"), w["onset"] or now))
    known = [w["severity"] for w in active if w["severity"]]
    highest = "none" if not active else max(known, key=SEVERITIES.index, default=None)
    values: dict[str, tuple[api.Value, dict[str, Any]]] = {
        "count": (len(active), {"upcoming": api.listed(groups["upcoming"], SHORT, MAX_LISTED),
                                "pre_alerts": api.listed(groups["pre_alerts"], SHORT, MAX_LISTED)}),
        "highest_severity": (highest, {}),
        "headline": (active[0]["headline"] if active else None, {"warnings": api.listed(active, PUBLIC, MAX_LISTED)}),
    }
    for hazard in HAZARDS:
        events = [w["event"] for w in active if hazard in w["hazards"]]
        values[hazard] = (bool(events), {"events": events[:MAX_LISTED]})
    return api.readings(values, now, _station(data.get("location")))


def _warning(item: dict[str, Any]) -> dict[str, Any]:
    """One alert reduced to what we publish."""
    code = api.integer(item.get("event_code"))
    event_en = item.get("event_en") if isinstance(item.get("event_en"), str) else ""
    if code in KNOWN_CODES:
        hazards = {h for h, codes in HAZARDS.items() if code in codes}
    else:
        hazards = {h for h, pattern in KEYWORDS.items() if pattern.search(event_en.lower())}
    severity = item.get("severity")
    return {
        "event": api.text(item.get("event_de"), 80) or api.text(event_en, 80),
        "event_code": code,
        "severity": severity if severity in SEVERITIES[1:] else None,
        "onset": api.local_datetime(item.get("onset"), UTC) or api.local_datetime(item.get("effective"), UTC),
        "expires": api.local_datetime(item.get("expires"), UTC),
        "headline": api.text(item.get("headline_de"), 255) or api.text(item.get("headline_en"), 255),
        "description": api.text(item.get("description_de"), api.MAX_TEXT),
        "instruction": api.text(item.get("instruction_de"), api.MAX_TEXT),
        "hazards": hazards,
    }


def _station(location: object) -> api.Station | None:
    if not isinstance(location, dict) or not isinstance(location.get("name"), str):
        return None
    cell = location.get("warn_cell_id")
    return api.Station(name=str(api.clip(location["name"], 80)), id=str(cell)[:20] if cell is not None else None)


ADAPTER = api.Adapter(
    name="dwd_alerts", title="Weather warnings", provider="Deutscher Wetterdienst (via Bright Sky)",
    dataset="Official weather warnings for municipalities (CAP, COMMUNEUNION)",
    license="CC BY 4.0 (DWD terms of use); Bright Sky is free to use",
    attribution="Quelle: Deutscher Wetterdienst, via Bright Sky (brightsky.dev)",
    info_url="https://brightsky.dev/docs/#/operations/getAlerts", fields=FIELDS, options=Options, request=request,
    parse=parse,
    reevaluate=True,  # a warning stops counting at its `expires` without a new fetch
)
