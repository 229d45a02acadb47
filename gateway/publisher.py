"""The last stage of a run: an Outcome onto the broker, and into the metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from gateway.catalog import SourceSpec
from gateway.expiry import Expiry
from gateway.history import History
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from gateway.runs import Outcome, availability
from gateway.store import Store

log = logging.getLogger("gateway.app")


class Publisher:
    """Publishes what the pipeline decided; it decides nothing itself."""

    def __init__(self, link: MqttLink, metrics: Metrics, expiry: Expiry) -> None:
        self.link = link
        self.metrics = metrics
        self.lifetimes = expiry  # when each value's life ends; it stands in for MQTT 5 expiry under 3.1.1
        self.history = History()  # the last day, for the status page's pictures

    def _values(self, spec: SourceSpec, messages: Iterable[tuple[str, bytes]], cls: TopicClass) -> None:
        """States or attributes, each with its remaining life as message expiry; stale ones not at all."""
        wall = time.time()
        fresh, ends = self.lifetimes.ends(spec, messages, wall)
        if fresh:
            self.link.publish_many(fresh, cls, ends)
            self.lifetimes.sent(spec, ends, wall)

    def restored(self, spec: SourceSpec, states: list[tuple[str, bytes]]) -> None:
        """Fresh values from the data directory, back on the broker before the first fetch."""
        self._values(spec, states, TopicClass.STATE)

    def publish(self, spec: SourceSpec, outcome: Outcome) -> bool:
        """Send the outcome's messages in order (values, diagnostics, availability); True if states went out."""
        key = spec.key
        values = outcome.values
        self._values(spec, values.states, TopicClass.STATE)
        self._values(spec, values.attributes, TopicClass.ATTRIBUTES)
        for entity, reason in values.rejected:
            self.metrics.rejected.labels(source=key, entity=entity.key, reason=reason).inc()
            log.info("%s.%s: value rejected, not published (%s)", key, entity.key, reason)
        self._count(key, outcome)
        self._age(key, outcome)
        for topic, payload in outcome.diagnostics:
            self.link.publish(topic, payload, TopicClass.DIAGNOSTIC)
        if outcome.online is not None:
            self.set_available(spec, outcome.online)
        return bool(values.states)

    def set_available(self, spec: SourceSpec, online: bool) -> None:
        self.metrics.source_up.labels(source=spec.key).set(1 if online else 0)
        topic, payload = availability(spec, online)
        self.link.publish(topic, payload, TopicClass.AVAILABILITY)

    def _count(self, key: str, outcome: Outcome) -> None:
        if outcome.result is None:
            return
        self.metrics.fetches.labels(source=key, outcome=outcome.result).inc()
        if outcome.result == "not_modified":
            self.metrics.not_modified.labels(source=key).inc()
        if outcome.error_kind is not None:
            self.metrics.fetch_errors.labels(source=key, kind=outcome.error_kind).inc()
        if outcome.fetched_at is not None:
            self.metrics.last_success.labels(source=key).set(outcome.fetched_at.timestamp())

    def _age(self, key: str, outcome: Outcome) -> None:
        """Data age and, for a run with news, how late its newest observation reached the broker."""
        self.metrics.data_age.set(key, outcome.newest)
        now = time.time()
        for topic, payload in outcome.values.states:
            self.history.value(topic, payload, now)
        if outcome.result is not None:
            self.history.fetch(key, outcome.result, self.metrics.data_age.age(key), now)
        if not outcome.news or outcome.newest is None:
            return
        self.metrics.publish_delay.labels(source=key).observe(max(0.0, now - outcome.newest.timestamp()))
        if outcome.modified is not None:
            self.metrics.publish_delay_modified.labels(source=key).observe(
                max(0.0, now - outcome.modified.timestamp()))

    def heartbeat(self, spec: SourceSpec, store: Store, mono: float, now: datetime) -> None:
        """Re-send unchanged fresh states; stop keeping stale ones for the next connect."""
        # Also the data age of values restored from the data directory, before their first fetch.
        self.metrics.data_age.set(spec.key, store.newest_observed(spec))
        # A heartbeat carries what is left of the value's life, not a new one: it never makes data newer.
        self._values(spec, store.due_for_heartbeat((spec,), mono, now), TopicClass.STATE)
        stale = store.stale(spec, now)
        if stale:
            self.link.forget([e.state_topic for e in stale], TopicClass.STATE)
            self.link.forget([e.attributes_topic for e in stale], TopicClass.ATTRIBUTES)
            store.mark_unsent(stale)
