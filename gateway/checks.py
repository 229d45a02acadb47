"""Plausibility checks: a reading outside its measurement's limits is data, not an exception."""

from __future__ import annotations

from gateway.config import Measurement
from gateway.records import Value


def check(value: Value, measurement: Measurement) -> str | None:
    """Return a short rejection reason, or None when the value may be published."""
    if measurement.plausible is None or isinstance(value, bool) or not isinstance(value, int | float):
        if measurement.options is not None and value is not None and value not in measurement.options:
            return "not_an_option"
        return None
    low, high = measurement.plausible
    if value < low:
        return "below_range"
    if value > high:
        return "above_range"
    return None
