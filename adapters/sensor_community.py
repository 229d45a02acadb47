"""Robust medians of the sensor.community citizen sensors (PM, temperature, humidity, pressure) around the city."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from gateway import adapter_api as api

Converter = Callable[[float], float] | None


# Our field -> (upstream value_type, converter, physical range in our unit, MAD floor in our unit).
# Values outside the range are sensor faults (an SDS011 saturates at 999.9 µg/m³); the floor keeps a
# near-zero spread from turning every small difference into an "outlier". Pressure is the sensor's
# station pressure (BME280 `pressure`, Pa), not reduced to sea level.
QUANTITIES: dict[str, tuple[str, Converter, tuple[float, float], float]] = {
    "pm10": ("P1", None, (0.0, 999.0), 1.0),
    "pm25": ("P2", None, (0.0, 999.0), 1.0),
    "temperature": ("temperature", None, (-40.0, 60.0), 0.5),
    "humidity": ("humidity", None, (0.0, 100.0), 2.0),
    "pressure": ("pressure", api.pa_to_hpa, (850.0, 1100.0), 1.0),
}
# sensor.type names whose P1/P2 are mass concentrations in µg/m³ (casefolded). Other sensors send P1/P2 in
# other units: the Shinyei PPD42NS sends particle counts (per 0.01 ft³; "972.68" next to durP1/ratioP1 in a
# captured response), which pass the 0-999 range and can decide the median. A P1/P2 of a type not listed
# here is not used, and counted. The list follows the airrohr firmware's PM sensors and the types the
# sensor.community map draws [C: firmware ext_def.h, maps filter]; add a type here once its unit is known.
MASS_PM_TYPES = frozenset(name.casefold() for name in (
    "SDS011", "SDS021", "PMS1003", "PMS3003", "PMS5003", "PMS6003", "PMS7003", "HPM", "SPS30", "NextPM"))
PM_VALUE_TYPES = frozenset({"P1", "P2"})
# Times: "YYYY-MM-DD HH:MM:SS" without an offset is UTC [I]; ISO 8601 with an offset is taken as written.
FIELDS = (*QUANTITIES, "sensor_count")
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
MIN_FOR_OUTLIERS = 3  # with one or two sensors there is no majority to call one of them wrong
MAX_IDS = 20  # sensor ids listed per attribute, to keep attributes small in dense areas

Sample = tuple[float, Any, datetime]  # value, sensor id, timestamp


class Options(api.AdapterOptions):
    radius_km: float = Field(default=5.0, gt=0, le=50)
    mad_limit: float = Field(default=3.5, gt=0)  # drop |x - median| > mad_limit * 1.4826 * MAD


def request(opts: Options, base_url: str) -> api.Request:
    area = f"{opts.latitude:.4f},{opts.longitude:.4f},{opts.radius_km:g}"
    return api.get(base_url, f"/airrohr/v1/filter/area={area}")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    items = api.load_json_array(body, "measurements")
    # sensor id -> its newest entry and sensor type (the 5-minute window repeats)
    newest: dict[Any, tuple[datetime, list[Any], str | None]] = {}
    indoor: set[Any] = set()
    for item in items:
        entry = _entry(item)
        if entry is None:
            continue
        sensor_id, stamp, values, is_indoor, kind = entry
        if is_indoor:
            indoor.add(sensor_id)
        elif sensor_id not in newest or stamp >= newest[sensor_id][0]:  # on a tie the later entry is newer
            newest[sensor_id] = (stamp, values, kind)
    if items and not newest and not indoor:
        raise api.ParseError("no entry has sensor.id, timestamp and sensordatavalues", kind="bad_schema")

    by_type = {src: field for field, (src, _, _, _) in QUANTITIES.items()}
    samples: dict[str, dict[Any, Sample]] = {field: {} for field in QUANTITIES}
    not_mass: dict[str, dict[Any, str]] = {field: {} for field in QUANTITIES}  # field -> sensor id -> its type
    for sensor_id, (stamp, values, sensor_type) in newest.items():
        for value in values:
            kind = value.get("value_type") if isinstance(value, dict) else None
            field = by_type.get(kind) if isinstance(kind, str) else None
            amount = api.number(value.get("value")) if field is not None else None
            if field is not None and amount is not None and kind in PM_VALUE_TYPES \
                    and (sensor_type or "").casefold() not in MASS_PM_TYPES:
                not_mass[field][sensor_id] = sensor_type or "unknown"
            elif field is not None and amount is not None:
                convert = QUANTITIES[field][1]
                samples[field].setdefault(sensor_id, (convert(amount) if convert else amount, sensor_id, stamp))

    readings: list[api.Reading] = []
    used: dict[Any, datetime] = {}
    for field, (src, _, limits, floor) in QUANTITIES.items():
        kept, out_of_range, outliers = _robust(list(samples[field].values()), limits, floor, opts.mad_limit)
        used |= {sensor_id: stamp for _, sensor_id, stamp in kept}
        station = api.Station(name=f"{len(kept)} sensors within {opts.radius_km:g} km",
                          latitude=opts.latitude, longitude=opts.longitude)
        attributes = {"upstream_field": src, "radius_km": opts.radius_km, "sensors_used": len(kept),
                      "outliers_dropped": {"count": len(outliers), "sensor_ids": outliers[:MAX_IDS]},
                      "out_of_range_dropped": {"count": len(out_of_range), "sensor_ids": out_of_range[:MAX_IDS]}}
        if src in PM_VALUE_TYPES:
            skipped = not_mass[field]
            attributes["not_mass_concentration_dropped"] = {
                "count": len(skipped), "sensor_ids": sorted(skipped, key=str)[:MAX_IDS],
                "sensor_types": sorted(set(skipped.values()))[:MAX_IDS]}
        value = statistics.median(v for v, _, _ in kept) if kept else None
        observed_at = max((stamp for _, _, stamp in kept), default=now)
        readings.append(api.Reading(field, value, observed_at, station, attributes))
    counts = {r.field: r.attributes["sensors_used"] for r in readings}
    station = api.Station(name=f"{len(used)} sensors within {opts.radius_km:g} km",
                      latitude=opts.latitude, longitude=opts.longitude)
    readings.append(api.Reading("sensor_count", len(used), max(used.values(), default=now), station,
                            {"radius_km": opts.radius_km, "per_quantity": counts, "indoor_skipped": len(indoor)}))
    return readings


def _robust(samples: list[Sample], limits: tuple[float, float], floor: float,
            mad_limit: float) -> tuple[list[Sample], list[Any], list[Any]]:
    """The samples kept, the ids outside the physical range and the ids of robust (MAD) outliers."""
    low, high = limits
    plausible = [s for s in samples if low <= s[0] <= high]
    out_of_range = sorted((s[1] for s in samples if not low <= s[0] <= high), key=str)
    if len(plausible) < MIN_FOR_OUTLIERS:
        return plausible, out_of_range, []
    median = statistics.median(s[0] for s in plausible)
    spread = max(MAD_TO_SIGMA * statistics.median(abs(s[0] - median) for s in plausible), floor)
    kept = [s for s in plausible if abs(s[0] - median) <= mad_limit * spread]
    outliers = sorted((s[1] for s in plausible if abs(s[0] - median) > mad_limit * spread), key=str)
    return kept, out_of_range, outliers


def _entry(item: object) -> tuple[Any, datetime, list[Any], bool, str | None] | None:
    """(sensor id, timestamp, sensordatavalues, indoor, sensor type name) of one measurement, or None when it
    lacks them; the type is None when the entry does not name it."""
    if not isinstance(item, dict):
        return None
    sensor, location, values = item.get("sensor"), item.get("location"), item.get("sensordatavalues")
    sensor_id = sensor.get("id") if isinstance(sensor, dict) else None
    stamp = _stamp(item.get("timestamp"))
    if isinstance(sensor_id, bool) or not isinstance(sensor_id, int | str) or not isinstance(values, list) \
            or stamp is None:
        return None
    indoor = isinstance(location, dict) and location.get("indoor") in (1, "1")
    kind = api.text(api.dig(sensor, "sensor_type", "name"), 40)
    return sensor_id if isinstance(sensor_id, int) else api.clip(sensor_id, 20), stamp, values, indoor, kind


def _stamp(value: object) -> datetime | None:
    """The API's "YYYY-MM-DD HH:MM:SS" (UTC [I]); ISO 8601 with an offset is accepted as well."""
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
        return stamp.replace(tzinfo=stamp.tzinfo or UTC).astimezone(UTC) if stamp is not None else None
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 with an offset
        return None


ADAPTER = api.Adapter(
    name="sensor_community", title="Citizen sensors", provider="sensor.community",
    dataset="Measurements of the last 5 minutes within a radius (airrohr API v1)", license="ODbL 1.0",
    attribution="sensor.community contributors (ODbL)",
    info_url="https://github.com/opendata-stuttgart/meta/wiki/EN-APIs", fields=frozenset(FIELDS), options=Options,
    request=request, parse=parse,
)
