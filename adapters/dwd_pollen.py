"""DWD pollen hazard index (Pollenflug-Gefahrenindex) for today and tomorrow in one region, from s31fg.json."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field

from gateway import adapter_api as api

# Our field prefix -> key in an entry's `Pollen` object (DWD's exact spelling, ours in lower case).
POLLEN = {k.lower(): k for k in ("Hasel", "Erle", "Esche", "Birke", "Graeser", "Roggen", "Beifuss", "Ambrosia")}
# DWD's scale in half steps, lowest first, with its legend texts: "0" is 0, "0-1" 0.5, ... "3" is 3.
# "-1" (no forecast) is not on it and becomes None.
SCALE = ("0", "0-1", "1", "1-2", "2", "2-3", "3")
LEVEL_TEXTS = ("keine Belastung", "keine bis geringe Belastung", "geringe Belastung", "geringe bis mittlere Belastung",
               "mittlere Belastung", "mittlere bis hohe Belastung", "hohe Belastung")  # every *_text enum's options
LEVELS = {code: (step / 2, text) for step, (code, text) in enumerate(zip(SCALE, LEVEL_TEXTS, strict=True))}
DAYS = ("today", "tomorrow", "dayafter_to")  # s31fg.json's day keys, from the date of last_update
# Our day -> days after the local date of `now`. DWD issues the file at about 11:00 and its "today"
# is the issue date, so until the next issue (and on days without one) the file is a day or more
# old: our today is then its "tomorrow", our tomorrow its "dayafter_to" (filled on Fridays only),
# and a day the file does not cover is None.
OUR_DAYS: dict[str, int] = {"today": 0, "tomorrow": 1}
# Times: last_update "YYYY-MM-DD HH:MM Uhr" has no offset and is German time (Europe/Berlin), whatever the
# configured zone; the day keys count from its date.
FIELDS = frozenset(f"{kind}_{day}{suffix}" for kind in POLLEN for day in OUR_DAYS for suffix in ("", "_text"))


class Options(api.AdapterOptions):
    # Soest lies in the Hellweg lowland: partregion 41 "Rhein.-Westfäl. Tiefland" of region 40
    # NRW [I]; the south of Kreis Soest may belong to 43 "Mittelgebirge NRW". partregion_id -1
    # selects a region without partregions by region_id.
    region_id: int = Field(default=40, ge=1, le=999)
    partregion_id: int = Field(default=41, ge=-1, le=999)

    def covers(self, entry: dict[str, Any]) -> bool:
        """Whether a `content` entry is the configured (part)region."""
        part = api.integer(entry.get("partregion_id"))
        if self.partregion_id != -1:
            return part == self.partregion_id
        return api.integer(entry.get("region_id")) == self.region_id and part in (-1, None)


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, "/climate_environment/health/alerts/s31fg.json")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json_object(body)
    content = api.member(data, "content", list, "s31fg.json", errors=())
    # "2026-04-11 11:00 Uhr" is German time whatever zone the city is configured in.
    issued = api.require(api.local_datetime(data.get("last_update"), ZoneInfo("Europe/Berlin")),
                         f"last_update {api.clip(data.get('last_update'), 40)!r} is not 'YYYY-MM-DD HH:MM Uhr'")
    # An empty `content` is a valid file without forecasts: every value is None.
    entry = api.pick(content, "region_id", opts.covers, f"region {opts.region_id}/{opts.partregion_id}") or {}
    levels = _levels(data.get("legend"))
    station = _station(entry)
    readings: list[api.Reading] = []
    for kind, upstream in POLLEN.items():
        for our_day, offset in OUR_DAYS.items():
            day = api.day_key(DAYS, issued.date(), now, opts.zone, offset)
            raw = api.dig(entry, "Pollen", upstream, day) if day else None
            level, label = levels.get(api.identifier(raw), (None, None))
            attrs = {"upstream_field": upstream, "upstream_day": day, "index": api.clip(raw, 10)}
            readings.append(api.Reading(f"{kind}_{our_day}", level, issued, station, attrs))
            readings.append(api.Reading(f"{kind}_{our_day}_text", label, issued, station, attrs))
    return readings


def _levels(legend: object) -> dict[str, tuple[float, str]]:
    """LEVELS with the file's own level texts ({"id1": "0", "id1_desc": "keine Belastung", ...}).

    Only texts among LEVEL_TEXTS are taken, so a reworded legend cannot produce an enum value
    Home Assistant was not told about; the built-in text stands in for it.
    """
    legend = api.as_dict(legend)
    pairs = ((legend.get(key), legend.get(f"{key}_desc")) for key in legend if not str(key).endswith("_desc"))
    texts = {code: label for code, label in pairs if isinstance(code, str) and label in LEVEL_TEXTS}
    return {code: (level, texts.get(code, label)) for code, (level, label) in LEVELS.items()}


def _station(entry: dict[str, Any]) -> api.Station | None:
    part, region = api.integer(entry.get("partregion_id")), api.integer(entry.get("region_id"))
    name = entry.get("partregion_name") if part not in (-1, None) else entry.get("region_name")
    ident = part if part not in (-1, None) else region
    if ident is None:
        return None
    return api.Station(name=api.text(name, 80) or f"region {ident}", id=str(ident))


# reevaluate: at midnight "today" moves to the file's "tomorrow" without a new fetch.
ADAPTER = api.Adapter(
    name="dwd_pollen", title="Pollen", fields=FIELDS, options=Options, request=request, parse=parse, reevaluate=True,
    provider="Deutscher Wetterdienst", dataset="Pollen hazard index (Pollenflug-Gefahrenindex, s31fg.json)",
    license="dl-de/by-2-0 (GeoNutzV)", attribution="Datenbasis: Deutscher Wetterdienst",
    info_url="https://opendata.dwd.de/climate_environment/health/alerts/")
