"""APScheduler triggers from a source's schedule, with standard crontab weekday numbers, and aligned polling."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from gateway.rhythm import Rhythm, Sighting

if TYPE_CHECKING:
    from gateway.catalog import Catalog, SourceSpec
    from gateway.runs import Outcome, SourceState

# crontab counts weekdays from Sunday = 0 (and 7); APScheduler 3 from Monday = 0. Names avoid the trap.
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NUMERIC = re.compile(r"^([0-9])(?:-([0-9]))?$")
# APScheduler reads any Unicode digit ("١") as a number; a crontab has only these characters.
_FIELD = re.compile(r"^[0-9A-Za-z*/,-]{1,40}$")


def _weekday_field(field: str) -> str:
    parts: list[str] = []
    for token in field.split(","):
        m = _NUMERIC.match(token)
        if not m:
            parts.append(token)
            continue
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        if first > 7 or last > 7 or first > last:
            raise ValueError(f"weekday {token!r} is out of range 0-7")
        parts.extend(_WEEKDAYS[n] for n in range(first, last + 1))
    return ",".join(dict.fromkeys(parts))


def cron_trigger(expr: str, timezone: tzinfo | str, jitter: float | None = None) -> CronTrigger:
    """A trigger for a 5-field crontab expression; raises ValueError for a bad one."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    bad = next((f for f in fields if not _FIELD.match(f)), None)
    if bad is not None:
        raise ValueError(f"field {bad[:40]!r} may hold only digits 0-9, names, '*', '/', ',' and '-'")
    minute, hour, day, month, weekday = fields
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=_weekday_field(weekday),
                       timezone=timezone, jitter=int(jitter) if jitter else None)


def interval_trigger(seconds: float, jitter: float | None = None) -> IntervalTrigger:
    return IntervalTrigger(seconds=seconds, jitter=int(jitter) if jitter and jitter >= 1 else None)


HEARTBEAT_TICK_MAX = 60.0


def source_trigger(spec: SourceSpec, timezone: str) -> BaseTrigger:
    jitter = spec.config.effective_jitter()
    if spec.config.cron is not None:
        return cron_trigger(spec.config.cron, timezone, jitter)
    return interval_trigger(spec.interval, jitter)


def start_scheduler(catalog: Catalog, run_source: Callable[[str], Awaitable[None]],
                    tick: Callable[[], Awaitable[None]]) -> AsyncIOScheduler:
    """One job per source (first run now, never two at once) and the heartbeat tick, on the running loop."""
    settings = catalog.settings
    scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=UTC)
    for key, spec in catalog.sources.items():
        scheduler.add_job(run_source, source_trigger(spec, settings.city.timezone), args=[key], id=key, name=key,
                          max_instances=1, coalesce=True, misfire_grace_time=max(1, int(spec.interval)),
                          next_run_time=datetime.now(UTC))
    every = min(HEARTBEAT_TICK_MAX, max(1.0, settings.mqtt.heartbeat / 4))
    scheduler.add_job(tick, IntervalTrigger(seconds=every), id="_tick", max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler



def rhythm_of(spec: SourceSpec, state: SourceState, rng: random.Random | None = None) -> Rhythm | None:
    """The source's learned rhythm (made at its first run), or None when its schedule is not aligned."""
    if not spec.config.aligned():
        return None
    if state.rhythm is None:
        # The jitter is drawn once: a gateway keeps its moment, and gateways spread over the jitter.
        offset = (rng or random.Random()).uniform(0, spec.config.effective_jitter())
        state.rhythm = Rhythm(spec.config.effective_cadence(), spec.interval, offset)
    return state.rhythm


def aligned_run(spec: SourceSpec, state: SourceState, outcome: Outcome, started: float) -> datetime | None:
    """Aligned polling: learn from a run that began at ``started`` (Unix time); when the next should
    begin, just after upstream's expected update, or None for the plain schedule. Never sooner than
    ``every`` after this run (gateway.rhythm). ``outcome.fetched_at`` is cut to the second: too
    coarse for that bound, hence ``started``."""
    rhythm = rhythm_of(spec, state)
    if rhythm is None or outcome.result not in ("ok", "not_modified"):
        return None
    rhythm.note(Sighting(started, outcome.newest.timestamp() if outcome.newest else None, outcome.news,
                         outcome.modified.timestamp() if outcome.modified else None))
    plan = rhythm.plan(started)
    return datetime.fromtimestamp(plan.at, UTC) if plan is not None else None


def realign(scheduler: AsyncIOScheduler | None, spec: SourceSpec, state: SourceState, outcome: Outcome) -> None:
    """After a run: move the source's job to its aligned time, if it has one (else the interval stays)."""
    when = aligned_run(spec, state, outcome, time.time() - (time.monotonic() - state.last_run))
    job = scheduler.get_job(spec.key) if scheduler is not None and when is not None else None
    if job is not None:
        job.modify(next_run_time=when)


def alignment(spec: SourceSpec, state: SourceState) -> dict[str, Any]:
    """For /api/status: the mode and, for an aligned source, what its rhythm learned."""
    rhythm = rhythm_of(spec, state)
    if rhythm is None:
        return {"mode": "off"}
    info: dict[str, Any] = {"mode": "auto", **rhythm.describe()}
    stamp = info.pop("next_stamp")
    lag = info["lag_s"]
    info["next_update"] = datetime.fromtimestamp(stamp + lag, UTC).isoformat(timespec="seconds") \
        if stamp is not None and lag is not None and info["state"] == "aligned" else None
    return info
