"""Which broker node and MQTT version the next connection attempt uses, and how long to wait first.

Pure bookkeeping, no network: the connection loop (gateway.mqtt) asks, tries, and reports back.
With several nodes (one cluster) a failed or lost node is left for the next one at once; only
when every node failed in a row does the capped exponential backoff start.
"""

from __future__ import annotations

import logging
import random

log = logging.getLogger("gateway.mqtt")
Endpoint = tuple[str, int]
MQTT5 = "5"
MQTT311 = "3.1.1"


def backoff(attempt: int, low: float, high: float) -> float:
    """Capped exponential backoff with jitter."""
    cap = min(high, low * (2 ** min(attempt, 30)))
    return random.uniform(cap / 2, cap)


class Nodes:
    """The nodes of one broker, in order, and the MQTT version each turned out to speak.

    ``protocol`` is "auto", "5" or "3.1.1"; with "auto" a node is tried with MQTT 5 until it
    refuses it, and then with 3.1.1.
    """

    def __init__(self, endpoints: list[Endpoint], protocol: str, backoff_s: tuple[float, float]) -> None:
        self.endpoints = endpoints
        self.choice = protocol
        self.backoff_s = backoff_s
        self.failures = 0  # failed attempts in a row, over all nodes
        self._index = 0
        self._spoken: dict[Endpoint, str] = {}
        self._fell_back: set[Endpoint] = set()

    def next(self) -> tuple[Endpoint, str]:
        """The node and MQTT version of the next attempt."""
        endpoint = self.endpoints[self._index]
        return endpoint, self.protocol_for(endpoint)

    def protocol_for(self, endpoint: Endpoint) -> str:
        return self.choice if self.choice != "auto" else self._spoken.get(endpoint, MQTT5)

    def connected(self) -> None:
        self.failures = 0

    def failed(self) -> None:
        """The attempt failed or the connection was lost: the next attempt goes to the next node."""
        self.failures += 1
        self._index = (self._index + 1) % len(self.endpoints)

    def pause(self) -> float:
        """Seconds to wait before the next attempt."""
        count = len(self.endpoints)
        if count == 1:
            return backoff(self.failures, *self.backoff_s)
        rounds, within = divmod(self.failures, count)
        return random.uniform(0.05, 0.2) if within else backoff(max(rounds, 1), *self.backoff_s)

    def fall_back(self, endpoint: Endpoint, protocol: str, why: str) -> bool:
        """``endpoint`` would not take ``protocol``: True if 3.1.1 is to be tried there now (logged once a node)."""
        if self.choice != "auto" or protocol != MQTT5:
            return False
        self._spoken[endpoint] = MQTT311
        level = logging.INFO if endpoint not in self._fell_back else logging.DEBUG
        self._fell_back.add(endpoint)
        log.log(level, "MQTT broker %s:%s %s; trying MQTT 3.1.1", *endpoint, why)
        return True

    def unanswered(self, endpoint: Endpoint) -> None:
        """Neither version got an answer: MQTT 5 first again next time, it may have been the network."""
        self._spoken.pop(endpoint, None)
