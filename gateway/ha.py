"""Home Assistant's rules for a measurement (device class, unit, state class) as data.

The tables are the newest Home Assistant's (2026.11). What an older line still in use differs in is
checked on top: HA 2025.4, whose MQTT code openHAB 5 embeds, and the 2025.7-2025.8 releases that
reject a micro sign they do not spell themselves. Where the lines differ, only what all accept
passes. config.py checks every measurement of topics.yaml against these rules; the full
discovery-payload validator that the tests use lives in tests/ha_rules.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

NON_NUMERIC_DEVICE_CLASSES = frozenset({"date", "enum", "timestamp", "uptime"})


ANY_UNIT_DEVICE_CLASSES = frozenset({"monetary"})  # any currency; its table entry is empty


_PRESSURE = ("mPa", "Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "inH₂O", "psi", "atm")


_ENERGY = (
    "J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal", "Mcal", "Gcal", "thm",
)


_WIND_SPEED = ("Beaufort", "ft/s", "in/s", "m/min", "m/s", "km/h", "kn", "mph", "mm/s")


_VOLUME = ("ft³", "CCF", "MCF", "m³", "L", "mL", "gal", "fl. oz.")


_DELTA_T = ("°C", "°F", "K")


SENSOR_DEVICE_CLASS_UNITS: Mapping[str, frozenset[str | None]] = MappingProxyType({
    **dict.fromkeys(sorted(NON_NUMERIC_DEVICE_CLASSES), frozenset({None})),
    "absolute_humidity": frozenset({"g/m³", "mg/m³"}),
    "apparent_power": frozenset({"mVA", "VA", "kVA"}),
    "aqi": frozenset({None}),
    "area": frozenset({"m²", "cm²", "km²", "mm²", "in²", "ft²", "yd²", "mi²", "ac", "ha"}),
    "atmospheric_pressure": frozenset(_PRESSURE),
    "battery": frozenset({"%"}),
    "blood_glucose_concentration": frozenset({"mg/dL", "mmol/L"}),
    "carbon_monoxide": frozenset({"ppb", "ppm", "mg/m³", "μg/m³"}),
    "carbon_dioxide": frozenset({"ppm"}),
    "conductivity": frozenset({"S/cm", "μS/cm", "mS/cm"}),
    "current": frozenset({"μA", "mA", "A"}),
    "data_rate": frozenset({
        "bit/s", "kbit/s", "Mbit/s", "Gbit/s", "B/s", "kB/s", "MB/s", "GB/s", "KiB/s", "MiB/s", "GiB/s",
    }),
    "data_size": frozenset({
        "bit", "kbit", "Mbit", "Gbit", "B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB",
        "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB",
    }),
    "distance": frozenset({"mm", "cm", "m", "km", "in", "ft", "yd", "mi", "nmi"}),
    "duration": frozenset({"d", "h", "min", "s", "ms", "μs"}),
    "energy": frozenset(_ENERGY),
    "energy_distance": frozenset({"kWh/100km", "Wh/km", "mi/kWh", "km/kWh"}),
    "energy_storage": frozenset(_ENERGY),
    "frequency": frozenset({"mHz", "Hz", "kHz", "MHz", "GHz"}),
    "gas": frozenset({"CCF", "ft³", "m³", "L", "MCF"}),
    "humidity": frozenset({"%"}),
    "illuminance": frozenset({"lx"}),
    "irradiance": frozenset({"W/m²", "BTU/(h⋅ft²)"}),
    "moisture": frozenset({"%"}),
    "monetary": frozenset(),
    "nitrogen_dioxide": frozenset({"ppb", "ppm", "μg/m³"}),
    "nitrogen_monoxide": frozenset({"ppb", "μg/m³"}),
    "nitrous_oxide": frozenset({"μg/m³"}),
    "ozone": frozenset({"ppb", "ppm", "μg/m³"}),
    "ph": frozenset({None}),
    "pm1": frozenset({"μg/m³"}),
    "pm10": frozenset({"μg/m³"}),
    "pm25": frozenset({"μg/m³"}),
    "pm4": frozenset({"μg/m³"}),
    "power_factor": frozenset({"%", None}),
    "power": frozenset({"mW", "W", "kW", "MW", "GW", "TW"}),
    "precipitation": frozenset({"in", "mm", "cm"}),
    "precipitation_intensity": frozenset({"in/d", "in/h", "mm/d", "mm/h"}),
    "pressure": frozenset(_PRESSURE),
    "radon": frozenset({"Bq/m³", "pCi/L"}),
    "reactive_energy": frozenset({"varh", "kvarh"}),
    "reactive_power": frozenset({"mvar", "var", "kvar"}),
    "signal_strength": frozenset({"dB", "dBm"}),
    "sound_pressure": frozenset({"dB", "dBA"}),
    "speed": frozenset((*_WIND_SPEED, "in/d", "in/h", "mm/d", "mm/h")),
    "sulphur_dioxide": frozenset({"ppb", "μg/m³"}),
    "temperature": frozenset(_DELTA_T),
    "temperature_delta": frozenset(_DELTA_T),
    "volatile_organic_compounds": frozenset({"μg/m³", "mg/m³"}),
    "volatile_organic_compounds_parts": frozenset({"ppb", "ppm"}),
    "voltage": frozenset({"μV", "mV", "V", "kV", "MV"}),
    "volume": frozenset(_VOLUME),
    "volume_flow_rate": frozenset({
        "m³/h", "m³/min", "m³/s", "ft³/min", "L/h", "L/min", "L/s", "gal/h", "gal/min", "gal/d", "mL/s",
    }),
    "volume_storage": frozenset(_VOLUME),
    "water": frozenset({"CCF", "ft³", "m³", "gal", "L", "MCF"}),
    "weight": frozenset({"g", "kg", "mg", "μg", "oz", "lb", "st"}),
    "wind_direction": frozenset({"°"}),
    "wind_speed": frozenset(_WIND_SPEED),
})


# µ (U+00B5 MICRO SIGN) spellings of every unit above that uses μ (U+03BC GREEK SMALL LETTER MU).
# Until August 2025 HA spelled micro with µ and, from 2025.4, warned about μ ("will stop working");
# 2025.7 and 2025.8 reject μ outright. Since then μ is HA's own spelling and it translates µ itself.
# µ is therefore the one spelling every version accepts.
MICRO_SIGN, GREEK_MU = "\u00b5", "\u03bc"
AMBIGUOUS_UNITS: Mapping[str, str] = MappingProxyType({
    unit.replace("\u03bc", "\u00b5"): unit
    for units in SENSOR_DEVICE_CLASS_UNITS.values()
    for unit in sorted(u for u in units if u is not None and "\u03bc" in u)
})


# What Home Assistant 2025.4 (the MQTT code openHAB 5 embeds) does not take yet, as read from
# homeassistant 2025.4.4's sensor tables (tests/ha/test_rules_in_step.py compares them): device
# classes it does not know, and units of a known class that came later. Everything else of the
# newest tables it accepts.
HA_2025_4_UNKNOWN_DEVICE_CLASSES = frozenset({
    "absolute_humidity", "pm4", "radon", "reactive_energy", "temperature_delta",
})
HA_2025_4_UNKNOWN_UNITS: Mapping[str, frozenset[str]] = MappingProxyType({
    "apparent_power": frozenset({"kVA", "mVA"}),
    "atmospheric_pressure": frozenset({"atm", "inH₂O", "mPa"}),
    "carbon_monoxide": frozenset({"mg/m³", "ppb", "μg/m³"}),
    "current": frozenset({"μA"}),
    "energy": frozenset({"thm"}),
    "energy_distance": frozenset({"Wh/km"}),
    "energy_storage": frozenset({"thm"}),
    "frequency": frozenset({"mHz"}),
    "gas": frozenset({"L", "MCF"}),
    "nitrogen_dioxide": frozenset({"ppb", "ppm"}),
    "nitrogen_monoxide": frozenset({"ppb"}),
    "ozone": frozenset({"ppb", "ppm"}),
    "pressure": frozenset({"atm", "inH₂O", "mPa"}),
    "reactive_power": frozenset({"kvar", "mvar"}),
    "speed": frozenset({"m/min"}),
    "sulphur_dioxide": frozenset({"ppb"}),
    "volatile_organic_compounds": frozenset({"mg/m³"}),
    "volume": frozenset({"MCF"}),
    "volume_flow_rate": frozenset({"L/h", "L/s", "gal/d", "gal/h", "m³/min", "m³/s"}),
    "volume_storage": frozenset({"MCF"}),
    "water": frozenset({"MCF"}),
    "wind_speed": frozenset({"m/min"}),
})
OLDEST = "Home Assistant 2025.4 (and openHAB 5)"


SENSOR_STATE_CLASSES = frozenset({"measurement", "measurement_angle", "total", "total_increasing"})


_MEASUREMENT = frozenset({"measurement"})


_ANY_STATE = frozenset({"measurement", "total", "total_increasing"})


_TOTALS = frozenset({"total", "total_increasing"})


_MEASUREMENT_ONLY = (
    "absolute_humidity", "apparent_power", "aqi", "atmospheric_pressure", "battery",
    "blood_glucose_concentration", "carbon_monoxide", "carbon_dioxide", "conductivity", "current",
    "data_rate", "energy_distance", "energy_storage", "frequency", "humidity", "illuminance", "irradiance",
    "moisture", "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10",
    "pm25", "pm4", "power_factor", "power", "precipitation_intensity", "pressure", "radon",
    "reactive_power", "signal_strength", "sound_pressure", "speed", "sulphur_dioxide", "temperature",
    "temperature_delta", "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage",
    "volume_storage", "volume_flow_rate", "wind_speed",
)


SENSOR_DEVICE_CLASS_STATE_CLASSES: Mapping[str, frozenset[str]] = MappingProxyType({
    **dict.fromkeys(_MEASUREMENT_ONLY, _MEASUREMENT),
    **dict.fromkeys(("area", "data_size", "distance", "duration", "precipitation"), _ANY_STATE),
    **dict.fromkeys(NON_NUMERIC_DEVICE_CLASSES, frozenset()),
    **dict.fromkeys(("energy", "gas", "reactive_energy", "volume", "water"), _TOTALS),
    "monetary": frozenset({"total"}),
    "weight": _ANY_STATE,
    "wind_direction": frozenset({"measurement_angle"}),
})


BINARY_SENSOR_DEVICE_CLASSES = frozenset({
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door",
    "gas", "glass_break", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound", "tamper",
    "update", "vibration", "window",
})


def normalize_unit(unit: str | None) -> str | None:
    """The unit HA compares against its tables: µ (U+00B5) spellings become μ (U+03BC)."""
    if unit is None:
        return None
    return AMBIGUOUS_UNITS.get(unit, unit)


def _is_str_list(value: object) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
            and all(isinstance(v, str) and v for v in value))


def _show(values: frozenset[str | None] | frozenset[str]) -> str:
    return ", ".join(sorted("(no unit)" if v is None else repr(v) for v in values)) or "none"


def measurement_problems(
    component: str,
    device_class: str | None,
    unit: str | None,
    state_class: str | None,
    options: Sequence[str] | None = None,
) -> list[str]:
    """Problems with a device_class / unit / state_class / options combination for `component`."""
    for key, value in (("device_class", device_class), ("unit_of_measurement", unit),
                       ("state_class", state_class)):
        if value is not None and not isinstance(value, str):
            return [f"{key} must be a string or null, not {value!r}"]
    problems: list[str] = []
    if unit and GREEK_MU in unit:
        problems.append(f"unit {unit!r} spells micro with μ (U+03BC), which Home Assistant 2025.7 and 2025.8 "
                        f"reject and 2025.4 (openHAB 5) warns about; write {unit.replace(GREEK_MU, MICRO_SIGN)!r} "
                        "with µ (U+00B5, MICRO SIGN), which every version accepts")
    unit = normalize_unit(unit or None)  # HA removes a blank unit
    if component == "binary_sensor":
        if device_class is not None and device_class not in BINARY_SENSOR_DEVICE_CLASSES:
            problems.append(f"unknown binary_sensor device_class {device_class!r}")
        for key, value in (("unit_of_measurement", unit), ("state_class", state_class), ("options", options)):
            if value is not None:
                problems.append(f"binary_sensor does not take {key}")
        return problems
    if component != "sensor":
        return [f"a measurement must be a sensor or binary_sensor, not {component!r}"]
    if device_class is not None and device_class not in SENSOR_DEVICE_CLASS_UNITS:
        problems.append(f"unknown sensor device_class {device_class!r}")
    elif device_class in NON_NUMERIC_DEVICE_CLASSES:
        for key, value in (("unit_of_measurement", unit), ("state_class", state_class)):
            if value is not None:
                problems.append(f"device_class {device_class!r} is not numeric and must not have {key}")
    elif device_class in HA_2025_4_UNKNOWN_DEVICE_CLASSES:
        problems.append(f"device_class {device_class!r} is unknown to {OLDEST}")
    elif device_class is not None and device_class not in ANY_UNIT_DEVICE_CLASSES:
        allowed = SENSOR_DEVICE_CLASS_UNITS[device_class] - HA_2025_4_UNKNOWN_UNITS.get(device_class, frozenset())
        if unit not in allowed:
            shown = "no unit" if unit is None else f"unit {unit!r}"
            newer = " (only newer Home Assistant versions take it)" if unit in SENSOR_DEVICE_CLASS_UNITS[
                device_class] else ""
            problems.append(f"{shown} is not valid with device_class {device_class!r}{newer} "
                            f"(allowed by every version: {_show(allowed)})")
    if state_class is not None:
        possible = SENSOR_DEVICE_CLASS_STATE_CLASSES.get(device_class or "", SENSOR_STATE_CLASSES)
        if state_class not in SENSOR_STATE_CLASSES:
            problems.append(f"unknown state_class {state_class!r}")
        elif state_class not in possible and device_class not in NON_NUMERIC_DEVICE_CLASSES:
            problems.append(f"state_class {state_class!r} is impossible with device_class {device_class!r} "
                            f"(allowed: {_show(possible)})")
        if state_class == "measurement_angle" and unit != "°":
            problems.append("state_class 'measurement_angle' requires unit '°'")
    if options is not None:
        if device_class != "enum":
            problems.append("options are only allowed with device_class 'enum'")
        if not _is_str_list(options):
            problems.append("options must be a non-empty list of non-empty strings")
    return problems
