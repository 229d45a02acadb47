"""Which of several gateway instances publishes: a heartbeat lease, as pure state (no broker, no clock).

The active instance sends a heartbeat on ``<base>/gateway/lease`` every lease/3 seconds; a standby
takes over when it has heard none for one lease while connected. The caller hands in ``now``
(monotonic seconds) and, for promotions, ``wall`` (UTC). Timing uses only our own monotonic clock,
never a timestamp from the other side: a remote ``since`` only ranks two instances that both claim
the lease, and both sides rank the same two values, so they agree whatever their clocks say.

Split brain (two actives, after a partition or a node loss): the more recent takeover (later
``since``) wins, ties go to the lower instance id, and the loser steps down as soon as it hears the
winner. The more recent one wins because it is the one that could not hear the other: an instance
that is deaf to the lease topic but can still publish would otherwise never step down, and the
other would keep publishing too. With this rule the one that hears yields, whichever it is.
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

LEASE_LEAF = "lease"
DEFAULT_LEASE = 15.0
# Shorter than 3 s, a heartbeat every second would be at the mercy of one slow publish batch;
# longer than 5 minutes, a takeover stops being a takeover.
LEASE_MIN = 3.0
LEASE_MAX = 300.0
BEATS_PER_LEASE = 3
# A standby waits up to this share of a lease more, at random, so that two standbys started (or
# orphaned) together do not take over in the same instant.
JITTER_SHARE = 0.2
# A heartbeat is about 120 bytes; anything longer is not one and is not even parsed.
MAX_BEAT_PAYLOAD = 512
# The newest heartbeat of this many other instances is remembered; more than two is already a
# misconfiguration, and a flood of invented instance ids must not grow memory.
MAX_PEERS = 16
INSTANCE_RE = re.compile(r"^[A-Za-z0-9._-]{1,80}$")
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.-]+")


class Role(StrEnum):
    STANDBY = "standby"
    ACTIVE = "active"


def instance_id(token: str, hostname: str | None = None) -> str:
    """``<hostname>-<token>``: says which machine it is, and stays unique when two run on one host."""
    host = _HOST_CHARS.sub("-", hostname if hostname is not None else socket.gethostname()).strip("-.")
    return f"{host[:40] or 'gateway'}-{token}"


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat: who holds the lease, since when (UTC), for how long, and its sequence number."""

    instance: str
    since: datetime
    lease: float
    seq: int

    def encode(self) -> bytes:
        return json.dumps({"instance": self.instance, "since": self.since.isoformat(timespec="milliseconds"),
                           "lease_s": self.lease, "seq": self.seq}, separators=(",", ":")).encode()

    def outranks(self, other: Beat) -> bool:
        """The split-brain rule: the later takeover wins, then the lower instance id."""
        return self.since > other.since or (self.since == other.since and self.instance < other.instance)


def parse_beat(payload: bytes) -> Beat | None:
    """A heartbeat, or None for anything else (oversized, not JSON, fields missing or out of range)."""
    if not payload or len(payload) > MAX_BEAT_PAYLOAD:
        return None
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(doc, dict):
        return None
    instance, since, lease, seq = (doc.get(k) for k in ("instance", "since", "lease_s", "seq"))
    if not isinstance(instance, str) or not INSTANCE_RE.match(instance):
        return None
    if not _number(lease) or not LEASE_MIN <= lease <= LEASE_MAX:
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**63:
        return None
    moment = _moment(since)
    return None if moment is None else Beat(instance, moment, float(lease), seq)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Event:
    """Something the caller must log (one line), and the role from now on (maybe unchanged)."""

    role: Role
    line: str


