"""When upstream has news: a source's update rhythm, learned from what its fetches saw. Pure: no clock, no I/O.

The model is the one most open-data feeds follow: upstream stamps its data on a grid
(``observed_at`` ≡ phase mod cadence: DWD's 10-minute observations at :00, :10, ...) and makes
each stamp available some minutes later, the *lag*, which varies from one stamp to the next.
Learned from each fetch that brought news:

- the **phase**, from the newest ``observed_at`` values (they must sit on one grid);
- the **lag**: from ``Last-Modified`` where upstream sends it (``Last-Modified - observed_at``
  is the lag itself; a high quantile of the recent ones is the target), otherwise tracked by
  hit and miss: a planned fetch that found the stamp it expected moves the target earlier, one
  that did not moves it later, so the target settles where about ``HIT_RATE`` of fetches hit.

``plan`` then puts the next fetch at the expected arrival of the next stamp plus ``offset`` (the
jitter, drawn once per source: a gateway keeps its moment, gateways spread over the jitter, and
fetches stay exactly a cadence apart instead of ratcheting later), and never earlier than
``every`` after the last fetch: no more requests than the plain interval
makes. Without a rhythm (too few samples, stamps off the grid, data stamped at fetch time, or
``MAX_MISSES`` planned fetches in a row that missed) it returns None: the plain interval applies.
All times are Unix seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

MIN_SAMPLES = 3  # stamps (and Last-Modified lags) before a rhythm is trusted
STAMPS_KEPT = 12
LAGS_KEPT = 32
LAG_QUANTILE = 0.95  # of the Last-Modified lags: late enough that a planned fetch rarely misses
HIT_RATE = 0.95  # what hit-and-miss tracking aims for, without Last-Modified
MISS_STEP = 0.1  # of the cadence: a miss moves the target this much later ...
HIT_STEP = MISS_STEP * (1 - HIT_RATE) / HIT_RATE  # ... a hit this much earlier (equilibrium at HIT_RATE)
DESCENT_STEPS = 5  # until the first miss, hits move the target earlier by doubling steps (fast start)
MAX_MISSES = 3  # planned fetches in a row that found nothing new: the rhythm is lost, learn again
GRID_TOLERANCE = 0.02  # of the cadence (at least MIN_TOLERANCE): how far stamps may stray from the grid
MIN_TOLERANCE = 2.0
LATE_TOLERANCE = 0.05  # of the cadence: a fetch this late is kept rather than skipping a stamp to move earlier
MAX_LAG_CADENCES = 4  # a "lag" longer than this many cadences is not a publication delay
MAX_WAIT_S = 366 * 86400.0  # fetch time - stamp, as saved: upstream may lag for months, not for years


@dataclass(frozen=True, slots=True)
class Sighting:
    """What one successful fetch saw."""

    at: float  # when the fetch started
    newest: float | None  # the source's newest observed_at after it
    news: bool  # it brought data newer than the source had
    modified: float | None = None  # upstream's Last-Modified, when the response brought news


@dataclass(frozen=True, slots=True)
class Plan:
    at: float  # when to fetch
    stamp: float  # the observed_at the fetch expects to find


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of a non-empty list."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def grid_phase(stamps: list[float], cadence: float, tolerance: float) -> float | None:
    """The stamps' common phase mod ``cadence``, or None if they do not share one."""
    if len(stamps) < MIN_SAMPLES:
        return None
    ref = stamps[-1] % cadence
    # Signed distances to the reference on the circle, so :59:59 and :00:01 count as 2 s apart.
    devs = [(s - ref + cadence / 2) % cadence - cadence / 2 for s in stamps]
    mean = sum(devs) / len(devs)
    if max(abs(d - mean) for d in devs) > tolerance:
        return None
    return (ref + mean) % cadence


