"""Every Prometheus metric of the gateway, declared once, on a registry owned by the instance."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

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
# Rejection series per entity and reason are created up front only for catalogues up to this
# size: at 100,000 entities they would cost more memory than they save.
PREPARE_MAX_ENTITIES = 2_000


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
            self.not_modified.labels(source=key)
            for outcome in FETCH_OUTCOMES:
                self.fetches.labels(source=key, outcome=outcome)
            for kind in FETCH_ERROR_KINDS:
                self.fetch_errors.labels(source=key, kind=kind)
            if per_entity:
                for entity in spec.entities:
                    for reason in reasons_for(entity.measurement):
                        self.rejected.labels(source=key, entity=entity.key, reason=reason)
