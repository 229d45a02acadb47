"""The topic filters a connection wants, and what the broker answered to each (SUBACK).

A refused subscription is retried with backoff, at QoS 0 on every second try: NATS refuses QoS 1
subscriptions for minutes after losing a node while QoS 0 ones still work, and the gateway's
commands (a button press, Home Assistant's birth) survive QoS 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.nodes import backoff

log = logging.getLogger("gateway.mqtt")
RETRY_S = (1.0, 30.0)


class _Client(Protocol):
    def subscribe(self, topic: str, qos: int) -> tuple[Any, int | None]: ...


@dataclass
class _Wanted:
    state: str = "pending"  # pending | granted | failed
    qos: int = 1  # asked for in the last SUBSCRIBE
    best: int = 1  # asked for first
    failures: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True)
class Answer:
    """What one SUBACK meant: for logging by the caller."""

    topic_filter: str
    granted: bool
    qos: int
    failures: int
    retry_in: float


class Subscriptions:
    """Thread-safe: the caller's threads add and remove filters, paho's thread reports SUBACKs."""

    def __init__(self, ok: Callable[[Any], bool] = lambda rc: rc == 0) -> None:
        self._ok = ok  # whether a subscribe() result code means "sent"
        self._lock = threading.Lock()
        self._wanted: dict[str, _Wanted] = {}
        self._mids: dict[int, str] = {}

    def add(self, topic_filter: str, qos: int = 1) -> bool:
        """True if it was new. ``qos`` 0: never more (a bulk read that must not fill the broker's queue)."""
        with self._lock:
            if topic_filter in self._wanted:
                return False
            self._wanted[topic_filter] = _Wanted(qos=qos, best=qos)
            return True

    def remove(self, topic_filter: str) -> None:
        with self._lock:
            self._wanted.pop(topic_filter, None)

    def states(self) -> dict[str, str]:
        with self._lock:
            return {f: w.state for f, w in self._wanted.items()}

    def failed(self) -> list[str]:
        return [f for f, state in self.states().items() if state == "failed"]

    def new_session(self) -> list[str]:
        """A new connection: everything is to be subscribed afresh, at QoS 1 first."""
        with self._lock:
            self._mids.clear()
            for wanted in self._wanted.values():
                wanted.failures = 0
                wanted.state = "pending"
            return list(self._wanted)

    def start_session(self, client: _Client, connected: Callable[[], object]) -> None:
        """Subscribe everything afresh on a new connection; ``connected`` marks it usable meanwhile."""
        subscriptions = self.new_session()
        for topic_filter in subscriptions:
            self.send(client, topic_filter)
        connected()
        # add() calls that came between new_session() and connected() were not sent by their callers.
        for topic_filter in set(self.states()) - set(subscriptions):
            self.send(client, topic_filter)

    def send(self, client: _Client, topic_filter: str) -> None:
        # Under the lock: a SUBACK can arrive before subscribe() returns its mid otherwise.
        with self._lock:
            wanted = self._wanted.get(topic_filter)
            if wanted is None:
                return
            wanted.state = "pending"
            qos = wanted.best if wanted.failures % 2 == 0 else 0
            result, mid = client.subscribe(topic_filter, qos=qos)
            if self._ok(result) and mid is not None:
                self._mids[mid] = topic_filter
                wanted.qos = qos

    def due(self, now: float | None = None) -> list[str]:
        """Refused filters whose retry time has come."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [f for f, w in self._wanted.items() if w.state == "failed" and w.retry_at <= now]

    def answered(self, mid: int, granted: bool, node: str = "", reason: str = "") -> Answer | None:
        """A SUBACK for ``mid`` from ``node`` (logged); None if it was for a filter no longer wanted."""
        with self._lock:
            topic_filter = self._mids.pop(mid, None)
            wanted = self._wanted.get(topic_filter) if topic_filter is not None else None
            if topic_filter is None or wanted is None:
                return None
            if granted:
                answer = Answer(topic_filter, True, wanted.qos, wanted.failures, 0.0)
                wanted.state, wanted.failures = "granted", 0
            else:
                wanted.failures += 1
                wanted.state = "failed"
                delay = backoff(wanted.failures, *RETRY_S)
                wanted.retry_at = time.monotonic() + delay
                answer = Answer(topic_filter, False, wanted.qos, wanted.failures, delay)
        if not granted:
            log.log(_level(answer.failures), "MQTT broker %s refused the subscription to %s (%s); trying again "
                    "in %.0f s", node, topic_filter, reason, answer.retry_in)
        elif answer.failures:
            log.warning("subscribed to %s at QoS %d after %d refusals", topic_filter, answer.qos, answer.failures)
        return answer


def _level(count: int) -> int:
    """The 1st, 10th and every 100th refusal of a filter as a warning, the rest at debug."""
    return logging.WARNING if count in (1, 10) or count % 100 == 0 else logging.DEBUG
