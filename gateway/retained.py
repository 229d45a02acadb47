"""Reading the broker's retained messages, and ``purge``, which clears ours.

The broker sends the retained messages matching a new subscription before anything published
after it, so a marker message of our own, sent after subscribing, tells us the snapshot is
complete: no fixed sleep, and a read that ends without the marker is known to be incomplete.
A read is incomplete too when the broker refused a subscription (SUBACK failure), or when a
retained probe of our own did not come back: some brokers (RabbitMQ) never deliver retained
messages to wildcard subscriptions, and an empty answer must not pass for "nothing there".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from gateway.config import Broker
from gateway.errors import PublishError
from gateway.metrics import Metrics
from gateway.mqtt import MqttLink
from gateway.outbox import TopicClass
from gateway.topics import matches

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often a read looks whether the link dropped
SUBACK_POLL_S = 0.002  # a SUBACK that trails the marker does so by a round trip, not by 50 ms
NO_WILDCARD_RETAINED = ("the broker does not deliver retained messages to wildcard subscriptions "
                        "(RabbitMQ does not; such brokers are not supported)")


class RetainedReader:
    """Collects the retained messages under ``filters``; one read at a time.

    ``offer`` must see every message the link receives. ``limit`` caps how many topics a read
    records: beyond it, messages are still consumed but not recorded (and a warning is logged).
    """

    def __init__(self, filters: Sequence[str], marker: str, limit: int = 1_000_000) -> None:
        # The probe sits under the marker's own namespace, which only this gateway writes.
        self._probe_filter = f"{marker}/probe/+"
        self._filters = (*filters, self._probe_filter)
        self._marker = marker
        self.problem: str | None = None  # why the last read was incomplete
        self._limit = limit
        self._lock = threading.Lock()
        self._seen: dict[str, int] | None = None  # None: no read running
        self._token = b""
        self._reads = 0
        self._overflow = False
        self._done = threading.Event()

    def offer(self, topic: str, payload: bytes, retain: bool) -> bool:
        """Take one incoming message (any thread); True if it belonged to the reader."""
        if topic == self._marker:
            with self._lock:
                # A marker of an earlier, timed-out read must not end this one.
                if self._seen is not None and payload == self._token:
                    self._done.set()
            return True
        if not (retain and payload):
            return False
        with self._lock:
            if self._seen is None or not any(matches(f, topic) for f in self._filters):
                return False
            if len(self._seen) < self._limit or topic in self._seen:
                self._seen[topic] = hash(payload)
            else:
                self._overflow = True
        return True

    def read(self, link: MqttLink, timeout: float) -> dict[str, int] | None:
        """topic -> hash(payload) of the retained messages, or None if the read is incomplete (see ``problem``)."""
        with self._lock:
            self._reads += 1
            self._token = f"read-{self._reads}".encode()
            self._seen = {}
            self._overflow = False
            self._done.clear()
        self.problem = None
        epoch = link.connections
        probe = f"{self._marker}/probe/{self._token.decode()}"
        subscribed = [self._marker, *self._filters]
        deadline = time.monotonic() + timeout
        try:
            if not link.connected:
                self.problem = "not connected to the broker"
                return None
            # Stored before we subscribe: the broker acknowledges a retained message once it holds it.
            if not link.send_confirmed(probe, self._token, TopicClass.INFO, timeout):
                self.problem = "the broker did not acknowledge a publish in time"
                return None
            for topic_filter in subscribed:
                # QoS 0: a broker queues at most so many QoS 1 messages per client (Mosquitto 1,000)
                # and drops the rest, so more retained configs than that never arrived whole.
                link.subscribe(topic_filter, qos=0)
            link.publish(self._marker, self._token, TopicClass.INFO, retain=False)
            complete = self._wait(link, epoch, deadline) and self._granted(link, subscribed, deadline)
        finally:
            for topic_filter in subscribed:
                link.unsubscribe(topic_filter)
            link.send(probe, b"", TopicClass.INFO)
            with self._lock:
                seen, self._seen = self._seen, None
        if self._overflow:
            log.warning("more than %d retained topics under %s; read only the first", self._limit,
                        ", ".join(self._filters))
        found_probe = seen.pop(probe, None) is not None
        for topic in [t for t in seen if matches(self._probe_filter, t)]:  # probes of earlier reads
            del seen[topic]
        if complete and not found_probe:
            self.problem = NO_WILDCARD_RETAINED
            complete = False
        return seen if complete else None

    def _wait(self, link: MqttLink, epoch: int, deadline: float) -> bool:
        """Wait for the marker on connection ``epoch``; False if it timed out or the link dropped."""
        while not self._done.wait(POLL_S):
            if not link.connected or link.connections != epoch or time.monotonic() > deadline:
                self.problem = "the broker did not deliver the retained messages in time" if link.connected \
                    else "the connection to the broker dropped during the read"
                return False
        if link.connected and link.connections == epoch:
            return True
        self.problem = "the connection to the broker dropped during the read"
        return False

    def _granted(self, link: MqttLink, subscribed: list[str], deadline: float) -> bool:
        """Every subscription of the read was granted (a SUBACK may trail the messages a little)."""
        while True:
            states = link.subscriptions.states()
            refused = [f for f in subscribed if states.get(f) == "failed"]
            if refused:
                self.problem = f"the broker refused the subscription to {refused[0]}"
                return False
            if all(states.get(f) == "granted" for f in subscribed):
                return True
            if time.monotonic() > deadline or not link.connected:
                self.problem = "the broker did not acknowledge the subscriptions in time"
                return False
            time.sleep(SUBACK_POLL_S)


def purge(broker: Broker, filters: list[str], client_id: str, timeout: float = 10.0) -> list[str]:
    """Remove every retained message under ``filters``; returns the cleared topics."""
    reader = RetainedReader(filters, f"{filters[0].split('/')[0]}/gateway/sync/purge-{client_id}")
    failures: list[tuple[str, bool]] = []
    settled = threading.Event()

    def failed(reason: str, refused: bool) -> None:
        failures.append((reason, refused))
        settled.set()

    # No size limit: a huge retained message under our topics must be found to be cleared.
    link = MqttLink(broker, client_id=client_id, will_topic=None, metrics=Metrics(), keepalive=30,
                    max_packet=None, on_connect=lambda first: settled.set(), on_connect_failed=failed,
                    on_message=reader.offer)
    link.start()
    try:
        settled.wait(timeout)
        if not link.connected:
            if failures and not failures[0][1]:
                raise PublishError(f"cannot reach MQTT broker {broker.address}: {failures[0][0]}")
            reason = f": {failures[-1][0]}" if failures else ""
            raise PublishError(f"MQTT broker {broker.address} did not accept the connection{reason}")
        seen = reader.read(link, timeout)
        if seen is None:
            raise PublishError(f"{reader.problem or 'the retained messages could not be read'}; nothing removed")
        cleared = sorted(seen)
        for topic in cleared:
            link.send(topic, b"", TopicClass.STATE)
        if not link.flush(timeout):
            raise PublishError("the broker did not confirm the cleared topics in time")
    finally:
        link.stop()
    return cleared
