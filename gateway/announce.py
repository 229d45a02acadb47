"""Home Assistant discovery over the gateway's life: reconcile at start, re-announce on HA's birth, clear orphans.

The configs themselves are pure data (gateway.discovery); this module decides when they go out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime

from gateway import discovery, topics
from gateway.catalog import Catalog
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from gateway.payloads import iso
from gateway.persist import StateFile
from gateway.retained import RetainedReader

log = logging.getLogger("gateway.app")

RECONCILE_TIMEOUT = 10.0
REGISTRY_FILE = "discovery.json"
# At most this many retained configs beyond our own are remembered while reconciling; a broker
# full of planted configs under our node id must not grow the gateway without bound.
MAX_SEEN_CONFIGS_EXTRA = 10_000
# HA's birth is "online"; anything longer is not one, and comparing it after strip() would let
# "online" + 50 MiB of spaces count.
MAX_BIRTH_PAYLOAD = 64
# What HA needs again after its restart; info and discovery are sent separately.
# HA's request to move an entity to the other discovery schema without removing it.
MIGRATE = b'{"migrate_discovery":true}'
REANNOUNCED = (TopicClass.AVAILABILITY, TopicClass.STATE, TopicClass.ATTRIBUTES, TopicClass.DIAGNOSTIC)


def own_discovery_topic(prefix: str, node_id: str) -> re.Pattern[str]:
    """``<prefix>/<component>/<node_id>/<object_id>/config`` of this gateway, and nothing else."""
    return re.compile(rf"{re.escape(prefix)}/[A-Za-z0-9_-]+/{re.escape(node_id)}/[A-Za-z0-9_-]+/config")


class Announcer:
    """Owns the discovery configs on the broker, and the registry of them in the data directory."""

    def __init__(self, catalog: Catalog, link: MqttLink, registry_file: StateFile | None) -> None:
        self.catalog = catalog
        self.link = link
        mqtt = catalog.settings.mqtt
        self.enabled = mqtt.discovery
        self.birth_delay = mqtt.birth_delay
        self.birth_topic = f"{catalog.prefix}/status"
        # Discovery configs are generated when needed, not kept: at 100,000 entities they would
        # be the biggest thing in memory.
        self.config_count = discovery.config_count(catalog) if self.enabled else 0
        marker = f"{catalog.base}/{topics.GATEWAY}/sync/{secrets.token_hex(6)}"
        self.reader = RetainedReader([f"{catalog.prefix}/+/{catalog.node_id}/+/config"], marker,
                                     limit=self.config_count + MAX_SEEN_CONFIGS_EXTRA)
        self.registry_file = registry_file
        self.registry = self._load_registry()
        self._announce: asyncio.TimerHandle | None = None
        self._announce_by = 0.0  # loop time by which a pending re-announce must have happened

    # ------------------------------------------------------------------ registry (data directory)

    def _load_registry(self) -> set[str]:
        """Our discovery topics from the last run; anything else in the file is never cleared.

        A tampered or foreign discovery.json must not make us delete another integration's
        configs (or zigbee2mqtt's bridge), and one invalid topic must not reach the broker link.
        """
        listed = (self.registry_file.load() if self.registry_file is not None else {}).get("topics")
        if not isinstance(listed, list):
            return set()
        ours = own_discovery_topic(self.catalog.prefix, self.catalog.node_id)
        kept = {t for t in listed if isinstance(t, str) and ours.fullmatch(t)}
        if len(kept) < len(listed):
            log.warning("%s: ignored %d entries that are not discovery topics of node '%s'",
                        self.registry_file.path if self.registry_file else REGISTRY_FILE,
                        len(listed) - len(kept), self.catalog.node_id)
        return kept

    def _save_registry(self, owned: set[str]) -> None:
        """The discovery configs we own, for orphan cleanup at the next start (phase two)."""
        if self.registry_file is not None:
            self.registry_file.save({"saved_at": iso(datetime.now(UTC)), "topics": sorted(owned)})

    # ------------------------------------------------------------------ publishing

    def send_all(self) -> int:
        count = 0
        for topic, payload in discovery.messages(self.catalog):
            self.link.send(topic, payload, TopicClass.DISCOVERY)
            count += 1
        return count

    async def reconcile(self, executor: Executor, stopping: Callable[[], bool]) -> None:
        """Publish only changed configs and clear retained configs of ours that are no longer configured."""
        loop = asyncio.get_running_loop()
        seen = await loop.run_in_executor(executor, self.reader.read, self.link, RECONCILE_TIMEOUT)
        if stopping():
            return
        problem = self.reader.problem
        if seen == {} and self.registry:
            # Configs we published last time are not there: the broker lost its store, or it does not
            # deliver retained messages to wildcard subscriptions. Either way, clearing would be guesswork.
            problem = f"the broker returned none of the {len(self.registry)} discovery configs published before"
            seen = None
        if seen is not None:
            self._migrate_first(set(seen) | self.registry)
        ours: set[str] = set()
        unchanged = 0
        for topic, payload in discovery.messages(self.catalog):
            ours.add(topic)
            if seen is not None and seen.get(topic) == hash(payload):
                unchanged += 1
            else:
                self.link.send(topic, payload, TopicClass.DISCOVERY)
        if seen is None:
            # Phase one only: remember what we published before and no longer own, and clear it
            # on the next start that sees the broker's whole retained store.
            log.warning("could not read the broker's retained discovery configs (%s); published all, "
                        "cleared no orphans", problem)
            self._save_registry(self.registry | ours)
            self.registry = set()
            return
        leftover = (set(seen) | self.registry) - ours
        device_mode = self.catalog.settings.mqtt.discovery_mode == discovery.DEVICE
        # Configs of the other discovery_mode: their entities were migrated above (migrate_first).
        migrated = {t for t in leftover if discovery.is_device_topic(self.catalog.prefix, t) != device_mode}
        for topic in sorted(leftover):
            self.link.publish(topic, b"", TopicClass.DISCOVERY)
        self._save_registry(ours)
        self.registry = set()
        log.info("discovery: %d configs (%d unchanged), %d migrated from %s mode, %d orphaned configs removed",
                 len(ours), unchanged, len(migrated), "entity" if device_mode else "device",
                 len(leftover) - len(migrated))

    def _migrate_first(self, found: set[str]) -> None:
        """HA's migration between discovery schemas: flag the configs of the other mode first.

        Home Assistant then unloads those entities without removing them from its registry when
        their config is cleared, and the configs of this mode (same unique_ids) take them over:
        entity ids, names the user changed and history stay. The order is HA's: flag, new
        configs, clear the old ones (reconcile does the last two).
        """
        device_mode = self.catalog.settings.mqtt.discovery_mode == discovery.DEVICE
        for topic in sorted(found):
            if discovery.is_device_topic(self.catalog.prefix, topic) != device_mode:
                self.link.send(topic, MIGRATE, TopicClass.DISCOVERY)

    # ------------------------------------------------------------------ Home Assistant's birth

    def on_birth(self, payload: bytes) -> None:
        """Debounce HA's birth messages, but re-announce at most 2 × birth_delay after the first.

        Restarting the timer on every birth would let a birth every few seconds postpone the
        re-announce forever. Call on the event loop.
        """
        if not self.enabled or len(payload) > MAX_BIRTH_PAYLOAD or payload.strip().lower() != b"online":
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._announce is None:
            self._announce_by = now + 2 * self.birth_delay
        else:
            self._announce.cancel()
        at = min(now + random.uniform(0.5, 1.0) * self.birth_delay, self._announce_by)
        log.info("Home Assistant came online; re-announcing in %.1fs", at - now)
        self._announce = loop.call_at(at, self._reannounce)

    def _reannounce(self) -> None:
        self._announce = None
        sent = self.send_all() if self.enabled else 0
        sent += self.link.republish(REANNOUNCED)
        log.info("re-announced %d messages to Home Assistant", sent)

    def cancel(self) -> None:
        if self._announce is not None:
            self._announce.cancel()
            self._announce = None
