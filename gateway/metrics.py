"""Every Prometheus metric of the gateway, declared once, on a registry owned by the instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from gateway import __version__

FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
        self.connected = Gauge("gateway_mqtt_connected", "1 while connected to the broker", registry=r)
        self.reconnects = Counter("gateway_mqtt_reconnects_total", "Successful broker connections after the first",
                                  registry=r)
        self.last_success = Gauge("gateway_source_last_success_timestamp_seconds",
                                  "Unix time of the last successful fetch", ["source"], registry=r)
        self.source_up = Gauge("gateway_source_up", "1 while the source is online", ["source"], registry=r)
        self.entities = Gauge("gateway_entities", "Entities published per source", ["source"], registry=r)
