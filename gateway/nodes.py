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
# How long a CONNECT may go unanswered. One broker: a slow answer is still the only answer. Several
# nodes: a node that hangs (a NATS cluster electing a new leader holds every CONNECT for its 4 s
# JetStream timeout, and then closes) is left for the next one sooner; from the third round in
# which no node answered, the wait doubles with every round.
CONNACK_TIMEOUT_S = 30.0
CLUSTER_CONNACK_TIMEOUT_S = 1.5


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
        self._proven: dict[Endpoint, str] = {}  # the version a node once accepted a CONNECT in

    def next(self) -> tuple[Endpoint, str]:
        """The node and MQTT version of the next attempt."""
        endpoint = self.endpoints[self._index]
        return endpoint, self.protocol_for(endpoint)

    def protocol_for(self, endpoint: Endpoint) -> str:
        if self.choice != "auto":
            return self.choice
        # A node not met yet is most likely of the same cluster as one that accepted us.
        return self._spoken.get(endpoint) or self._proven.get(endpoint) or next(iter(self._proven.values()), MQTT5)

    def connected(self, endpoint: Endpoint, protocol: str) -> None:
        self.failures = 0
        self._proven[endpoint] = protocol

    def took(self, endpoint: Endpoint, protocol: str) -> bool:
        """True if ``endpoint`` once accepted a CONNECT in ``protocol``."""
        return self._proven.get(endpoint) == protocol

    def connack_timeout(self) -> float:
        """Seconds to wait for the answer to the next CONNECT."""
        count = len(self.endpoints)
        if count == 1:
            return CONNACK_TIMEOUT_S
        # Two rounds at the shortest wait: an election takes a few seconds, about two rounds.
        return min(CONNACK_TIMEOUT_S, CLUSTER_CONNACK_TIMEOUT_S * 2 ** max(0, self.failures // count - 1))

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

    def unanswered_in_time(self, endpoint: Endpoint, protocol: str, level: int) -> None:
        """No CONNACK within ``connack_timeout()``: the loop closes the connection and moves on."""
        log.log(level, "MQTT broker %s:%s did not answer CONNECT within %.1f s (MQTT %s); trying %s", *endpoint,
                self.connack_timeout(), protocol, "again" if len(self.endpoints) == 1 else "the next node")

    def closed_early(self, endpoint: Endpoint, protocol: str, what: str, level: int) -> None:
        """The broker closed the connection before CONNACK, in either version (``level``: for a new node)."""
        took = self.took(endpoint, protocol)
        self.unanswered(endpoint)
        # A node that took this version before is busy (a cluster electing a leader), not misconfigured.
        hint = ("it took this version before: busy, or a cluster electing a leader" if took else
                "check GATEWAY_MQTT_PROTOCOL (auto, 5 or 3.1.1), the credentials and TLS")
        log.log(min(level, logging.WARNING) if took else level, "MQTT broker %s:%s %s (MQTT %s): %s", *endpoint,
                what, protocol, hint)

    def unanswered(self, endpoint: Endpoint) -> None:
        """Neither version got an answer: MQTT 5 first again next time (unless the node once took the
        other), it may have been the network."""
        self._spoken.pop(endpoint, None)
