"""Unit converters: small pure ``x_to_y`` functions used by adapters' field tables."""

from __future__ import annotations

TEN_MINUTES_S = 600.0


def kwh_per_m2_per_10min_to_w_per_m2(energy: float) -> float:
    """Mean irradiance over a 10-minute interval from its energy sum (Bright Sky ``solar_10``)."""
    return energy * 1000.0 * 3600.0 / TEN_MINUTES_S


def m_to_km(metres: float) -> float:
    return metres / 1000.0


def kmh_to_ms(speed: float) -> float:
    return speed / 3.6


def ms_to_kmh(speed: float) -> float:
    return speed * 3.6
