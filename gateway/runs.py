"""One run of one source, after the fetch: check → store → the Outcome to publish. No broker, no clock.

``settle`` turns what the fetch produced (readings, a 304 or an error) into an ``Outcome``: the
messages to publish, the rejections, the availability change and the metric events. The event
loop owns the store, so this runs there; the caller publishes the outcome and counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import requests

from gateway import topics
from gateway.adapter_api import AdapterOptions
from gateway.catalog import Catalog, SourceSpec
from gateway.checks import check_time, judge
from gateway.errors import SourceError
from gateway.fetch import DEFAULT_MAX_BYTES, HostPolicy, Validators, http_date, make_session
from gateway.payloads import encode_value, iso
from gateway.pipeline import Collected, collect, parse
from gateway.records import Reading
from gateway.rhythm import Rhythm
from gateway.store import Outgoing, Store
from gateway.units import REFUSED, UNKNOWN_UNIT

log = logging.getLogger("gateway.app")

Message = tuple[str, bytes]


@dataclass(slots=True)
class SourceState:
    """Runtime health of one source."""

    session: requests.Session = field(default_factory=make_session)
    validators: Validators = field(default_factory=Validators)
    online: bool | None = None
    failures: int = 0
    errors_total: int = 0
    last_success: datetime | None = None
    last_error: str | None = None
    runs: int = 0
    options: AdapterOptions | None = None
    body: bytes | None = None
    url: str = ""
    last_run: float = float("-inf")  # time.monotonic() when the last run started
    link_down: str | None = None  # why an upstream push link (gateway.push) counts as an outage, or None
    rhythm: Rhythm | None = None  # upstream's learned update rhythm, for aligned polling (gateway.schedule)


@dataclass(slots=True)
class Outcome:
    """What one run (or re-evaluation) of a source changes outside the store."""

    source: str
    result: str | None = None  # "ok", "not_modified" or "error"; None for a re-evaluation
    error_kind: str | None = None
    fetched_at: datetime | None = None
    values: Outgoing = field(default_factory=Outgoing)
    diagnostics: list[Message] = field(default_factory=list)
    online: bool | None = None  # set when the source's availability changed
    newest: datetime | None = None  # the source's newest observed_at after a successful run
    news: bool = False  # the run brought data newer than the source had (what publish delay measures)
    modified: datetime | None = None  # upstream's Last-Modified, when the response brought news


def evaluate(spec: SourceSpec, store: Store, readings: Sequence[Reading], fetched_at: datetime,
             source_url: str, mono: float) -> Outgoing:
    """Check every reading against its measurement, then store it; returns what must go out."""
    out = Outgoing()
    for reading in readings:
        for entity in spec.by_field.get(reading.field, ()):
            previous = store.entities.get(entity.state_topic)
            rejected = None
            if encode_value(reading.value) is not None:
                rejected = judge(reading.value, reading.observed_at, entity.measurement,
                                 previous.number if previous else None,
                                 previous.observed_at if previous else None, fetched_at)
            elif REFUSED in reading.attributes:  # no value to judge, but a refusal to count (the last good one stays)
                out.rejected.append((entity, UNKNOWN_UNIT))
            store.put(spec, entity, reading, rejected, fetched_at, source_url, mono, out)
    return out


def succeeded(spec: SourceSpec, state: SourceState, store: Store, fetched_at: datetime, result: str,
              values: Outgoing | None = None) -> Outcome:
    state.failures = 0
    state.last_success = fetched_at
    state.last_error = None
    outcome = Outcome(spec.key, result, fetched_at=fetched_at, values=values or Outgoing())
    outcome.diagnostics.append((spec.last_fetch_topic, (iso(fetched_at) or "").encode()))
    outcome.newest = store.newest_observed(spec)
    outcome.online = status_change(spec, state, store, fetched_at, outcome.newest)
    return outcome


def failed(spec: SourceSpec, state: SourceState, kind: str, detail: str, retry_after: float | None) -> Outcome:
    state.failures += 1
    state.errors_total += 1
    state.last_error = f"{kind}: {detail}"
    outcome = Outcome(spec.key, "error", error_kind=kind)
    outcome.diagnostics.append((spec.fetch_errors_topic, str(state.errors_total).encode()))
    if retry_after:
        log.info("%s: upstream asked to retry after %.0fs", spec.key, retry_after)
    level = logging.WARNING if state.failures in (1, spec.config.failure_threshold) else logging.DEBUG
    log.log(level, "%s: fetch failed (%s), %d in a row", spec.key, state.last_error, state.failures)
    if state.failures >= spec.config.failure_threshold:
        outcome.online = set_online(spec, state, False, f"{state.failures} failed fetches")
        # Looked-up ids may have changed upstream: look them up again next time.
        state.options = None
    return outcome


def status_change(spec: SourceSpec, state: SourceState, store: Store, now: datetime,
                  newest: datetime | None = None) -> bool | None:
    """Online while the newest value is younger than max_age; returns the new status if it changed."""
    if state.link_down is not None:  # a source that promises push is down while its push link is
        return set_online(spec, state, False, state.link_down)
    newest = newest or store.newest_observed(spec)
    if newest is None:
        return set_online(spec, state, state.online is True and state.failures == 0, "no values yet")
    age = (now - newest).total_seconds()
    return set_online(spec, state, age <= spec.max_age, f"data is {age:.0f}s old (max {spec.max_age:g}s)")


def set_online(spec: SourceSpec, state: SourceState, online: bool, why: str) -> bool | None:
    if state.online is online:
        return None
    state.online = online
    if online:
        log.info("%s: online", spec.key)
    else:
        log.warning("%s: offline (%s)", spec.key, why)
    return online


def availability(spec: SourceSpec, online: bool) -> Message:
    return spec.status_topic, (topics.ONLINE if online else topics.OFFLINE).encode()


def as_of_fetch(readings: Sequence[Reading], fetched: datetime) -> list[Reading]:
    """Readings of a re-parsed body, none newer than its fetch.

    A reading whose timestamp failed its check at the fetch (from the future) was rejected and
    counted then; moving it to the fetch time would publish it after all, on the next tick.
    """
    return [r if r.observed_at <= fetched else replace(r, observed_at=fetched)
            for r in readings if check_time(r.observed_at, fetched) is None]


def settle_error(spec: SourceSpec, state: SourceState, exc: BaseException) -> Outcome:
    """A fetch that raised: a SourceError is upstream's fault; anything else is an adapter bug, kept inside."""
    if isinstance(exc, SourceError):
        return failed(spec, state, exc.kind, str(exc), getattr(exc, "retry_after", None))
    log.error("%s: adapter failed unexpectedly", spec.key, exc_info=exc)
    return failed(spec, state, "internal", f"{type(exc).__name__}: {exc}", None)


