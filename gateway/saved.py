"""The last values in the data directory: put back on the broker when serving starts, saved on ticks and at exit."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog
from gateway.mqtt import MqttLink
from gateway.payloads import iso
from gateway.persist import StateFile
from gateway.publisher import Publisher
from gateway.runs import SourceState
from gateway.schedule import rhythm_of
from gateway.store import Store

log = logging.getLogger("gateway.app")


class SavedValues:
    """``state.json`` of one gateway; with no data directory every method does nothing.

    Besides the values: when each one expires on the broker, and each aligned source's learned
    update rhythm (gateway.rhythm), so that a restart polls on time from the first fetch on.
    """

    def __init__(self, catalog: Catalog, store: Store, sources: Mapping[str, SourceState], link: MqttLink,
                 publisher: Publisher, directory: Path | None) -> None:
        self.catalog = catalog
        self.store = store
        self.sources = sources
        self.link = link
        self.publisher = publisher
        self.file = StateFile(directory) if directory is not None else None

    def restore(self) -> None:
        """Fresh saved values into the store and the outbox (they go out on the next connect)."""
        if self.file is None:
            return
        saved = self.file.load()
        # When each value left on the broker expires: under MQTT 3.1.1 the gateway clears it then.
        self.publisher.lifetimes.restore(self.catalog.sources.values(), saved.get("expires"))
        self._restore_rhythms(saved.get("rhythms"))
        entities = saved.get("entities")
        if not isinstance(entities, dict):
            return
        restored = self.store.restore(self.catalog.sources.values(), entities, time.monotonic(), datetime.now(UTC))
        for spec, messages in restored:
            self.publisher.restored(spec, messages)
        count = sum(len(m) for _, m in restored)
        if count:
            log.info("restored %d fresh values from %s", count, self.file.path)

    def _restore_rhythms(self, saved: object) -> None:
        if not isinstance(saved, dict):
            return
        restored = []
        for key, doc in saved.items():
            spec, state = self.catalog.sources.get(key), self.sources.get(key)
            rhythm = rhythm_of(spec, state) if spec is not None and state is not None else None
            if rhythm is not None and rhythm.load(doc, spec.config.effective_jitter(), time.time()):
                restored.append(f"{key} ({rhythm.state})")
        if restored:
            log.info("restored the learned update rhythm of %s", ", ".join(restored))

    def doc(self) -> dict[str, Any]:
        """Built on the event loop, which owns the store; only writing the file may happen elsewhere."""
        sources = self.catalog.sources.values()
        return {"saved_at": iso(datetime.now(UTC)), "entities": self.store.dump(sources),
                "expires": self.publisher.lifetimes.dump(sources),
                "rhythms": {k: s.rhythm.dump() for k, s in self.sources.items() if s.rhythm is not None}}

    def save(self) -> None:
        if self.file is not None:
            self.file.save(self.doc())
