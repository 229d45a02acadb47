"""Keeps our own ``online`` true: an ``offline`` on our status topic while we are connected gets an answer.

The broker publishes a connection's Last Will whenever it closes it without a DISCONNECT, and that
can be later than our own ``online``: a rival instance that stepped down after a split brain
reconnects with its client id, and a broker that reads the new CONNECT before the old
connection's DISCONNECT treats it as a session takeover and publishes the old Will (Mosquitto
does, on MQTT 5 and 3.1.1 alike). Whatever the cause, a retained ``offline`` that lands after
our ``online`` would tell every subscriber that the gateway is gone while it serves. So the link
subscribes to its own status topic and says ``online`` again, at most once per ``HOLD_S`` (a
client flooding the topic gets one answer per hold, the last one included). It subscribes at
QoS 0: on NATS every QoS 1 subscription is a JetStream consumer, slow to make again after a node
loss, and a lost ``offline`` is no worse than before.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from gateway.topics import OFFLINE

HOLD_S = 1.0
_OFFLINE = OFFLINE.encode()


class StatusGuard:
    """Thread-safe: paho's thread reports what it heard, the connection loop asks what is due."""

    def __init__(self, hold: float = HOLD_S) -> None:
        self._hold = hold
        self._lock = threading.Lock()
        self._disputed = False
        self._answered_at = -math.inf
        self._closed = False
        self.answers = 0  # how often ``online`` was said again

    def heard(self, topic: str, payload: bytes, will: str | None, wanted: str | None) -> None:
        """A message; ``will``: this connection's Will topic, ``wanted``: ours from now on (they differ
        while a step-down or takeover reconnects, and then there is nothing to answer)."""
        if will is not None and will == wanted and topic == will and payload == _OFFLINE:
            with self._lock:
                self._disputed = True

    def due(self, now: float) -> bool:
        """True once per dispute, and no sooner than ``hold`` after the last answer: say ``online`` now."""
        with self._lock:
            if not self._disputed or now - self._answered_at < self._hold:
                return False
            self._disputed = False
            self._answered_at = now
            self.answers += 1
            return True

    def send(self, publish: Callable[[], object]) -> bool:
        """Run ``publish`` (the answer) unless the link is shutting down; under the lock, so that ``close``
        cannot slip in between and leave a retained ``online`` after the final ``offline``."""
        with self._lock:
            if self._closed:
                return False
            publish()
            return True

    def close(self) -> None:
        """Shutting down: our own ``offline`` is the last word, nothing is answered any more."""
        with self._lock:
            self._closed = True

    def reset(self) -> None:
        """A new connection says ``online`` anyway: what was heard on the old one is answered by that."""
        with self._lock:
            self._disputed = False