def settle(spec: SourceSpec, state: SourceState, store: Store, result: Collected, fetched_at: datetime,
           mono: float) -> Outcome:
    """Take a fetch's result into the state and store."""
    state.options = result.options
    state.validators = result.validators
    if result.readings is None:
        return succeeded(spec, state, store, fetched_at, "not_modified")
    state.url = result.url
    state.body = result.body if spec.adapter.reevaluate else None
    before = store.newest_observed(spec)
    try:
        values = evaluate(spec, store, result.readings, fetched_at, result.url, mono)
    except Exception as exc:  # an adapter handing over something unpublishable
        log.exception("%s: could not publish readings", spec.key)
        return failed(spec, state, "internal", f"{type(exc).__name__}: {exc}", None)
    outcome = succeeded(spec, state, store, fetched_at, "ok", values)
    outcome.news = outcome.newest is not None and (before is None or outcome.newest > before)
    if outcome.news:
        outcome.modified = http_date(result.validators.last_modified)
    return outcome


def run_once(spec: SourceSpec, state: SourceState, store: Store, fetched_at: datetime, mono: float,
             policy: HostPolicy | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> Outcome:
    """Fetch, parse, check and store one source once; the whole step without a broker (for tests and tools)."""
    state.runs += 1
    state.last_run = mono
    try:
        result = collect(spec, state.session, state.options, state.validators, fetched_at, policy, max_bytes)
    except Exception as exc:
        return settle_error(spec, state, exc)
    return settle(spec, state, store, result, fetched_at, mono)


def reevaluate(spec: SourceSpec, state: SourceState, store: Store, now: datetime, mono: float) -> Outgoing | None:
    """Parse the last body again: some values change with time alone (expiring warnings)."""
    fetched = state.last_success or now
    try:
        readings = parse(spec.adapter, state.body or b"", state.options or spec.options, now)
    except SourceError:
        return None
    # The body is as old as its fetch: a re-evaluation must not make it look newer.
    return evaluate(spec, store, as_of_fetch(readings, fetched), fetched, state.url, mono)


class FirstRuns:
    """Progress lines while every source has its first run: what a new user watches."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._done: set[str] = set()
        self._published = 0  # entities with a value, of the sources tried so far
        self._total = len(catalog.entities())

    def done(self, key: str, store: Store) -> None:
        """Counted per source, once: a scan of the whole store per source would cost sources × entities."""
        if key in self._done:
            return
        self._done.add(key)
        for entity in self._catalog.sources[key].entities:
            st = store.entities.get(entity.state_topic)
            self._published += st is not None and st.text is not None
        log.info("first run: %d/%d sources tried, %d/%d entities have values", len(self._done),
                 len(self._catalog.sources), self._published, self._total)
