"""DWD pollen hazard index (Pollenflug-Gefahrenindex) for today and tomorrow in one region, from s31fg.json."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from gateway import adapter_api as api

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
LEVEL_TEXTS = tuple(label for _, label in LEVELS.values())  # the options of every *_text enum
DAYS = ("today", "tomorrow", "dayafter_to")  # s31fg.json's day keys, from the date of last_update
# Our day -> days after the local date of `now`. DWD issues the file at about 11:00 and its "today"
# is the issue date, so until the next issue (and on days without one) the file is a day or more
# old: our today is then its "tomorrow", our tomorrow its "dayafter_to" (filled on Fridays only),
# and a day the file does not cover is None.
OUR_DAYS: dict[str, int] = {"today": 0, "tomorrow": 1}
FIELDS = frozenset(f"{kind}_{day}{suffix}" for kind in POLLEN for day in OUR_DAYS for suffix in ("", "_text"))


class Options(api.AdapterOptions):
    # Soest lies in the Hellweg lowland: partregion 41 "Rhein.-Westfäl. Tiefland" of region 40
    # NRW [I]; the south of Kreis Soest may belong to 43 "Mittelgebirge NRW". partregion_id -1
    # selects a region without partregions by region_id.
    region_id: int = Field(default=40, ge=1, le=999)
    partregion_id: int = Field(default=41, ge=-1, le=999)


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, "/climate_environment/health/alerts/s31fg.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    content = api.member(data, "content", list, "s31fg.json", errors=())
    issued = api.require(api.local_datetime(data.get("last_update"), opts.zone),
                         f"last_update {api.clip(data.get('last_update'), 40)!r} is not 'YYYY-MM-DD HH:MM Uhr'")
    # An empty `content` is a valid file without forecasts: every value is None.
    entry = api.pick(content, "region_id", lambda c: _matches(c, opts),
                 f"region {opts.region_id}/{opts.partregion_id}") or {}
    pollen = api.as_dict(entry.get("Pollen"))
    texts = _legend(data.get("legend"))
    station = _station(entry)
    readings: list[api.Reading] = []
    for kind, upstream in POLLEN.items():
        days = api.as_dict(pollen.get(upstream))
        for our_day, offset in OUR_DAYS.items():
            day = api.day_key(DAYS, issued.date(), now, opts.zone, offset)
            raw = days.get(day) if day else None
            code = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
            level, label = LEVELS.get(code, (None, None))
            label = texts.get(code, label) if level is not None else None
            attrs = {"upstream_field": upstream, "upstream_day": day, "index": api.clip(raw, 10)}
            readings.append(api.Reading(f"{kind}_{our_day}", level, issued, station, attrs))
            readings.append(api.Reading(f"{kind}_{our_day}_text", label, issued, station, attrs))
    return readings


def _matches(entry: dict[str, Any], opts: Options) -> bool:
    if opts.partregion_id != -1:
        return api.integer(entry.get("partregion_id")) == opts.partregion_id
    part = api.integer(entry.get("partregion_id"))
    return api.integer(entry.get("region_id")) == opts.region_id and part in (-1, None)


def _legend(legend: object) -> dict[str, str]:
    """The file's own level texts ({"id1": "0", "id1_desc": "keine Belastung", ...}).

    Only texts among LEVEL_TEXTS are taken, so a reworded legend cannot produce an enum value
    Home Assistant was not told about; the built-in text stands in for it.
    """
    if not isinstance(legend, dict):
        return {}
    pairs = ((legend.get(key), legend.get(f"{key}_desc")) for key in legend if not str(key).endswith("_desc"))
    return {code: label for code, label in pairs if isinstance(code, str) and label in LEVEL_TEXTS}


def _station(entry: dict[str, Any]) -> api.Station | None:
    part, region = api.integer(entry.get("partregion_id")), api.integer(entry.get("region_id"))
    name = entry.get("partregion_name") if part not in (-1, None) else entry.get("region_name")
    ident = part if part not in (-1, None) else region
    if ident is None:
        return None
    return api.Station(name=api.text(name, 80) or f"region {ident}", id=str(ident))


ADAPTER = api.Adapter(
    name="dwd_pollen", title="Pollen", provider="Deutscher Wetterdienst",
    dataset="Pollen hazard index (Pollenflug-Gefahrenindex, s31fg.json)", license="dl-de/by-2-0 (GeoNutzV)",
    attribution="Datenbasis: Deutscher Wetterdienst", info_url="https://opendata.dwd.de/climate_environment/health/alerts/",
    fields=FIELDS, options=Options, request=request, parse=parse,
    reevaluate=True,  # at midnight "today" moves to the file's "tomorrow" without a new fetch
)
