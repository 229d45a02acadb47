"""DWD pollen hazard index (Pollenflug-Gefahrenindex) for today and tomorrow in one region, from s31fg.json."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field

from adapters.base import Adapter, AdapterOptions, clip, load_json_object, local_datetime
from gateway.errors import ParseError
from gateway.records import Reading, Request, Station

# Our field prefix -> key in an entry's `Pollen` object (DWD's exact spelling).
POLLEN: dict[str, str] = {
    "hasel": "Hasel", "erle": "Erle", "esche": "Esche", "birke": "Birke",
    "graeser": "Graeser", "roggen": "Roggen", "beifuss": "Beifuss", "ambrosia": "Ambrosia",
}
# Upstream level -> (number, DWD's legend text). "-1" (no forecast) is not here and becomes None.
LEVELS: dict[str, tuple[float, str]] = {
    "0": (0.0, "keine Belastung"),
    "0-1": (0.5, "keine bis geringe Belastung"),
    "1": (1.0, "geringe Belastung"),
    "1-2": (1.5, "geringe bis mittlere Belastung"),
    "2": (2.0, "mittlere Belastung"),
    "2-3": (2.5, "mittlere bis hohe Belastung"),
    "3": (3.0, "hohe Belastung"),
}
LEVEL_TEXTS = tuple(text for _, text in LEVELS.values())  # the options of every *_text enum
DAYS = ("today", "tomorrow", "dayafter_to")  # s31fg.json's day keys, from the date of last_update
# Our day -> days after the local date of `now`. DWD issues the file at about 11:00 and its "today"
# is the issue date, so until the next issue (and on days without one) the file is a day or more
# old: our today is then its "tomorrow", our tomorrow its "dayafter_to" (filled on Fridays only),
# and a day the file does not cover is None.
OUR_DAYS: dict[str, int] = {"today": 0, "tomorrow": 1}
FIELDS = frozenset(f"{kind}_{day}{suffix}" for kind in POLLEN for day in OUR_DAYS for suffix in ("", "_text"))


class Options(AdapterOptions):
    # Soest lies in the Hellweg lowland: partregion 41 "Rhein.-Westfäl. Tiefland" of region 40
    # NRW [I]; the south of Kreis Soest may belong to 43 "Mittelgebirge NRW". partregion_id -1
    # selects a region without partregions by region_id.
    region_id: int = Field(default=40, ge=1, le=999)
    partregion_id: int = Field(default=41, ge=-1, le=999)


def request(opts: Options, base_url: str) -> Request:
    return Request(url=f"{base_url.rstrip('/')}/climate_environment/health/alerts/s31fg.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    data = load_json_object(body)
    content = data.get("content")
    if not isinstance(content, list):
        raise ParseError("no 'content' list in s31fg.json", kind="bad_schema")
    zone = ZoneInfo(opts.timezone)
    issued = local_datetime(data.get("last_update"), zone)
    if issued is None:
        raise ParseError(f"last_update {clip(data.get('last_update'), 40)!r} is not 'YYYY-MM-DD HH:MM Uhr'",
                         kind="bad_schema")
    regions = [c for c in content if isinstance(c, dict) and "region_id" in c]
    if content and not regions:
        raise ParseError("no entry in s31fg.json has a 'region_id'", kind="bad_schema")
    entry = next((c for c in regions if _matches(c, opts)), None)
    if entry is None and regions:
        raise ParseError(f"region {opts.region_id}/{opts.partregion_id} is not in s31fg.json", kind="not_found")
    # An empty `content` is a valid file without forecasts: every value is None.
    entry = entry or {}
    pollen = entry.get("Pollen")
    pollen = pollen if isinstance(pollen, dict) else {}
    texts = _legend(data.get("legend"))
    shift = (now.astimezone(zone).date() - issued.date()).days
    station = _station(entry)
    readings: list[Reading] = []
    for kind, upstream in POLLEN.items():
        days = pollen.get(upstream)
        days = days if isinstance(days, dict) else {}
        for our_day, offset in OUR_DAYS.items():
            index = shift + offset
            day = DAYS[index] if 0 <= index < len(DAYS) else None
            raw = days.get(day) if day else None
            code = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
            number, text = LEVELS.get(code, (None, None))
            if number is not None:
                text = texts.get(code, text)
            attrs = {"upstream_field": upstream, "upstream_day": day, "index": clip(raw, 10)}
            readings.append(Reading(f"{kind}_{our_day}", number, issued, station, attrs))
            readings.append(Reading(f"{kind}_{our_day}_text", text, issued, station, attrs))
    return readings


def _matches(entry: dict[str, Any], opts: Options) -> bool:
    if opts.partregion_id != -1:
        return _int(entry.get("partregion_id")) == opts.partregion_id
    return _int(entry.get("region_id")) == opts.region_id and _int(entry.get("partregion_id")) in (-1, None)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _legend(legend: object) -> dict[str, str]:
    """The file's own level texts ({"id1": "0", "id1_desc": "keine Belastung", ...}).

    Only texts among LEVEL_TEXTS are taken, so a reworded legend cannot produce an enum value
    Home Assistant was not told about; the built-in text stands in for it.
    """
    if not isinstance(legend, dict):
        return {}
    pairs = ((legend.get(key), legend.get(f"{key}_desc")) for key in legend if not str(key).endswith("_desc"))
    return {code: text for code, text in pairs if isinstance(code, str) and text in LEVEL_TEXTS}




def _station(entry: dict[str, Any]) -> Station | None:
    part, region = _int(entry.get("partregion_id")), _int(entry.get("region_id"))
    name = entry.get("partregion_name") if part not in (-1, None) else entry.get("region_name")
    ident = part if part not in (-1, None) else region
    if ident is None:
        return None
    return Station(name=(clip(name, 80) if isinstance(name, str) else None) or f"region {ident}", id=str(ident))


ADAPTER = Adapter(
    name="dwd_pollen",
    title="Pollen",
    provider="Deutscher Wetterdienst",
    dataset="Pollen hazard index (Pollenflug-Gefahrenindex, s31fg.json)",
    license="dl-de/by-2-0 (GeoNutzV)",
    attribution="Datenbasis: Deutscher Wetterdienst",
    info_url="https://opendata.dwd.de/climate_environment/health/alerts/",
    fields=FIELDS,
    options=Options,
    request=request,
    parse=parse,
    reevaluate=True,  # at midnight "today" moves to the file's "tomorrow" without a new fetch
)