class Rhythm:
    """One source's learned rhythm. ``cadence``: upstream's update period; ``every``: the fetch interval;
    ``offset``: seconds added to every planned fetch (the jitter, drawn once)."""

    __slots__ = (
        "_aim",
        "_descent",
        "_lags",
        "_misses",
        "_newest",
        "_stamps",
        "_tracked",
        "_waits",
        "cadence",
        "every",
        "hits",
        "missed",
        "offset",
        "tolerance",
    )

    def __init__(self, cadence: float, every: float, offset: float = 0.0) -> None:
        self.cadence = cadence
        self.every = every
        self.offset = offset
        self.tolerance = max(MIN_TOLERANCE, GRID_TOLERANCE * cadence)
        self._stamps: deque[float] = deque(maxlen=STAMPS_KEPT)
        self._lags: deque[float] = deque(maxlen=LAGS_KEPT)  # from Last-Modified
        self._waits: deque[float] = deque(maxlen=STAMPS_KEPT)  # fetch time - stamp, for news: >= the lag
        self._tracked: float | None = None  # the hit-and-miss lag target
        self._descent = 0  # hits so far in the fast start; -1 once a miss ended it
        self._misses = 0
        self._newest: float | None = None
        self._aim: Plan | None = None
        self.hits = 0
        self.missed = 0

    # ------------------------------------------------------------------ learning

    def note(self, seen: Sighting) -> None:
        """Take in a successful fetch (a 304 too: it is a fetch that found nothing new)."""
        aim, self._aim = self._aim, None
        if seen.newest is not None and (self._newest is None or seen.newest > self._newest):
            self._newest = seen.newest
        if aim is not None and seen.at >= aim.at - 1.0:  # a fetch we planned (not a refresh press)
            hit = seen.newest is not None and seen.newest >= aim.stamp - self.tolerance
            # The lag this fetch tested: it may have run later than planned (never sooner than `every`).
            self._judge(hit, seen.at - aim.stamp - self.offset)
        if not seen.news or seen.newest is None:
            return
        self._stamps.append(seen.newest)
        self._waits.append(seen.at - seen.newest)
        if seen.modified is not None:
            lag = seen.modified - seen.newest
            if -self.tolerance <= lag <= MAX_LAG_CADENCES * self.cadence and seen.modified <= seen.at + 60:
                self._lags.append(max(0.0, lag))
        if self._tracked is None and self.phase() is not None:
            # Every fetch with news came after its stamp's arrival: the smallest wait is an upper bound.
            self._tracked = min(self._waits)

    def _judge(self, hit: bool, tested: float) -> None:
        if hit:
            self.hits += 1
            self._misses = 0
            if self._tracked is not None:
                if self._descent >= 0:
                    step = HIT_STEP * self.cadence * 2 ** min(self._descent, DESCENT_STEPS)
                    self._descent += 1
                else:
                    step = HIT_STEP * self.cadence
                self._tracked = max(0.0, min(self._tracked, tested) - step)
            return
        self.missed += 1
        self._misses += 1
        self._descent = -1
        if self._tracked is not None:
            self._tracked = min(MAX_LAG_CADENCES * self.cadence, max(self._tracked, tested) + MISS_STEP * self.cadence)
        if self._misses >= MAX_MISSES:
            self.forget()

    def forget(self) -> None:
        """Start learning again (the rhythm drifted, or upstream stopped updating)."""
        self._stamps.clear()
        self._lags.clear()
        self._waits.clear()
        self._tracked = None
        self._descent = 0
        self._misses = 0

    # ------------------------------------------------------------------ what was learned

    def phase(self) -> float | None:
        if len(self._waits) >= MIN_SAMPLES and max(self._waits) < self.tolerance:
            return None  # stamped when fetched (no timestamp upstream, or computed locally): no rhythm
        return grid_phase(list(self._stamps), self.cadence, self.tolerance)

    def lag(self) -> float | None:
        """Seconds from a stamp to the moment it is fetched with a good chance of being there."""
        if len(self._lags) >= MIN_SAMPLES:
            return quantile(list(self._lags), LAG_QUANTILE)
        return self._tracked if self.phase() is not None else None

    @property
    def state(self) -> str:
        if len(self._stamps) < MIN_SAMPLES:
            return "learning"
        return "aligned" if self.phase() is not None and self.lag() is not None else "irregular"

    # ------------------------------------------------------------------ planning

    def plan(self, last: float) -> Plan | None:
        """When to fetch after a fetch started at ``last``; None: no rhythm, use the plain interval."""
        phase = self.phase()
        lag = self.lag()
        if phase is None or lag is None:
            self._aim = None
            return None
        earliest = last + self.every
        offset = lag + self.offset
        # The first stamp not seen yet ...
        k = math.floor(((self._newest if self._newest is not None else last) + self.tolerance - phase)
                       / self.cadence) + 1
        # ... unless fetching it this late would lock every later fetch to the same late moment
        # (fetches can move earlier only by as much as the cadence exceeds `every`): then skip to
        # a later stamp, whose arrival is at most LATE_TOLERANCE before the earliest fetch.
        late = earliest - (phase + k * self.cadence + offset)
        slack = self.cadence - self.every + LATE_TOLERANCE * self.cadence
        if late > slack:
            k += math.ceil((late - slack) / self.cadence)
        stamp = phase + k * self.cadence
        self._aim = Plan(max(earliest, stamp + offset), stamp)
        return self._aim

    # ------------------------------------------------------------------ kept across restarts

    def dump(self) -> dict[str, Any]:
        """What was learned, for the data directory (gateway.saved): a restart need not learn it again."""
        return {"cadence": self.cadence, "offset": self.offset, "stamps": list(self._stamps), "lags": list(self._lags),
                "waits": list(self._waits), "tracked": self._tracked, "descent": self._descent, "newest": self._newest}

    def load(self, doc: object, max_offset: float, now: float) -> bool:
        """Take back what ``dump`` gave. Ignored (False) unless it is for this cadence and every number is
        sane: the data directory is trusted no more than upstream, and a changed config learns afresh.
        ``now`` (Unix seconds): no stamp may lie in the future, or the next fetch would be planned there."""
        if not isinstance(doc, dict) or doc.get("cadence") != self.cadence:
            return False
        limit, soon = MAX_LAG_CADENCES * self.cadence, now + self.cadence
        stamps = _numbers(doc.get("stamps"), STAMPS_KEPT, 0.0, soon)
        lags = _numbers(doc.get("lags"), LAGS_KEPT, -self.tolerance, limit)
        waits = _numbers(doc.get("waits"), STAMPS_KEPT, -self.tolerance, MAX_WAIT_S)
        tracked, newest, offset, descent = doc.get("tracked"), doc.get("newest"), doc.get("offset"), doc.get("descent")
        if (stamps is None or lags is None or waits is None or not _maybe(tracked, 0.0, limit)
                or not _maybe(newest, max(stamps, default=0.0), soon) or not _maybe(offset, 0.0, max_offset)
                or offset is None or not isinstance(descent, int) or isinstance(descent, bool)
                or not -1 <= descent <= 64):
            return False
        self.forget()
        self._stamps.extend(stamps)
        self._lags.extend(lags)
        self._waits.extend(waits)
        self._tracked, self._newest, self.offset, self._descent = tracked, newest, float(offset), descent
        return True

    def describe(self) -> dict[str, float | str | int | None]:
        """For the status page: state, learned phase and lag, hits and misses of planned fetches."""
        phase = self.phase()
        lag = self.lag()
        return {
            "state": self.state,
            "phase_s": round(phase, 1) if phase is not None else None,
            "lag_s": round(lag, 1) if lag is not None else None,
            "lag_from": "last_modified" if len(self._lags) >= MIN_SAMPLES else "hits" if lag is not None else None,
            "next_stamp": self._aim.stamp if self._aim is not None else None,
            "hits": self.hits,
            "misses": self.missed,
        }


def _numbers(value: object, kept: int, low: float, high: float) -> list[float] | None:
    """A list of at most ``kept`` numbers in [low, high], as floats; None for anything else."""
    if not isinstance(value, list) or len(value) > kept or not all(_maybe(v, low, high) and v is not None
                                                                    for v in value):
        return None
    return [float(v) for v in value]


def _maybe(value: object, low: float, high: float) -> bool:
    """None, or a finite number in [low, high]."""
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and low <= value <= high
