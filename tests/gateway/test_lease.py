"""The standby lease as pure state: an injected clock, no broker (gateway.lease)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import build_parser, main, parse_args
from gateway.config import Mqtt, loads
from gateway.errors import ConfigError
from gateway.lease import (
    BEATS_PER_LEASE,
    DEFAULT_LEASE,
    JITTER_SHARE,
    MAX_BEAT_PAYLOAD,
    Beat,
    Lease,
    Role,
    instance_id,
    parse_beat,
)
from tests.helpers import ROOT

T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
LEASE = 3.0


def lease(instance: str = "b-000002", seconds: float = LEASE, jitter: float = 0.0) -> Lease:
    return Lease(instance, seconds, rand=lambda: jitter)


def beat(instance: str = "a-000001", since: datetime = T0, seq: int = 1, seconds: float = LEASE) -> bytes:
    return Beat(instance, since, seconds, seq).encode()


def promoted(machine: Lease, now: float, wall: datetime) -> Lease:
    machine.connected(now)
    assert machine.tick(now + machine.lease * (1 + JITTER_SHARE), wall) is not None
    assert machine.role is Role.ACTIVE
    return machine


# --------------------------------------------------------------------------- standby → active


def test_a_standby_takes_over_after_one_silent_lease_and_not_before():
    standby = lease()
    standby.connected(100.0)
    assert standby.role is Role.STANDBY
    assert standby.tick(102.9, T0) is None
    assert standby.beat(102.9) is None  # a standby never beats
    event = standby.tick(103.0, T0)
    assert event is not None
    assert event.role is Role.ACTIVE
    assert event.line == "active: no heartbeat from any other instance for 3s; this instance b-000002 takes over"
    assert standby.role is Role.ACTIVE
    assert standby.since == T0


def test_silence_while_disconnected_proves_nothing():
    standby = lease()
    assert standby.tick(1e9, T0) is None  # never connected
    standby.connected(0.0)
    standby.disconnected()
    assert standby.tick(1e9, T0) is None
    assert standby.due_in(5.0) == math.inf
    standby.connected(1e9)  # the wait starts again with the connection
    assert standby.tick(1e9 + 2.9, T0) is None
    assert standby.tick(1e9 + 3.0, T0) is not None


def test_a_live_heartbeat_keeps_a_standby_waiting_and_is_logged_once():
    standby = lease()
    standby.connected(0.0)
    first = standby.heard(beat(seq=1), False, 2.0)
    assert first is not None
    assert first.role is Role.STANDBY
    assert first.line == ("standby: instance a-000001 is active (since 2026-06-21T12:00:00.000+00:00); "
                          "this is instance b-000002")
    assert standby.heard(beat(seq=2), False, 4.0) is None  # the same holder: nothing new to log
    assert standby.tick(6.9, T0) is None  # silent for 2.9 s since the last beat at 4.0
    assert standby.due_in(4.0) == pytest.approx(3.0)
    event = standby.tick(7.0, T0)
    assert event is not None
    assert event.line == "active: no heartbeat from instance a-000001 for 3s; this instance b-000002 takes over"


def test_retained_heartbeats_and_own_heartbeats_prove_no_life():
    standby = lease()
    standby.connected(0.0)
    assert standby.heard(beat(), True, 2.0) is None  # retained: the holder may be long dead
    assert standby.heard(beat("b-000002"), False, 2.5) is None  # our own, back from the broker
    assert standby.tick(3.0, T0) is not None


def test_retained_heartbeats_prove_life_only_as_successors_of_one_heard_before():
    """NATS keeps the retain flag on live messages: every live heartbeat arrives flagged."""
    standby = lease()
    standby.connected(0.0)
    assert standby.heard(beat(seq=7), True, 1.0) is None  # the stored copy: maybe long dead
    assert standby.tick(2.9, T0) is None
    event = standby.heard(beat(seq=8), True, 2.0)  # its successor: the holder is alive
    assert event is not None
    assert event.line.startswith("standby: instance a-000001 is active")
    assert standby.heard(beat(seq=8), True, 4.0) is None  # the same one again proves nothing
    assert standby.tick(4.9, T0) is None  # 2.9 s after the beat at 2.0
    assert standby.heard(beat(seq=9), True, 4.9) is None  # alive, nothing new to log
    assert standby.tick(7.8, T0) is None
    assert standby.tick(7.9, T0) is not None


def test_a_retained_heartbeat_of_a_new_takeover_needs_a_successor_too():
    standby = lease()
    standby.connected(0.0)
    standby.heard(beat(seq=3), False, 1.0)
    later = T0 + timedelta(minutes=5)
    assert standby.heard(beat(since=later, seq=1), True, 2.0) is None  # another takeover, stored copy
    assert standby.tick(4.0, T0) is not None  # 3 s after the last proof of life at 1.0


def test_two_holders_beating_in_turn_on_a_broker_that_flags_everything_retained():
    """Per-instance memory: alternating senders must not reset each other's sequence."""
    standby = lease()
    standby.connected(0.0)
    other = T0 + timedelta(seconds=1)
    for n in range(1, 6):
        standby.heard(beat("a-000001", seq=n), True, float(n))
        standby.heard(beat("c-000003", since=other, seq=n), True, n + 0.5)
    assert standby.tick(7.9, T0) is None  # the last proof of life was at 5.5
    assert standby.tick(8.5, T0) is not None


