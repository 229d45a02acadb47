"""Unit converters: small pure ``x_to_y`` functions used by adapters' field tables."""

from __future__ import annotations

TEN_MINUTES_S = 600.0


def kwh_per_m2_per_10min_to_w_per_m2(energy: float) -> float:
    """Mean irradiance over a 10-minute interval from its energy sum (Bright Sky ``solar_10``)."""
    return energy * 1000.0 * 3600.0 / TEN_MINUTES_S


def uw_per_cm2_to_w_per_m2(intensity: float) -> float:
    """1 µW/cm² = 1e-6 W / 1e-4 m² = 0.01 W/m²."""
    return intensity / 100.0


def pa_to_hpa(pressure: float) -> float:
    return pressure / 100.0
