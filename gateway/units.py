"""Unit converters: small pure ``x_to_y`` functions used by adapters' field tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

TEN_MINUTES_S = 600.0


def kwh_per_m2_per_10min_to_w_per_m2(energy: float) -> float:
    """Mean irradiance over a 10-minute interval from its energy sum (Bright Sky ``solar_10``)."""
    return energy * 1000.0 * 3600.0 / TEN_MINUTES_S


def uw_per_cm2_to_w_per_m2(intensity: float) -> float:
    """1 µW/cm² = 1e-6 W / 1e-4 m² = 0.01 W/m²."""
    return intensity / 100.0


def pa_to_hpa(pressure: float) -> float:
    return pressure / 100.0


# --- unit symbols as upstream writes them (SensorThings unitOfMeasurement.symbol) -----------------------------

def _same(value: float) -> float:
    return value


def _scaled(factor: float) -> Callable[[float], float]:
    return lambda value: value * factor


# UN/CEFACT Recommendation 20 common codes, the ``unitCode`` of NGSI-LD properties and of the FIWARE Smart
# Data Models -> {a unit of ours: how a value in that code becomes a value in it}. A code converts only into
# the units listed: anything else is a different quantity, and the reading is refused rather than guessed.
UNIT_CODES: Mapping[str, Mapping[str, Callable[[float], float]]] = MappingProxyType({
    "CEL": {"°C": _same},
    "FAH": {"°C": lambda f: (f - 32.0) * 5.0 / 9.0},
    "KEL": {"°C": lambda k: k - 273.15},
    "P1": {"%": _same},
    # "one": a ratio 0..1, as the Smart Data Models write relativeHumidity and occupancy without a unitCode
    "C62": {"%": _scaled(100.0)},
    "GQ": {"µg/m³": _same},  # microgram per cubic metre
    "GP": {"µg/m³": _scaled(1000.0)},  # milligram per cubic metre
    "A97": {"hPa": _same},
    "MBR": {"hPa": _same},
    "PAL": {"hPa": _scaled(0.01)},
    "KPA": {"hPa": _scaled(10.0)},
    "MTS": {"km/h": _scaled(3.6), "m/s": _same},  # metre per second
    "KMH": {"km/h": _same, "m/s": _scaled(1 / 3.6)},
    "DD": {"°": _same},
    "MMT": {"mm": _same},
    "CMT": {"mm": _scaled(10.0), "cm": _same},
    "MTR": {"mm": _scaled(1000.0), "cm": _scaled(100.0), "m": _same},
    # decibel; the A-weighting of LAeq/LAmax is in the attribute's name, not in the unit
    "2N": {"dB": _same, "dBA": _same},
    "LUX": {"lx": _same},
    "D54": {"W/m²": _same},
    "D10": {"µS/cm": _scaled(10_000.0)},  # siemens per metre, the Smart Data Models' unit for conductivity
    "G42": {"µS/cm": _same},
    "H61": {"µS/cm": _scaled(1000.0)},  # millisiemens per centimetre
    "M1": {"mg/L": _same},  # milligram per litre
    "GL": {"mg/L": _scaled(1000.0)},
})


# A symbol -> (the unit we publish, converter). One unit per quantity, the one topics.yaml's measurements use
# (Home Assistant's), so that a Datastream in K or klx still lands in °C or lx. Lengths keep their own unit
# (precipitation is mm, visibility m, water levels cm). A symbol not listed is refused, never guessed.
SYMBOLS: Mapping[str, tuple[str, Callable[[float], float]]] = MappingProxyType({
    "°C": ("°C", _same), "K": ("°C", lambda k: k - 273.15), "°F": ("°C", lambda f: (f - 32) * 5 / 9),
    "%": ("%", _same), "hPa": ("hPa", _same), "mbar": ("hPa", _same), "Pa": ("hPa", pa_to_hpa),
    "kPa": ("hPa", _scaled(10.0)), "lx": ("lx", _same), "klx": ("lx", _scaled(1000.0)),
    "µg/m³": ("µg/m³", _same), "mg/m³": ("µg/m³", _scaled(1000.0)), "W/m²": ("W/m²", _same),
    "µW/cm²": ("W/m²", uw_per_cm2_to_w_per_m2), "km/h": ("km/h", _same), "m/s": ("km/h", _scaled(3.6)),
    "mm": ("mm", _same), "cm": ("cm", _same), "m": ("m", _same), "ppm": ("ppm", _same), "°": ("°", _same),
    "dB(A)": ("dB", _same), "dB": ("dB", _same),
})
# Spellings seen for the same unit [C: FROST demo data, UCUM codes]: ASCII, UCUM and the Greek mu.
SPELLINGS: Mapping[str, str] = MappingProxyType({
    "degC": "°C", "Cel": "°C", "deg C": "°C", "[degF]": "°F", "ug/m3": "µg/m³", "μg/m³": "µg/m³",
             "µg/m3": "µg/m³", "μg/m3": "µg/m³", "mg/m3": "mg/m³", "W/m2": "W/m²", "lux": "lx", "Lux": "lx",
             "kmh": "km/h", "deg": "°", "dBA": "dB(A)", "hpa": "hPa", "percent": "%"})


def in_our_unit(value: float | None, symbol: str) -> tuple[float | None, str | None]:
    """``value`` in ``symbol`` converted to our unit for that quantity, and that unit; (None, None) for a symbol
    we do not know: the caller refuses the value."""
    symbol = symbol.strip()
    known = SYMBOLS.get(SPELLINGS.get(symbol, symbol))
    if known is None:
        return None, None
    return (known[1](value) if value is not None else None), known[0]


# The attribute that says why a value was refused, and the reason gateway_rejected_readings_total counts it under.
REFUSED = "refused"
UNKNOWN_UNIT = "unknown_unit"


def trusted_unit(value: float | None, symbol: str | None) -> tuple[float | None, dict[str, str | None]]:
    """Upstream's own unit trusted: the value in our unit and the attributes saying which (``unit``), or no
    value and the reason (``refused``) for a symbol we do not know. Without a symbol (a count, a state) the value
    passes as it is."""
    if not symbol:
        return value, {"unit": None}
    converted, unit = in_our_unit(value, symbol)
    if unit is None:  # said only of a value there was: no value refused is no refusal to count (gateway.runs)
        why = {REFUSED: f"unit {symbol!r} is not one we know; the value is not published"} if value is not None else {}
        return None, {"unit": None, **why}
    return converted, {"unit": unit}