def test_memory_of_other_instances_is_bounded():
    from gateway.lease import MAX_PEERS
    standby = lease()
    standby.connected(0.0)
    for n in range(MAX_PEERS * 4):
        standby.heard(beat(f"x-{n:06d}", seq=1), True, 1.0)
    assert len(standby._heard) == MAX_PEERS


def test_a_repeated_heartbeat_proves_no_new_life():
    standby = lease()
    standby.connected(0.0)
    standby.heard(beat(seq=5), False, 2.0)
    assert standby.heard(beat(seq=5), False, 4.0) is None  # a QoS 1 redelivery
    assert standby.heard(beat(seq=4), False, 4.5) is None
    assert standby.tick(5.0, T0) is not None  # 3 s after the last new one


def test_a_holder_with_a_longer_lease_is_given_its_own_lease():
    standby = lease()
    standby.connected(0.0)
    standby.heard(beat(seconds=60.0), False, 1.0)
    assert standby.tick(60.9, T0) is None
    assert standby.tick(61.0, T0) is not None


def test_jitter_is_at_most_a_fifth_of_a_lease():
    early, late = lease(jitter=0.0), lease(jitter=1.0)
    for machine in (early, late):
        machine.connected(0.0)
    assert early.tick(3.0, T0) is not None
    assert late.tick(3.5, T0) is None
    assert late.tick(3.0 + LEASE * JITTER_SHARE, T0) is not None


def test_the_default_lease_takes_over_well_within_30_seconds():
    assert Mqtt().lease == DEFAULT_LEASE == 15.0
    standby = Lease("b-000002", rand=lambda: 1.0)  # the longest wait the jitter allows
    standby.connected(0.0)
    standby.heard(beat(seconds=DEFAULT_LEASE), False, 10.0)  # the last heartbeat; then the holder dies
    takeover = 10.0 + DEFAULT_LEASE * (1 + JITTER_SHARE)
    assert standby.tick(takeover - 0.01, T0) is None
    assert standby.tick(takeover, T0) is not None
    # 18 s after the last heartbeat: 12 s left for the first fetches before the 30 s of issue #11.
    assert takeover - 10.0 <= 18.0


# --------------------------------------------------------------------------- active


def test_an_active_instance_beats_every_third_of_a_lease():
    active = promoted(lease("a-000001"), 0.0, T0 + timedelta(microseconds=123456))
    start = LEASE * (1 + JITTER_SHARE)
    first = active.beat(start)
    assert first is not None
    assert active.beat(start + 0.1) is None
    second = active.beat(start + LEASE / BEATS_PER_LEASE)
    assert second is not None
    assert (first.seq, second.seq) == (1, 2)
    assert first.since == second.since == T0 + timedelta(milliseconds=123)  # milliseconds, as sent
    decoded = json.loads(first.encode())
    assert decoded == {"instance": "a-000001", "since": "2026-06-21T12:00:00.123+00:00", "lease_s": 3.0, "seq": 1}
    assert parse_beat(first.encode()) == first
    assert len(first.encode()) < MAX_BEAT_PAYLOAD


