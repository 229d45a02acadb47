"""The topic contract: every topic the gateway uses, in one table shared by the CLI, docs and tests."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.catalog import Catalog


@dataclass(frozen=True, slots=True)
class TopicRule:
    pattern: str
    direction: str  # "publish" or "subscribe"
    retained: bool
    payload: str
    meaning: str


CONTRACT: tuple[TopicRule, ...] = (
    TopicRule("{base}/gateway/status", "publish", True, "`online` / `offline`",
              "Gateway availability. Also the MQTT Last Will, so it turns `offline` when the gateway dies. "
              "The gateway also reads it: an `offline` there while it is connected (a late Will of another "
              "connection) is answered with `online`."),
    TopicRule("{base}/gateway/info", "publish", True, "JSON",
              "Version, start time, `instance` (this gateway's id) and `role`, city, topic roots, and each source "
              "with its adapter, schedule, `max_age_s`, `expire_after_s`, entities and licence."),
    TopicRule("{base}/gateway/version", "publish", True, "text",
              "The gateway's version (diagnostic entity)."),
    TopicRule("{base}/gateway/started_at", "publish", True, "ISO 8601 timestamp",
              "When the gateway started (the \"Uptime\" diagnostic entity)."),
    TopicRule("{base}/gateway/lease", "publish", True, "JSON",
              "Only with `--standby`: the active instance's heartbeat every `mqtt.lease`/3 (`instance`, `since`, "
              "`lease_s`, `seq`); standby instances watch it and take over after one silent lease."),
    TopicRule("{base}/gateway/refresh", "subscribe", False, "`PRESS`",
              "Command: fetch the sources that are due now (HA's \"Refresh all sources\" button); a source "
              "is refetched only if its last run is older than min(interval, max(60 s, interval / 10)); "
              "retained messages and payloads over 64 bytes are ignored."),
    TopicRule("{base}/{source}/status", "publish", True, "`online` / `offline`",
              "Source availability: `offline` after `failure_threshold` failed fetches in a row, or when "
              "its newest data is older than its `max_age`; a source with `options.mqtt` (push) also while "
              "its push link has been down for `offline_after` "
              "([adapters](adapters.md#upstreams-that-push-sensorthings-over-mqtt))."),
    TopicRule("{base}/{source}/{entity}", "publish", True, "plain value",
              "Latest value: a decimal number (`21.4`), an ISO 8601 timestamp with offset, `ON`/`OFF`, or "
              "enum text. Never `None`: a missing value keeps the last good one. MQTT 5 message expiry "
              "`observed_at + max_age − now` (rounded up, at least 1 s): it leaves the broker when its data "
              "turns stale."),
    TopicRule("{base}/{source}/{entity}/attributes", "publish", True, "JSON",
              "`observed_at`, `fetched_at`, `station` (name, id, position, `distance_m`), `unit`, "
              "`source_url`, `license`, `attribution`, plus notes such as `value_missing_since` or `rejected`. "
              "The same message expiry as its value."),
    TopicRule("{base}/{source}/last_fetch", "publish", True, "ISO 8601 timestamp",
              "Time of the source's last successful fetch (diagnostic entity)."),
    TopicRule("{base}/{source}/fetch_errors", "publish", True, "integer",
              "Failed fetches of the source since the gateway started (diagnostic entity)."),
    TopicRule("{prefix}/{component}/{node_id}/{unique_id}/config", "publish", True, "JSON",
              "Home Assistant discovery config, one per entity. `node_id` is the city slug, "
              "`unique_id` is `<city>_<source>_<entity>`. Cleared (empty payload) when the entity is "
              "removed from topics.yaml."),
    TopicRule("{prefix}/device/{node_id}/{device_id}/config", "publish", True, "JSON",
              "With `mqtt.discovery_mode: device` instead: one config per device (`device_id` is "
              "`<city>_<source>` or `<city>_gateway`) holding its entities as `components`. Cleared when "
              "the source is removed."),
    TopicRule("{prefix}/status", "subscribe", False, "`online`",
              "Home Assistant's birth message: the gateway re-publishes discovery, then states, after a "
              "random delay of 50-100 % of `mqtt.birth_delay`."),
    TopicRule("{base}/gateway/sync/{token}", "publish", False, "`sync`",
              "Internal marker, sent once at start to know when the broker has delivered all retained "
              "discovery configs. Ignore it."),
)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def markdown_table(qos: int = 1) -> str:
    """The contract as the Markdown table that docs/topics.md embeds."""
    lines = ["| topic | direction | retained | QoS | payload | meaning |", "|---|---|---|---|---|---|"]
    for rule in CONTRACT:
        retained = "yes" if rule.retained else "no"
        shown_qos = str(qos) if rule.direction == "publish" else "1 (subscription)"
        lines.append(f"| `{rule.pattern}` | {rule.direction} | {retained} | {shown_qos} | {rule.payload} "
                     f"| {rule.meaning} |")
    return "\n".join(lines)


def rule_regex(rule: TopicRule, base: str, prefix: str) -> re.Pattern[str]:
    """A regex matching the concrete topics of ``rule`` for the given roots."""
    parts: list[str] = []
    last = 0
    for m in _PLACEHOLDER.finditer(rule.pattern):
        parts.append(re.escape(rule.pattern[last:m.start()]))
        name = m.group(1)
        parts.append(re.escape(base) if name == "base" else re.escape(prefix) if name == "prefix"
                     else r"[A-Za-z0-9_-]+")
        last = m.end()
    parts.append(re.escape(rule.pattern[last:]))
    return re.compile("^" + "".join(parts) + "$")


def match(topic: str, base: str, prefix: str) -> TopicRule | None:
    """The contract rule a concrete topic belongs to, or None if it is not in the contract."""
    for rule in CONTRACT:
        if rule_regex(rule, base, prefix).match(topic):
            return rule
    return None


@dataclass(frozen=True, slots=True)
class ConcreteTopic:
    topic: str
    retained: bool
    qos: int
    meaning: str


def expand(catalog: Catalog, discovery_topics: list[str]) -> list[ConcreteTopic]:
    """Every concrete topic the configuration produces, for ``soest-gateway topics``."""
    qos = catalog.settings.mqtt.qos
    out = [
        ConcreteTopic(catalog.gateway_status_topic, True, qos, "gateway availability (Last Will)"),
        ConcreteTopic(catalog.gateway_info_topic, True, qos, "gateway info JSON"),
        ConcreteTopic(catalog.version_topic, True, qos, "gateway version"),
        ConcreteTopic(catalog.started_topic, True, qos, "gateway start time"),
    ]
    if catalog.settings.mqtt.refresh_button:
        out.append(ConcreteTopic(catalog.refresh_topic, False, 1, "subscribed: refresh all sources (PRESS)"))
    for source in catalog.sources.values():
        out.append(ConcreteTopic(source.status_topic, True, qos, f"{source.key} availability"))
        for entity in source.entities:
            unit = f" [{entity.measurement.unit}]" if entity.measurement.unit else ""
            out.append(ConcreteTopic(entity.state_topic, True, qos, f"{entity.name}{unit}"))
            out.append(ConcreteTopic(entity.attributes_topic, True, qos, f"{entity.name}: attributes JSON"))
        out.append(ConcreteTopic(source.last_fetch_topic, True, qos, f"{source.key}: last successful fetch"))
        out.append(ConcreteTopic(source.fetch_errors_topic, True, qos, f"{source.key}: failed fetches"))
    for topic in discovery_topics:
        out.append(ConcreteTopic(topic, True, qos, "Home Assistant discovery config"))
    if catalog.settings.mqtt.discovery:
        out.append(ConcreteTopic(f"{catalog.prefix}/status", False, 1, "subscribed: Home Assistant birth"))
    return out
