"""The learned update rhythm (gateway.rhythm), in virtual time: phase, lag, the request budget, fallbacks."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from gateway.rhythm import MAX_MISSES, Rhythm, Sighting, grid_phase, quantile

CADENCE = 600.0
T0 = 1_780_000_200.0  # a multiple of 600: stamps at T0 + k * 600


@dataclass
class Upstream:
    """Stamps every ``cadence`` s from ``phase``, each available ``lag(k)`` s later; Last-Modified optional."""

    lags: list[float]
    phase: float = 0.0
    cadence: float = CADENCE
    last_modified: bool = True
    published: float | None = None
    fetches: list[float] = field(default_factory=list)
    ages: list[float] = field(default_factory=list)

    def stamp(self, k: int) -> float:
        return T0 + self.phase + k * self.cadence

    def seen(self, t: float) -> Sighting:
        """What a fetch at ``t`` sees, and the data age if it brought news."""
        self.fetches.append(t)
        k = math.floor((t - T0 - self.phase) / self.cadence) + 1
        while k >= 0 and (k >= len(self.lags) or self.stamp(k) + self.lags[k] > t):
            k -= 1
        newest = self.stamp(k) if k >= 0 else None
        news = newest is not None and (self.published is None or newest > self.published)
        if news:
            self.published = newest
            self.ages.append(t - newest)  # type: ignore[operator]
        modified = float(math.floor(self.stamp(k) + self.lags[k])) if news and self.last_modified else None
        return Sighting(t, self.published, news, modified)


def run(rhythm: Rhythm, upstream: Upstream, until: float, start: float = T0 + 17.0) -> None:
    """Fetch as the gateway does: aligned when the rhythm has a plan, the plain interval otherwise."""
    t = start
    while t < until:
        rhythm.note(upstream.seen(t))
        plan = rhythm.plan(t)
        t = plan.at if plan is not None else t + rhythm.every


def lags(seed: int, count: int, low: float = 180.0, high: float = 300.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]


DAY = 86400.0


def test_last_modified_puts_fetches_just_after_the_update():
    up = Upstream(lags(1, 200))
    rhythm = Rhythm(CADENCE, CADENCE, offset=10.0)
    run(rhythm, up, T0 + DAY / 2)
    assert rhythm.state == "aligned"
    assert rhythm.describe()["lag_from"] == "last_modified"
    lag = rhythm.lag()
    assert lag is not None
    assert 280 <= lag <= 300
    steady = up.ages[10:]
    # Fixed polling would publish at lag + up to 600 s; aligned at about the 95th lag percentile + offset.
    assert sorted(steady)[int(0.9 * len(steady))] <= 300 + 10 + 1
    assert sorted(steady)[len(steady) // 2] <= CADENCE / 2 + 30


def test_without_last_modified_hits_and_misses_find_the_lag():
    up = Upstream(lags(2, 400), last_modified=False)
    rhythm = Rhythm(CADENCE, CADENCE)
    run(rhythm, up, T0 + 2 * DAY)
    assert rhythm.state == "aligned"
    assert rhythm.describe()["lag_from"] == "hits"
    steady = up.ages[40:]
    assert sorted(steady)[len(steady) // 2] <= CADENCE / 2 + 30
    assert rhythm.hits / (rhythm.hits + rhythm.missed) >= 0.85


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("last_modified", [True, False])
def test_never_sooner_than_every(seed: int, last_modified: bool):
    # Whatever upstream does (regular, late, irregular, stopping), fetches stay >= every apart.
    rng = random.Random(seed)
    count = 300
    kinds = [lags(seed, count), [rng.uniform(0, 2 * CADENCE) for _ in range(count)],
             lags(seed, count // 3) + [1e9] * (count - count // 3)]
    for lag_list in kinds:
        up = Upstream(lag_list, phase=rng.uniform(0, CADENCE), last_modified=last_modified)
        rhythm = Rhythm(CADENCE, CADENCE, offset=rng.uniform(0, 30))
        run(rhythm, up, T0 + DAY)
        gaps = [b - a for a, b in zip(up.fetches, up.fetches[1:], strict=False)]
        assert min(gaps) >= CADENCE - 1e-6
        # So in any hour at most as many requests as the plain interval makes: 3600 / 600 + 1.
        for i, t in enumerate(up.fetches):
            assert sum(1 for u in up.fetches[i:] if u < t + 3600) <= 7


def test_irregular_stamps_fall_back_to_the_interval():
    rhythm = Rhythm(CADENCE, CADENCE)
    rng = random.Random(3)
    t = T0
    for _ in range(10):
        t += CADENCE
        rhythm.note(Sighting(t, t - rng.uniform(0, 500), True))
        assert rhythm.plan(t) is None
    assert rhythm.state == "irregular"


def test_data_stamped_at_fetch_time_has_no_rhythm():
    # The sun (computed locally) or an upstream without timestamps: observed_at is the fetch time.
    rhythm = Rhythm(60.0, 60.0)
    for k in range(10):
        t = T0 + 60.0 * k
        rhythm.note(Sighting(t, t, True))
        assert rhythm.plan(t) is None


def test_too_few_samples_use_the_interval():
    up = Upstream(lags(4, 10))
    rhythm = Rhythm(CADENCE, CADENCE)
    t = T0 + 5
    for _ in range(2):
        rhythm.note(up.seen(t))
        assert rhythm.plan(t) is None
        assert rhythm.state == "learning"
        t += CADENCE


def test_a_shifted_upstream_is_learned_again():
    # Upstream moves its publication 5 minutes later: planned fetches miss, the rhythm is
    # forgotten after MAX_MISSES, and the new phase is learned.
    early = lags(5, 60, 60, 90)
    late = lags(6, 200, 360, 390)
    up = Upstream(early + late[60:])
    rhythm = Rhythm(CADENCE, CADENCE)
    run(rhythm, up, T0 + 60 * CADENCE)
    assert rhythm.lag() is not None
    assert rhythm.lag() < 100
    run(rhythm, up, T0 + 150 * CADENCE, start=up.fetches[-1] + CADENCE)
    assert rhythm.state == "aligned"
    lag = rhythm.lag()
    assert lag is not None
    assert 360 <= lag <= 391
    assert rhythm.missed >= 1


def test_upstream_that_stops_updating_falls_back():
    up = Upstream(lags(7, 20) + [1e9] * 100)
    rhythm = Rhythm(CADENCE, CADENCE)
    run(rhythm, up, T0 + 20 * CADENCE)
    assert rhythm.state == "aligned"
    for _ in range(MAX_MISSES):
        plan = rhythm.plan(up.fetches[-1])
        assert plan is not None
        rhythm.note(up.seen(plan.at))
    assert rhythm.plan(up.fetches[-1]) is None
    assert rhythm.state == "learning"


def test_hourly_upstream_polled_every_15_minutes_waits_for_the_next_stamp():
    # cadence > every: after a hit the next fetch waits for the next stamp; after a miss it retries after `every`.
    hour = 3600.0
    up = Upstream(lags(8, 100, 1200, 1500), cadence=hour)
    rhythm = Rhythm(hour, 900.0)
    run(rhythm, up, T0 + 2 * DAY)
    assert rhythm.state == "aligned"
    per_hour = len([t for t in up.fetches if t > T0 + DAY]) / 24
    assert per_hour < 1.5  # the plain interval makes 4
    late = Upstream([1e9] * 100, cadence=hour)
    plan = rhythm.plan(up.fetches[-1])
    assert plan is not None
    rhythm.note(late.seen(plan.at))  # a miss: nothing new
    retry = rhythm.plan(plan.at)
    assert retry is not None
    assert retry.at == pytest.approx(plan.at + 900.0)


def test_implausible_last_modified_is_ignored():
    rhythm = Rhythm(CADENCE, CADENCE)
    for k in range(5):
        stamp = T0 + k * CADENCE
        # A server that sends the time of the request, or a date from the last century.
        rhythm.note(Sighting(stamp + 250, stamp, True, stamp + 86400 * 30 if k % 2 else 0.0))
    assert rhythm.describe()["lag_from"] == "hits"


def test_grid_phase_across_the_wrap():
    assert grid_phase([599.0, 1201.0, 1799.5], 600.0, 2.0) == pytest.approx(599.83, abs=0.01)
    assert grid_phase([0.0, 300.0, 600.0], 600.0, 2.0) is None


def test_quantile():
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert quantile([1.0, 2.0], 0.95) == pytest.approx(1.95)


def learned(last_modified: bool = True) -> tuple[Rhythm, Upstream]:
    up = Upstream(lags(7, 100), last_modified=last_modified)
    rhythm = Rhythm(CADENCE, CADENCE, offset=10.0)
    run(rhythm, up, T0 + DAY / 4)
    return rhythm, up


@pytest.mark.parametrize("last_modified", [True, False])
def test_a_dumped_rhythm_is_the_same_rhythm_after_loading(last_modified: bool):
    rhythm, _ = learned(last_modified)
    doc = rhythm.dump()
    back = Rhythm(CADENCE, CADENCE, offset=55.0)
    assert back.load(doc, max_offset=60.0, now=T0 + DAY / 4)
    assert back.dump() == doc  # the offset too: a gateway keeps its moment across restarts
    assert (back.state, back.phase(), back.lag()) == (rhythm.state, rhythm.phase(), rhythm.lag())
    last = T0 + DAY / 4
    assert back.plan(last) == rhythm.plan(last)


def test_a_saved_rhythm_for_another_cadence_is_learned_afresh():
    rhythm, _ = learned()
    other = Rhythm(300.0, 300.0)
    assert not other.load(rhythm.dump(), max_offset=60.0, now=T0 + DAY / 4)
    assert other.state == "learning"


@pytest.mark.parametrize("change", [
    {"stamps": "12"}, {"stamps": [1.0] * 13}, {"stamps": [1.0, math.nan]}, {"lags": [True, 1.0, 2.0]},
    {"lags": [1e12]}, {"waits": None}, {"tracked": -5.0}, {"tracked": 1e9}, {"newest": "soon"},
    {"offset": -1.0}, {"offset": 61.0}, {"offset": None}, {"descent": 1.5}, {"descent": 10_000},
    # Stamps in the future would plan the next fetch there, and nothing before it would correct them.
    {"newest": T0 + DAY / 4 + 365 * DAY}, {"stamps": [T0 + DAY], "newest": T0 + DAY}, {"newest": T0},
    {"waits": [-1000.0]}, {"waits": [1e12]},
])
def test_a_tampered_saved_rhythm_is_ignored(change: dict):
    rhythm, _ = learned()
    fresh = Rhythm(CADENCE, CADENCE, offset=5.0)
    assert not fresh.load({**rhythm.dump(), **change}, max_offset=60.0, now=T0 + DAY / 4)
    assert (fresh.state, fresh.offset) == ("learning", 5.0)
    assert not fresh.load("not a dict", max_offset=60.0, now=T0 + DAY / 4)
