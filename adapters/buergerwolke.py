"""One BürgerWOLKE Soest sensor box (lux, UV, temperature, ...) from the city's Node-RED JSON endpoint."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from gateway import adapter_api as api

Converter = Callable[[float], float] | None


# Our field -> (upstream key, converter, sane range in the upstream unit, upstream unit). The city
# calls the values raw and unvalidated (temperatures above 45 °C were seen), so values outside the
# range are withheld here with a reason, on top of the core's plausibility table. Units are those
# a third-party UI showed [I]; uv is the senseBox VEML6070's UV-A intensity in µW/cm². Unlike sensor.community
# and SensorThings, the payload names neither a sensor type nor a unit, so nothing can be selected or converted
# by them: the sane ranges are the only guard against a box of another make.
# Times: the payload has none; every reading is dated with the fetch time (and says so in its attributes).
FIELDS: dict[str, tuple[str, Converter, tuple[float, float], str]] = {
    "temperature": ("temperature", None, (-30.0, 45.0), "°C"),
    "humidity": ("humidity", None, (0.0, 100.0), "%"),
    "pressure": ("pressure", None, (870.0, 1090.0), "hPa"),
    "precipitation": ("precipitation", None, (0.0, 200.0), "mm"),
    "illuminance": ("lux", None, (0.0, 150_000.0), "lx"),
    "uv_intensity": ("uv", api.uw_per_cm2_to_w_per_m2, (0.0, 15_000.0), "µW/cm²"),
}
NAME_KEYS = ("name", "boxName", "title", "sensor", "id", "_id", "boxId")  # undocumented: any may exist
MATCH_RADIUS_M = 50.0  # a "lat,lon" box option matches the box within this distance
COORDS = re.compile(r"^\s*(-?\d{1,2}(?:\.\d+)?)\s*,\s*(-?\d{1,3}(?:\.\d+)?)\s*$")
NO_TIMESTAMP = "fetch time; upstream has no timestamp"


class Options(api.AdapterOptions):
    path: str = Field(default="/nodered/weather2", pattern=r"^/[A-Za-z0-9_./-]*$")  # [I] undocumented
    box: str = Field(default="nearest", min_length=1, max_length=80)  # "nearest", "lat,lon" or a name/id
    max_distance_m: float = Field(default=5000.0, gt=0, le=100_000)  # for box="nearest"

    @field_validator("box")
    @classmethod
    def _box(cls, value: str) -> str:
        value = value.strip()
        found = COORDS.match(value)
        if found and not (abs(float(found[1])) <= 90 and abs(float(found[2])) <= 180):
            raise ValueError(f"box {value!r} is not a valid 'latitude,longitude'")
        return value


def request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, opts.path)


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    items = api.load_json_array(body, "sensor boxes")
    boxes = [b for b in items if isinstance(b, dict)]
    located = [(b, lat, lon) for b in boxes if (lat := _coord(b.get("latitude"), 90)) is not None
               and (lon := _coord(b.get("longitude"), 180)) is not None]
    if items and not located:
        raise api.ParseError("no box has numeric latitude and longitude", kind="bad_schema")
    if located and not any(src in b for b, _, _ in located for src, _, _, _ in FIELDS.values()):
        raise api.ParseError("the boxes have none of the expected measurement fields", kind="bad_schema")
    box, lat, lon, dist = _choose(located, opts)
    name = _name(box)
    station = api.Station(name=name or f"BürgerWOLKE box at {lat:.4f},{lon:.4f}", id=_box_id(box),
                      latitude=lat, longitude=lon, distance_m=dist)
    values: dict[str, float | None] = {}
    suspect: dict[str, str] = {}
    for field, (src, convert, (low, high), unit) in FIELDS.items():
        raw = api.number(box.get(src))  # numbers or numeric text: a Node-RED flow may pass either [I]
        if raw is not None and not low <= raw <= high:
            suspect[field] = f"{raw:g} {unit} is outside the sane range {low:g}..{high:g} {unit}"
            raw = None
        values[field] = convert(raw) if raw is not None and convert is not None else raw
    readings: list[api.Reading] = []
    for field, (src, _, _, unit) in FIELDS.items():
        attributes: dict[str, Any] = {"upstream_field": src, "upstream_unit": unit,
                                      "observed_at_source": NO_TIMESTAMP, "boxes_in_response": len(boxes)}
        if suspect:
            attributes["suspect"] = suspect  # box-wide, so one entity shows whether the box misbehaves
        readings.append(api.Reading(field, values[field], now, station, attributes))
    return readings


def _choose(located: list[tuple[dict[str, Any], float, float]],
            opts: Options) -> tuple[dict[str, Any], float, float, float]:
    """The configured box with its position and its distance from the configured coordinates."""
    if not located:
        raise api.ParseError("the response lists no boxes", kind="not_found")
    dists = [api.distance_m(opts.latitude, opts.longitude, lat, lon) for _, lat, lon in located]
    wanted = COORDS.match(opts.box)
    if opts.box.casefold() == "nearest":
        i = min(range(len(located)), key=dists.__getitem__)
        if dists[i] > opts.max_distance_m:
            raise api.ParseError(f"the nearest box is {dists[i]:.0f} m away (max_distance_m {opts.max_distance_m:g})",
                             kind="not_found")
    elif wanted:
        offsets = [api.distance_m(float(wanted[1]), float(wanted[2]), lat, lon) for _, lat, lon in located]
        i = min(range(len(located)), key=offsets.__getitem__)
        if offsets[i] > MATCH_RADIUS_M:
            raise api.ParseError(f"no box within {MATCH_RADIUS_M:g} m of {opts.box}", kind="not_found")
    else:
        key = opts.box.casefold()
        found = [j for j, (box, _, _) in enumerate(located)
                 if any(_label(box.get(k)) == key for k in NAME_KEYS)]
        if not found:
            raise api.ParseError(f"no box named {opts.box!r}", kind="not_found")
        i = found[0]
    box, lat, lon = located[i]
    return box, lat, lon, dists[i]


def _coord(value: object, limit: float) -> float | None:
    number = api.number(value)
    return number if number is not None and abs(number) <= limit and number != 0 else None


def _label(value: object) -> str | None:
    """A name or id as a comparable string; ints are cut short so str() cannot blow up."""
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18:
        return str(value)
    return None


def _name(box: dict[str, Any]) -> str | None:
    name = next((box[k] for k in ("name", "boxName", "title") if isinstance(box.get(k), str) and box[k].strip()), None)
    return api.clip(name, 80)


def _box_id(box: dict[str, Any]) -> str | None:
    for key in ("id", "_id", "boxId"):
        value = box.get(key)
        if _label(value):
            return api.clip(value, 40)
    return None


ADAPTER = api.Adapter(
    name="buergerwolke", title="BürgerWOLKE", provider="Stadt Soest, Stadtwerke Soest (BürgerWOLKE)",
    dataset="BürgerWOLKE sensor boxes, latest raw values (Node-RED weather2)",
    license="unknown (open data of Stadt Soest; no licence published)",
    attribution="BürgerWOLKE Soest (Stadt Soest, Stadtwerke Soest, Fraunhofer IOSB-INA)",
    info_url="https://urbanedaten-soest.de/grafana/d/OkOUx1yMk/karte", fields=frozenset(FIELDS), options=Options,
    request=request, parse=parse,
)
