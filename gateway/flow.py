"""Flow control for QoS 1 publishes: never more unacknowledged messages than paho can number.

paho numbers messages 1..65535; with more unacknowledged messages than that, ids collide and
paho silently drops messages. A publisher therefore waits once the window is full, except on
paho's own network thread, which must never block (it is the one that reads the acks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

MAX_UNACKED = 5_000


class AckWindow:
    """Counts sent and acknowledged messages of one connection."""

    def __init__(self, limit: int = MAX_UNACKED) -> None:
        self.limit = limit
        self._sent = 0
        self._acks = 0
        self._cond = threading.Condition()
        self._network_thread: int | None = None

    def on_network_thread(self) -> None:
        """Called from a paho callback: remembers which thread must never wait."""
        self._network_thread = threading.get_ident()

    def wait_for_room(self, alive: Callable[[], bool], timeout: float = 60.0) -> None:
        if self._sent - self._acks < self.limit or threading.get_ident() == self._network_thread:
            return
        with self._cond:
            self._cond.wait_for(lambda: self._sent - self._acks < self.limit // 2 or not alive(), timeout)

    def sent(self) -> None:
        self._sent += 1  # only publishers write _sent, only the network thread _acks: no lock per message

    def acked(self) -> None:
        self._acks += 1
        if self._sent - self._acks < self.limit // 2:
            with self._cond:
                self._cond.notify_all()

    def reset(self) -> None:
        """The connection is gone, and with it whatever was in flight."""
        with self._cond:
            self._acks = self._sent
            self._cond.notify_all()


# paho walks its in-flight table on every acknowledgement: a small window is much faster on a
# near broker (about 27,000 msg/s at 20 against 15,000 at 1,000 on the bench machine).
NEAR_WINDOW = 20
FAR_WINDOW_MAX = 2_000
# The rate a far broker's window is sized for: about what paho manages at all.
TARGET_RATE = 25_000
# Below this an ack comes from a near broker, perhaps on a busy machine: the small window is fastest there.
FAR_LATENCY_S = 0.010


def window_for(ack_latency_s: float) -> int:
    """The in-flight window that keeps a broker whose acks take ``ack_latency_s`` busy.

    A clustered broker acknowledges a retained message only after a replicated write (NATS
    JetStream: tens of milliseconds), so a window of 20 caps it at a few hundred messages a
    second; the window then grows with the latency (rate = window / latency), within bounds.
    """
    if ack_latency_s < FAR_LATENCY_S:  # a near broker, perhaps on a busy machine: keep the fast small window
        return NEAR_WINDOW
    return max(NEAR_WINDOW, min(FAR_WINDOW_MAX, round(ack_latency_s * TARGET_RATE)))
