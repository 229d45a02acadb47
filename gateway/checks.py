"""Plausibility checks: a reading outside its measurement's limits is data, not an exception."""

from __future__ import annotations

from gateway.config import Measurement
from gateway.records import Value

# A jump is judged over at least this long, so two readings seconds apart are not held to a
# per-hour rate they could never meet.
MIN_RATE_WINDOW_H = 1 / 6


def check(value: Value, measurement: Measurement, previous: float | None = None,
          elapsed_h: float | None = None) -> str | None:
    """Return a short rejection reason, or None when the value may be published."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if measurement.options is not None and value is not None and value not in measurement.options:
            return "not_an_option"
        return None
    if measurement.plausible is not None:
        low, high = measurement.plausible
        if value < low:
            return "below_range"
        if value > high:
            return "above_range"
    rate = measurement.max_rate
    if rate is not None and previous is not None and elapsed_h is not None \
            and abs(value - previous) > rate * max(elapsed_h, MIN_RATE_WINDOW_H):
        return "jump"
    return None
