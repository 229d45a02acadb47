"""Plausibility checks: a reading outside its measurement's limits is data, not an exception."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.config import Measurement
from gateway.records import Value

# A jump is judged over at least this long, so two readings seconds apart are not held to a
# per-hour rate they could never meet.
MIN_RATE_WINDOW_H = 1 / 6
# Upstream clocks and ours disagree a little; a reading from further ahead than this is a wrong
# timestamp, and trusting it would keep its value "fresh" until that date.
MAX_CLOCK_SKEW = timedelta(minutes=5)

# Every reason check() and check_time() can give, so metric label sets can exist from the start.
REJECT_REASONS = ("below_range", "above_range", "jump", "not_an_option", "future", "no_timezone")
TIME_REASONS = ("future", "no_timezone")


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


def check_time(observed_at: datetime, now: datetime) -> str | None:
    """Return a rejection reason for a timestamp the gateway must not base staleness on."""
    if observed_at.tzinfo is None:
        return "no_timezone"
    if observed_at - now > MAX_CLOCK_SKEW:
        return "future"
    return None


def reasons_for(measurement: Measurement) -> tuple[str, ...]:
    """The rejection reasons ``measurement`` can produce at all."""
    out = list(TIME_REASONS)
    if measurement.plausible is not None:
        out += ["below_range", "above_range"]
    if measurement.max_rate is not None:
        out.append("jump")
    if measurement.options is not None:
        out.append("not_an_option")
    return tuple(out)


def judge(value: Value, observed_at: datetime, measurement: Measurement, previous: float | None,
          previous_observed: datetime | None, now: datetime) -> str | None:
    """The one verdict on a reading: its timestamp first, since staleness and the jump check rely on it."""
    reason = check_time(observed_at, now)
    if reason is not None:
        return reason
    elapsed = None
    if previous_observed is not None:
        elapsed = abs((observed_at - previous_observed).total_seconds()) / 3600
    return check(value, measurement, previous, elapsed)
