"""Unit converters: small pure ``x_to_y`` functions used by adapters' field tables."""

from __future__ import annotations

from collections.abc import Callable

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


# A symbol -> (the unit we publish, converter). One unit per quantity, the one topics.yaml's measurements use
# (Home Assistant's), so that a Datastream in K or klx still lands in °C or lx. Lengths keep their own unit
# (precipitation is mm, visibility m, water levels cm). A symbol not listed is refused, never guessed.
SYMBOLS: dict[str, tuple[str, Callable[[float], float]]] = {
    "°C": ("°C", _same), "K": ("°C", lambda k: k - 273.15), "°F": ("°C", lambda f: (f - 32) * 5 / 9),
    "%": ("%", _same), "hPa": ("hPa", _same), "mbar": ("hPa", _same), "Pa": ("hPa", pa_to_hpa),
    "kPa": ("hPa", _scaled(10.0)), "lx": ("lx", _same), "klx": ("lx", _scaled(1000.0)),
    "µg/m³": ("µg/m³", _same), "mg/m³": ("µg/m³", _scaled(1000.0)), "W/m²": ("W/m²", _same),
    "µW/cm²": ("W/m²", uw_per_cm2_to_w_per_m2), "km/h": ("km/h", _same), "m/s": ("km/h", _scaled(3.6)),
    "mm": ("mm", _same), "cm": ("cm", _same), "m": ("m", _same), "ppm": ("ppm", _same), "°": ("°", _same),
    "dB(A)": ("dB", _same), "dB": ("dB", _same),
}
# Spellings seen for the same unit [C: FROST demo data, UCUM codes]: ASCII, UCUM and the Greek mu.
SPELLINGS = {"degC": "°C", "Cel": "°C", "deg C": "°C", "[degF]": "°F", "ug/m3": "µg/m³", "μg/m³": "µg/m³",
             "µg/m3": "µg/m³", "μg/m3": "µg/m³", "mg/m3": "mg/m³", "W/m2": "W/m²", "lux": "lx", "Lux": "lx",
             "kmh": "km/h", "deg": "°", "dBA": "dB(A)", "hpa": "hPa", "percent": "%"}


def in_our_unit(value: float | None, symbol: str) -> tuple[float | None, str | None]:
    """``value`` in ``symbol`` converted to our unit for that quantity, and that unit; (None, None) for a symbol
    we do not know: the caller refuses the value."""
    symbol = symbol.strip()
    known = SYMBOLS.get(SPELLINGS.get(symbol, symbol))
    if known is None:
        return None, None
    return (known[1](value) if value is not None else None), known[0]
