"""Every Prometheus metric of the gateway, declared once, on a registry owned by the instance."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway import __version__
from gateway.checks import reasons_for

if TYPE_CHECKING:
    from gateway.catalog import SourceSpec

FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
FETCH_OUTCOMES = ("ok", "not_modified", "error")
# Every `kind` a failed fetch can carry (gateway.fetch, adapters' ParseErrors, the app's
# "internal"). Their label sets exist from the start, so memory does not grow with each new
# kind of failure during the first hours; an unlisted kind still works, created when first seen.
FETCH_ERROR_KINDS = (
    "http_4xx", "http_5xx", "http_429", "timeout", "reset", "connection", "http", "too_large",
    "html_page", "content_type", "rate_limited", "redirect", "cancelled", "bad_encoding",
    "parse", "source", "not_json", "bad_json", "bad_schema", "not_found", "not_ics", "not_csv", "upstream_error",
    "internal",
)
CLEAR_REASONS = ("expired", "removed")
PUSH_DROP_REASONS = ("malformed", "too_large", "duplicate", "out_of_order")
# From a second (pushed data) to a day (daily products published hours after their stamp).
DELAY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
                 86400.0)
# Rejection series per entity and reason are created up front only for catalogues up to this
# size: at 100,000 entities they would cost more memory than they save.
PREPARE_MAX_ENTITIES = 2_000


class DataAge(Collector):
    """``gateway_data_age_seconds{source}``: now - the newest observed_at, computed at scrape time.

    The event loop sets each source's newest stamp; the scrape (an HTTP thread) only reads floats,
    so it needs neither the loop nor the store.
    """

    NAME = "gateway_data_age_seconds"
    HELP = "Seconds since the newest observation of the source (now - newest observed_at)"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._newest: dict[str, float] = {}

    def set(self, source: str, newest: datetime | None) -> None:
        if newest is not None:
            self._newest[source] = newest.timestamp()

    def age(self, source: str) -> float | None:
        newest = self._newest.get(source)
        return max(0.0, self._clock() - newest) if newest is not None else None

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["source"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["source"])
        now = self._clock()
        for source, newest in list(self._newest.items()):
            family.add_metric([source], max(0.0, now - newest))
        yield family


class Metrics:
    """The gateway's metrics; one instance per gateway so tests and benches never share state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Info("gateway_build", "Version of the running gateway", registry=r)
        self.build_info.info({"version": __version__})
        self.fetch_duration = Histogram(
            "gateway_fetch_duration_seconds", "Time to fetch and parse one source",
            ["source"], buckets=FETCH_BUCKETS, registry=r)
        self.fetches = Counter("gateway_fetches_total", "Fetch attempts by outcome",
                               ["source", "outcome"], registry=r)
        self.fetch_errors = Counter("gateway_fetch_errors_total", "Failed fetches by error kind",
                                    ["source", "kind"], registry=r)
        self.not_modified = Counter("gateway_http_not_modified_total",
                                    "Conditional requests answered with 304 Not Modified",
                                    ["source"], registry=r)
        self.rejected = Counter("gateway_rejected_readings_total",
                                "Readings not published because they failed a plausibility check",
                                ["source", "entity", "reason"], registry=r)
        self.publishes = Counter("gateway_publishes_total", "MQTT publishes by topic class",
                                 ["kind"], registry=r)
        self.clears = Counter("gateway_retained_clears_total",
                              "Empty retained publishes that removed a value of ours: expired (MQTT 3.1.1, "
                              "in place of message expiry) or removed (no longer in the config)",
                              ["reason"], registry=r)
        for reason in CLEAR_REASONS:
            self.clears.labels(reason=reason)
        self.connected = Gauge("gateway_mqtt_connected", "1 while connected to the broker", registry=r)
        self.reconnects = Counter("gateway_mqtt_reconnects_total", "Successful broker connections after the first",
                                  registry=r)
        self.status_answers = Counter("gateway_status_offline_answered_total",
                                      "Times our status topic said offline while we were connected (a late Last "
                                      "Will of another connection) and we said online again", registry=r)
        # Upstreams that push (gateway.push): the link, what arrived, and what was not published and why.
        self.push_connected = Gauge("gateway_push_connected",
                                    "1 while the source's upstream push link (MQTT subscription) is up",
                                    ["source"], registry=r)
        self.push_messages = Counter("gateway_push_messages_total", "Messages received on upstream push links",
                                     ["source"], registry=r)
        self.push_dropped = Counter("gateway_push_dropped_total",
                                    "Pushed messages not published, by reason (" + ", ".join(PUSH_DROP_REASONS) + ")",
                                    ["source", "reason"], registry=r)
        self.last_success = Gauge("gateway_source_last_success_timestamp_seconds",
                                  "Unix time of the last successful fetch", ["source"], registry=r)
        self.source_up = Gauge("gateway_source_up", "1 while the source is online", ["source"], registry=r)
        self.entities = Gauge("gateway_entities", "Entities published per source", ["source"], registry=r)
        self.notifications = Counter("gateway_notifications_total",
                                     "Platform notifications on /notify/<source>: accepted, or refused as foreign "
                                     "(another subscription id), malformed or standby", ["source", "outcome"],
                                     registry=r)
        self.data_age = DataAge()
        r.register(self.data_age)
        self.publish_delay = Histogram(
            "gateway_publish_delay_seconds",
            "Publish time - observed_at of the newest observation, for each run that brought new data",
            ["source"], buckets=DELAY_BUCKETS, registry=r)
        self.publish_delay_modified = Histogram(
            "gateway_publish_delay_since_modified_seconds",
            "Publish time - upstream's Last-Modified, for each run that brought new data in a response with one",
            ["source"], buckets=DELAY_BUCKETS, registry=r)

    def prepare(self, sources: Iterable[SourceSpec]) -> None:
        """Create the label sets that are otherwise created lazily, at the first error of each kind.

        Counters start at 0, which is their true value; gauges are left until they are first set,
        so an absent series still means "not known yet".
        """
        specs = list(sources)
        per_entity = sum(len(s.entities) for s in specs) <= PREPARE_MAX_ENTITIES
        for spec in specs:
            key = spec.key
            self.fetch_duration.labels(source=key)
            self.publish_delay.labels(source=key)
            self.not_modified.labels(source=key)
            for outcome in FETCH_OUTCOMES:
                self.fetches.labels(source=key, outcome=outcome)
            for kind in FETCH_ERROR_KINDS:
                self.fetch_errors.labels(source=key, kind=kind)
            if per_entity:
                for entity in spec.entities:
                    for reason in reasons_for(entity.measurement):
                        self.rejected.labels(source=key, entity=entity.key, reason=reason)