def test_an_active_instance_beats_at_once_after_a_reconnect_and_never_while_disconnected():
    active = promoted(lease("a-000001"), 0.0, T0)
    assert active.beat(10.0) is not None
    active.disconnected()
    assert active.beat(20.0) is None
    active.connected(20.5)
    assert active.beat(20.5) is not None


# --------------------------------------------------------------------------- split brain


def split_brain(first_since: datetime, second_since: datetime) -> tuple[Lease, Lease]:
    a = promoted(lease("a-000001"), 0.0, first_since)
    b = promoted(lease("b-000002"), 0.0, second_since)
    return a, b


@pytest.mark.parametrize("a_hears_first", [True, False])
def test_split_brain_the_later_takeover_wins_whoever_hears_first(a_hears_first: bool):
    a, b = split_brain(T0, T0 + timedelta(seconds=5))  # b took over later: a could not hear b, or was away
    beat_a, beat_b = a.beat(10.0), b.beat(10.0)
    assert beat_a is not None
    assert beat_b is not None
    order = [(a, beat_b), (b, beat_a)] if a_hears_first else [(b, beat_a), (a, beat_b)]
    events = {machine.instance: machine.heard(other.encode(), False, 10.1) for machine, other in order}
    assert a.role is Role.STANDBY
    assert b.role is Role.ACTIVE
    assert events["a-000001"] is not None
    assert events["a-000001"].role is Role.STANDBY
    assert events["a-000001"].line == (
        "standby: instance b-000002 (active since 2026-06-21T12:00:05.000+00:00) outranks this instance "
        "a-000001 (active since 2026-06-21T12:00:00.000+00:00); stepping down")
    assert events["b-000002"] is not None
    assert events["b-000002"].role is Role.ACTIVE
    assert b.heard(beat_a.encode().replace(b'"seq":1', b'"seq":2'), False, 10.2) is None
    assert a.beat(11.0) is None  # the loser stops at once
    # ... and is an ordinary standby again: it takes over when the winner falls silent.
    assert a.tick(10.1 + LEASE * (1 + JITTER_SHARE), T0 + timedelta(seconds=20)) is not None


def test_split_brain_with_the_same_since_goes_to_the_lower_instance_id():
    a, b = split_brain(T0, T0)
    beat_a, beat_b = a.beat(10.0), b.beat(10.0)
    assert beat_a is not None
    assert beat_b is not None
    a.heard(beat_b.encode(), False, 10.1)
    b.heard(beat_a.encode(), False, 10.1)
    assert (a.role, b.role) == (Role.ACTIVE, Role.STANDBY)


def test_outranks_is_a_strict_order():
    x, y = Beat("a", T0, 3.0, 1), Beat("b", T0, 3.0, 1)
    later = Beat("z", T0 + timedelta(milliseconds=1), 3.0, 1)
    assert x.outranks(y)
    assert not y.outranks(x)
    assert later.outranks(x)
    assert not x.outranks(later)
    assert not x.outranks(x)


# --------------------------------------------------------------------------- hostile payloads


