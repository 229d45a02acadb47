"""The retained value topics the gateway owns, remembered in the data directory, so that those of
entities (and sources) removed from the config are cleared instead of staying on the broker forever.

Two phases, as for the discovery registry (gateway.announce): at start the file first gains every
configured topic, before anything is published to it; on the first connect the topics listed
before and no longer configured are cleared, and only once the broker has acknowledged the clears
are they dropped from the file. Nothing is read from the broker and nothing is guessed: a topic is
cleared only because this gateway listed it as its own. Without a data directory there is nothing
to remember, and nothing is cleared.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import Executor
from datetime import UTC, datetime

from gateway import topics
from gateway.catalog import Catalog
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from gateway.payloads import iso
from gateway.persist import StateFile

log = logging.getLogger("gateway.app")

OWNED_FILE = "owned-topics.json"
# Entries beyond the configured topics that are remembered; a planted file of millions of
# topics must not turn a start into millions of publishes. Far above any real config change.
MAX_REMEMBERED_EXTRA = 200_000
# The clears must be acknowledged before they are forgotten; a broker this slow gets them again next start.
FLUSH_TIMEOUT = 10.0
_KEY = "[a-z0-9][a-z0-9_-]{0,63}"  # topics.KEY_RE, which every source and entity key passed
_DIAGNOSTIC = {topics.LAST_FETCH: TopicClass.DIAGNOSTIC, topics.FETCH_ERRORS: TopicClass.DIAGNOSTIC,
               topics.STATUS: TopicClass.AVAILABILITY}


def own_value_topic(base: str) -> re.Pattern[str]:
    """``{base}/<source>/<entity or status leaf>``, never ``{base}/gateway/...``: what the file may name."""
    return re.compile(rf"{re.escape(base)}/(?!{topics.GATEWAY}/){_KEY}/{_KEY}")


def configured_topics(catalog: Catalog) -> set[str]:
    """State topics of every entity and the status topics of every source (attributes follow the states)."""
    out = {e.state_topic for e in catalog.entities()}
    out.update(t for s in catalog.sources.values() for t in (s.status_topic, s.last_fetch_topic,
                                                             s.fetch_errors_topic))
    return out


def clears_for(topic: str) -> list[tuple[str, TopicClass]]:
    """The retained topics to empty for one remembered topic: a state takes its attributes along."""
    cls = _DIAGNOSTIC.get(topic.rsplit("/", 1)[1])
    if cls is not None:
        return [(topic, cls)]
    return [(topic, TopicClass.STATE), (topics.attributes_topic_of(topic), TopicClass.ATTRIBUTES)]


class OwnedTopics:
    """Phase one in the constructor (the file lists what we will publish), phase two in ``clear_orphans``."""

    def __init__(self, catalog: Catalog, file: StateFile | None, metrics: Metrics) -> None:
        self.file = file
        self.ours = configured_topics(catalog)
        self._cleared = metrics.clears.labels(reason="removed")
        listed = self._load(catalog.base)
        self.orphans = sorted(listed - self.ours)
        if not self.ours <= listed:
            self._save(self.ours | listed)

    def _load(self, base: str) -> set[str]:
        """Our value topics from the last runs; anything else in the file is never cleared."""
        listed = (self.file.load() if self.file is not None else {}).get("topics")
        if not isinstance(listed, list):
            return set()
        ours = own_value_topic(base)
        kept = {t for t in listed if isinstance(t, str) and ours.fullmatch(t)}
        if len(kept) < len(listed):
            log.warning("%s: ignored %d entries that are not value topics under '%s'",
                        self.file.path if self.file else OWNED_FILE, len(listed) - len(kept), base)
        extra = sorted(kept - self.ours)
        if len(extra) > MAX_REMEMBERED_EXTRA:
            log.warning("%s: %d topics no longer configured; clearing the first %d",
                        self.file.path if self.file else OWNED_FILE, len(extra), MAX_REMEMBERED_EXTRA)
            kept -= set(extra[MAX_REMEMBERED_EXTRA:])
        return kept

    def _save(self, owned: set[str]) -> None:
        if self.file is not None:
            self.file.save({"saved_at": iso(datetime.now(UTC)), "topics": sorted(owned)})

    async def clear_orphans(self, link: MqttLink, executor: Executor) -> int:
        """Clear the topics of entities no longer configured; after the republish of a connect.

        The clears are kept by the link (re-sent after a reconnect); the file forgets them only
        once the broker has acknowledged them, so a crash in between clears them on the next start.
        Until then every connect calls this again; afterwards it does nothing.
        """
        if not self.orphans:
            return 0
        count = 0
        for topic in self.orphans:
            for name, cls in clears_for(topic):
                link.publish(name, b"", cls)
                count += 1
        self._cleared.inc(count)
        log.info("cleared %d retained topics of %d entities and sources no longer in the config",
                 count, len(self.orphans))
        flushed = await asyncio.get_running_loop().run_in_executor(executor, link.flush, FLUSH_TIMEOUT)
        if flushed and link.connected:
            self._save(self.ours)
            self.orphans = []
        return count
