"""The "Refresh all sources" button: presses that never make the gateway impolite to an upstream."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from gateway.catalog import SourceSpec
from gateway.runs import SourceState

log = logging.getLogger("gateway.app")

# Presses closer together than this are ignored (each press writes a log line).
REFRESH_MIN_INTERVAL = 2.0
# A press refetches a source only if its last run is older than refresh_floor(its interval).
REFRESH_FLOOR_MIN = 60.0
REFRESH_FLOOR_SHARE = 0.1
# A press is a few bytes; anything longer is not one.
MAX_PRESS_PAYLOAD = 64
PRESS_PAYLOADS = (b"PRESS", b"REFRESH", b"")


def refresh_floor(interval: float, local: bool = False) -> float:
    """Seconds after its last run before a refresh press may fetch a source again.

    ``min(interval, max(60 s, interval / 10))``: a press never fetches a source more often than
    its own schedule does, nor more than once a minute (unless the schedule itself is faster);
    a 10-minute source at most every minute, an hourly one every 6 minutes, a daily one every 2.4 h.
    A source computed without the network (the sun) has nobody to be polite to: 0.
    """
    return 0.0 if local else min(interval, max(REFRESH_FLOOR_MIN, interval * REFRESH_FLOOR_SHARE))


def is_local(spec: SourceSpec) -> bool:
    """True for a source computed without the network (its adapter asks for no request)."""
    if spec.adapter.lookup is not None:
        return False
    try:
        return spec.adapter.request(spec.options, spec.config.base_url or "") is None
    except Exception:  # an adapter that needs more than its options to build a request is remote
        return False


def is_press(payload: bytes, retain: bool) -> bool:
    # A retained press would fire on every start; HA's button never retains.
    return not retain and len(payload) <= MAX_PRESS_PAYLOAD and payload.strip().upper() in PRESS_PAYLOADS


class RefreshButton:
    """Decides which sources a press runs now; ``run_now`` reschedules one source."""

    def __init__(self, sources: Mapping[str, SourceSpec], states: Mapping[str, SourceState],
                 run_now: Callable[[str], None]) -> None:
        self.states = states
        self.run_now = run_now
        self.floors = {key: refresh_floor(spec.interval, is_local(spec)) for key, spec in sources.items()}
        self.last_press = float("-inf")

    def press(self, now: float) -> list[str]:
        """Run the sources that are due for it now; returns their keys.

        A source is refetched only if its last run started at least ``refresh_floor(interval)``
        ago, so pressing the button often never fetches any source more often than its own
        schedule does; presses less than REFRESH_MIN_INTERVAL apart are ignored altogether.
        """
        if now - self.last_press < REFRESH_MIN_INTERVAL:
            log.debug("refresh ignored: the last one was less than %gs ago", REFRESH_MIN_INTERVAL)
            return []
        self.last_press = now
        due = [key for key, floor in self.floors.items() if now - self.states[key].last_run >= floor]
        waiting = [key for key in self.floors if key not in due]
        log.info("refresh: fetching %d of %d sources now (%s); fetched too recently: %s", len(due),
                 len(self.floors), ", ".join(due) or "none", ", ".join(waiting) or "none")
        for key in due:
            self.run_now(key)
        return due