class Lease:
    """The role of one instance. Every method is called on one thread (the gateway's event loop)."""

    def __init__(self, instance: str, lease: float = DEFAULT_LEASE,
                 rand: Callable[[], float] = random.random) -> None:
        self.instance = instance
        self.lease = lease
        self.role = Role.STANDBY
        self.since: datetime | None = None  # when this instance became active
        self.peer: str | None = None  # the other instance last heard holding the lease
        self._rand = rand
        self._connected = False
        self._silence = lease  # how long the holder may stay silent: the longer of its lease and ours
        self._deadline = math.inf  # standby: take over at this time
        self._next_beat = math.inf  # active: the next heartbeat is due then
        self._seq = 0
        self._heard: dict[str, tuple[datetime, int]] = {}  # per instance: its newest (since, seq)
        self._rival: str | None = None  # an active instance that yields to us, logged once

    # ------------------------------------------------------------------ connection

    def connected(self, now: float) -> None:
        """A (new) broker connection: a standby waits a whole lease again, an active one beats at once."""
        self._connected = True
        if self.role is Role.STANDBY:
            self._deadline = now + self._wait()
        else:
            self._next_beat = now

    def disconnected(self) -> None:
        """Silence heard while not connected proves nothing: no takeover until connected again."""
        self._connected = False
        self._deadline = math.inf

    # ------------------------------------------------------------------ what happens

    def heard(self, payload: bytes, retained: bool, now: float) -> Event | None:
        """A message on the lease topic, if it proves that its sender is alive now.

        A live heartbeat does. A retained one may be years old, so it proves life only as the
        successor (same holder, same takeover, higher seq) of one heard before: some brokers (NATS)
        keep the retain flag on live messages too, and every live heartbeat there arrives flagged.
        """
        beat = parse_beat(payload)
        if beat is None or beat.instance == self.instance:
            return None
        known = self._heard.get(beat.instance)
        successor = known is not None and known[0] == beat.since and beat.seq > known[1]
        if known is not None and known[0] == beat.since and not successor:
            return None  # a repeat (QoS 1 redelivery, the retained copy again) proves no new life
        self._remember(beat)
        if retained and not successor:
            return None
        if self.role is Role.STANDBY:
            self._silence = max(self.lease, beat.lease)
            if self._connected:
                self._deadline = now + self._wait()
            if beat.instance == self.peer:
                return None
            self.peer = beat.instance
            return Event(Role.STANDBY, f"standby: instance {beat.instance} is active (since {_at(beat.since)}); "
                                       f"this is instance {self.instance}")
        return self._contest(beat, now)

    def _contest(self, beat: Beat, now: float) -> Event | None:
        ours = self.own_beat()
        if beat.outranks(ours):
            self.role, self.since, self.peer, self._rival = Role.STANDBY, None, beat.instance, None
            self._next_beat = math.inf
            self._silence = max(self.lease, beat.lease)
            self._deadline = now + self._wait() if self._connected else math.inf
            return Event(Role.STANDBY, f"standby: instance {beat.instance} (active since {_at(beat.since)}) "
                                       f"outranks this instance {self.instance} (active since {_at(ours.since)}); "
                                       "stepping down")
        if beat.instance == self._rival:
            return None
        self._rival = beat.instance
        return Event(Role.ACTIVE, f"active: instance {beat.instance} (active since {_at(beat.since)}) also claims "
                                  f"the lease and yields to this instance {self.instance} "
                                  f"(active since {_at(ours.since)})")

    def tick(self, now: float, wall: datetime) -> Event | None:
        """Take over if the holder has been silent for a lease (and we are connected to hear it)."""
        if self.role is not Role.STANDBY or not self._connected or now < self._deadline:
            return None
        # Milliseconds, as the heartbeat carries it: both sides must rank the very same value.
        since = wall.astimezone(UTC)
        self.since = since.replace(microsecond=since.microsecond // 1000 * 1000)
        self.role, self._rival = Role.ACTIVE, None
        self._next_beat = now
        who = f"instance {self.peer}" if self.peer else "any other instance"
        return Event(Role.ACTIVE, f"active: no heartbeat from {who} for {self._silence:g}s; "
                                  f"this instance {self.instance} takes over")

    def beat(self, now: float) -> Beat | None:
        """The heartbeat to send now, if this instance is active, connected and one is due."""
        if self.role is not Role.ACTIVE or not self._connected or now < self._next_beat:
            return None
        self._next_beat = now + self.lease / BEATS_PER_LEASE
        self._seq += 1
        return self.own_beat()

    def own_beat(self) -> Beat:
        return Beat(self.instance, self.since or datetime.min.replace(tzinfo=UTC), self.lease, self._seq)

    def due_in(self, now: float) -> float:
        """Seconds until ``tick`` or ``beat`` may have something to do (inf: only a message can change it)."""
        if not self._connected:
            return math.inf
        due = self._next_beat if self.role is Role.ACTIVE else self._deadline
        return max(0.0, due - now)

    def _remember(self, beat: Beat) -> None:
        self._heard.pop(beat.instance, None)
        if len(self._heard) >= MAX_PEERS:
            del self._heard[next(iter(self._heard))]  # the one heard least recently
        self._heard[beat.instance] = (beat.since, beat.seq)

    def _wait(self) -> float:
        return self._silence + self._rand() * JITTER_SHARE * self.lease


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
