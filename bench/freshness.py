"""Data age at publish: the fixed interval against aligned polling (issue #13, point 2).

A simulated upstream stamps new data every ``--cadence`` seconds (10 min) and publishes each stamp
3-5 minutes later (uniformly random, ``--lag-min``/``--lag-max``), with ``Last-Modified`` = the
moment of publication (HTTP dates: whole seconds). The gateway fetches it

- **fixed**: every ``cadence`` seconds from a random start, plus APScheduler's jitter (0 to the
  source's default jitter, 30 s at 10 min), as today's schedule does;
- **aligned**: as planned by ``gateway.rhythm.Rhythm``, the code the gateway's scheduler runs
  (``gateway.schedule.aligned_run`` feeds it each run's outcome the same way), once learning from
  ``Last-Modified`` and once from ``observed_at`` alone (an upstream without Last-Modified).

The simulation runs in **virtual time** (no sleeping, no network): days of fetches in a second.
Data age at publish is (fetch time + ``--fetch-s``) - the stamp, for every fetch that brought a
newer stamp. Prints a table and writes bench/results/freshness.json.

    .venv/bin/python bench/freshness.py            # a few seconds
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.rhythm import Rhythm, Sighting, quantile  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "freshness.json"
DEFAULT_JITTER_CAP = 30.0  # gateway.config: min(10 % of the interval, 30 s)


@dataclass(frozen=True)
class Upstream:
    cadence: float
    arrivals: list[float]  # arrivals[k]: when stamp k * cadence became available

    def newest(self, t: float) -> tuple[float | None, float | None]:
        """(stamp, Last-Modified) of the newest data available at ``t``."""
        k = math.floor(t / self.cadence) + 1
        while k >= 0 and (k >= len(self.arrivals) or self.arrivals[k] > t):
            k -= 1
        if k < 0:
            return None, None
        return k * self.cadence, float(math.floor(self.arrivals[k]))


def make_upstream(rng: random.Random, cadence: float, lag_min: float, lag_max: float, days: float) -> Upstream:
    count = int(days * 86400 / cadence) + 2
    return Upstream(cadence, [k * cadence + rng.uniform(lag_min, lag_max) for k in range(count)])


def interval_next(rng: random.Random, every: float, jitter: float) -> Callable[[float], float]:
    """APScheduler's IntervalTrigger: the previous run + the interval + uniform(0, jitter)."""
    return lambda last: last + every + rng.uniform(0, jitter)


def simulate(upstream: Upstream, mode: str, rng: random.Random, every: float, jitter: float, days: float,
             fetch_s: float) -> dict[str, Any]:
    end = days * 86400
    rhythm = Rhythm(upstream.cadence, every, rng.uniform(0, jitter))
    plain = interval_next(rng, every, jitter)
    t = first = rng.uniform(0, every)
    published: float | None = None
    ages: list[float] = []
    requests = 0
    area = 0.0  # the integral of the broker's data age over time, for the time-averaged age
    since = t
    while t < end:
        requests += 1
        stamp, modified = upstream.newest(t)
        news = stamp is not None and (published is None or stamp > published)
        if published is not None:
            area += ((t - published) ** 2 - (since - published) ** 2) / 2
        since = t
        if news:
            published = stamp
            ages.append(t + fetch_s - stamp)  # type: ignore[operator]
        if mode == "fixed":
            t = plain(t)
            continue
        rhythm.note(Sighting(t, published, news, modified if news and mode == "aligned_last_modified" else None))
        plan = rhythm.plan(t)
        t = plan.at if plan is not None else plain(t)
    settle = 6 * 3600 / upstream.cadence  # the first hours are learning; report the steady state too
    steady = ages[int(settle):]
    return {
        "mode": mode,
        "publishes": len(ages),
        "requests_per_hour": round(requests / (end / 3600), 3),
        "p50_s": round(statistics.median(ages), 1),
        "p95_s": round(quantile(ages, 0.95), 1),
        "steady_p50_s": round(statistics.median(steady), 1),
        "steady_p95_s": round(quantile(steady, 0.95), 1),
        "mean_age_s": round(area / (since - first), 1),
        "ages": ages,
        "hit_rate": round(rhythm.hits / max(1, rhythm.hits + rhythm.missed), 3) if mode != "fixed" else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cadence", type=float, default=600.0)
    parser.add_argument("--lag-min", type=float, default=180.0)
    parser.add_argument("--lag-max", type=float, default=300.0)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fetch-s", type=float, default=0.3, help="fetch and publish duration")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    every = args.cadence
    jitter = min(every * 0.1, DEFAULT_JITTER_CAP)
    modes = ("fixed", "aligned_last_modified", "aligned_observed_at")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for seed in range(args.seeds):
        upstream = make_upstream(random.Random(seed), args.cadence, args.lag_min, args.lag_max, args.days)
        for mode in modes:
            runs[mode].append(simulate(upstream, mode, random.Random(1000 + seed), every, jitter, args.days,
                                       args.fetch_s))
    target = args.cadence / 2 + 30
    rows = []
    for mode in modes:
        rs = runs[mode]
        pooled = [a for r in rs for a in r.pop("ages")]  # all seeds: gateways with different jitter offsets
        row = {"mode": mode, "p50_s": round(statistics.median(pooled), 1), "p95_s": round(quantile(pooled, 0.95), 1),
               **{k: round(statistics.median(r[k] for r in rs), 3)
                  for k in ("requests_per_hour", "steady_p50_s", "steady_p95_s", "mean_age_s")}}
        if mode != "fixed":
            row["hit_rate"] = round(statistics.median(r["hit_rate"] for r in rs), 3)
        rows.append(row)
    fixed_p50 = rows[0]["p50_s"]
    print(f"upstream: every {args.cadence:g} s, published {args.lag_min:g}-{args.lag_max:g} s late; "
          f"{args.days:g} days x {args.seeds} seeds (p50/p95 of all seeds' publishes; the rest medians of the seeds)")
    print(f"{'mode':24} {'req/h':>6} {'p50 s':>7} {'p95 s':>7} {'steady p50':>11} {'steady p95':>11} {'hits':>5}"
          f" {'mean age':>8}  target p50")
    for row in rows:
        ok = "" if row["mode"] == "fixed" else (
            "ok" if row["p50_s"] <= target and row["p50_s"] < fixed_p50 else "MISSED")
        print(f"{row['mode']:24} {row['requests_per_hour']:6.2f} {row['p50_s']:7.0f} {row['p95_s']:7.0f} "
              f"{row['steady_p50_s']:11.0f} {row['steady_p95_s']:11.0f} {row.get('hit_rate') or '':>5}"
              f" {row['mean_age_s']:8.0f}  {ok}")
    doc = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "simulation": "virtual time, gateway.rhythm.Rhythm as the gateway's scheduler uses it",
        "upstream": {"cadence_s": args.cadence, "lag_s": [args.lag_min, args.lag_max], "days": args.days,
                     "seeds": args.seeds},
        "every_s": every, "jitter_s": jitter, "fetch_s": args.fetch_s,
        "target_p50_s": target,
        "results": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