GOOD = json.loads(beat())
HOSTILE = [
    b"", b"online", b"null", b"[]", b"42", b"\xff\xfe", b'"text"', b"{", b"[" * 100_000,
    json.dumps({**GOOD, "pad": "x" * MAX_BEAT_PAYLOAD}).encode(),  # oversized, however well-formed
    json.dumps({k: v for k, v in GOOD.items() if k != "instance"}).encode(),
    json.dumps({**GOOD, "instance": ""}).encode(),
    json.dumps({**GOOD, "instance": "a/b"}).encode(),
    json.dumps({**GOOD, "instance": "x" * 81}).encode(),
    json.dumps({**GOOD, "instance": 7}).encode(),
    json.dumps({**GOOD, "since": "2026-06-21T12:00:00"}).encode(),  # no offset: no order with others
    json.dumps({**GOOD, "since": "yesterday"}).encode(),
    json.dumps({**GOOD, "since": 1750000000}).encode(),
    json.dumps({**GOOD, "lease_s": 0.5}).encode(),
    json.dumps({**GOOD, "lease_s": 1e9}).encode(),
    json.dumps({**GOOD, "lease_s": True}).encode(),
    json.dumps({**GOOD, "lease_s": "15"}).encode(),
    json.dumps({**GOOD, "seq": -1}).encode(),
    json.dumps({**GOOD, "seq": 2**63}).encode(),
    json.dumps({**GOOD, "seq": 1.5}).encode(),
    json.dumps({**GOOD, "seq": False}).encode(),
    b'{"instance":"a","since":"2026-06-21T12:00:00+00:00","lease_s":NaN,"seq":1}',
    b'{"instance":"a","since":"2026-06-21T12:00:00+00:00","lease_s":Infinity,"seq":1}',
]


@pytest.mark.parametrize("payload", HOSTILE, ids=range(len(HOSTILE)))
def test_garbage_on_the_lease_topic_is_ignored(payload: bytes):
    assert parse_beat(payload) is None
    standby = lease()
    standby.connected(0.0)
    assert standby.heard(payload, False, 2.0) is None
    assert standby.tick(3.0, T0) is not None  # it did not count as a heartbeat
    active = promoted(lease("b-000002"), 0.0, T0)
    assert active.heard(payload, False, 10.0) is None
    assert active.role is Role.ACTIVE


def test_a_valid_heartbeat_with_extra_fields_counts():
    assert parse_beat(json.dumps({**GOOD, "version": "2.0"}).encode()) == Beat("a-000001", T0, LEASE, 1)


@pytest.mark.parametrize(("host", "expected"), [
    ("gw1.city.example", "gw1.city.example-abc123"),
    ("we ird/näme", "we-ird-n-me-abc123"),
    ("", "gateway-abc123"),
    ("x" * 300, "x" * 40 + "-abc123"),
])
def test_instance_ids_are_safe_and_unique_per_process(host: str, expected: str):
    assert instance_id("abc123", host) == expected
    assert parse_beat(Beat(expected, T0, LEASE, 1).encode()) is not None


# --------------------------------------------------------------------------- configuration and CLI


@pytest.mark.parametrize(("value", "fragment"), [
    ("1s", "mqtt.lease: '1s' is too short: at least 3s"),
    ("10m", "mqtt.lease: '10m' is too long: at most 5m"),
    ("soon", "mqtt.lease: 'soon' is not a duration"),
])
def test_lease_out_of_bounds_is_a_one_line_error(value: str, fragment: str):
    text = (ROOT / "topics.yaml").read_text().replace("mqtt:\n", f"mqtt:\n  lease: {value}\n", 1)
    with pytest.raises(ConfigError) as info:
        loads(text, Path("topics.yaml"))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_lease_in_bounds_is_read():
    text = (ROOT / "topics.yaml").read_text().replace("mqtt:\n", "mqtt:\n  lease: 30s\n", 1)
    assert loads(text, Path("topics.yaml")).settings.mqtt.lease == 30.0


@pytest.mark.parametrize("argv", [["--standby", "run"], ["run", "--standby"], ["--standby"],
                                  ["--config", "topics.yaml", "--standby", "run", "--log-level", "debug"]])
def test_standby_before_or_after_the_command(argv: list[str]):
    args = parse_args(argv, {})
    assert (args.command, args.standby) == ("run", True)
    assert parse_args(["run"], {}).standby is None
    assert "--standby" in build_parser({}).format_help()


def test_gateway_standby_must_be_a_boolean(capsys: pytest.CaptureFixture[str]):
    config = str(ROOT / "topics.yaml")
    assert main(["--config", config, "check-config"], env={"GATEWAY_STANDBY": "1"}) == 0
    capsys.readouterr()
    assert main(["--config", config, "check-config"], env={"GATEWAY_STANDBY": "maybe"}) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: GATEWAY_STANDBY: 'maybe' is not a boolean (use true or false)"]
