"""Two gateways with --standby on one real Mosquitto: one publishes, the other takes over (issue #11, point 5)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    GatewayProcess,
    Mosquitto,
    Msg,
    Subscriber,
    barrier,
    expected_tree,
    free_port,
    fresh_fixture,
    late_will,
    publish,
    retained_tree,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.broker

LEASE = 3.0
# Issue #11 asks for 30 s with the default lease of 15 s; with the tests' lease a takeover must
# come within two leases, plus this much for the first fetches on a busy machine.
MARGIN = 9.0
LEASE_TOPIC = "soest/gateway/lease"
STATES = {"soest/brightsky/temperature", "soest/brightsky/irradiance"}
WAITING = re.compile(r"standby: instance (\S+) waits")


def standby_config(directory: Path, upstream: Any) -> Path:
    """Bright Sky and the sun, both quiet between their first runs: silence on the broker means something."""
    directory.mkdir()
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))

    def edit(data: dict[str, Any]) -> None:
        data["sources"] = {k: v for k, v in data["sources"].items() if k in ("brightsky", "sun")}
        data["sources"]["sun"]["every"] = "1h"
        data["sources"]["sun"]["max_age"] = "2h"
        data["mqtt"]["lease"] = f"{LEASE:g}s"

    return write_config(directory / "topics.yaml", upstream.url, edit=edit)


@pytest.fixture
def configs(tmp_path: Path, upstream: Any) -> tuple[Path, Path]:
    return standby_config(tmp_path / "a", upstream), standby_config(tmp_path / "b", upstream)


@pytest.fixture
def procs() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.terminate()


def start(procs: list[GatewayProcess], config: Path, broker: Mosquitto,
          env: dict[str, str] | None = None) -> tuple[GatewayProcess, str]:
    """A gateway with --standby (after the command, as a user would type it) and its instance id."""
    proc = GatewayProcess(config, broker.port, args=["--standby"], env=env)
    procs.append(proc)
    instance = wait_until(lambda: (m := WAITING.search(proc.log)) and m.group(1), timeout=15)
    return proc, instance


def beats(sub: Subscriber, after: int = 0) -> list[Msg]:
    return [m for m in sub.snapshot()[after:] if m.topic == LEASE_TOPIC]


def holders(messages: list[Msg]) -> set[str]:
    return {json.loads(m.payload)["instance"] for m in messages}


def steady_holder(sub: Subscriber, count: int = 3) -> str:
    """The one instance id in the next ``count`` heartbeats (live, retained, QoS 1)."""
    mark = sub.mark()
    seen = wait_until(lambda: len(b := beats(sub, mark)) >= count and b, timeout=count * LEASE + MARGIN)
    assert all(m.retain and m.qos == 1 for m in seen)
    ids = holders(seen)
    assert len(ids) == 1, f"more than one instance holds the lease: {sorted(ids)}"
    return ids.pop()


def active_one(sub: Subscriber, *candidates: tuple[GatewayProcess, str]) -> tuple[GatewayProcess, str]:
    """Wait until one candidate took over and every other one says it is standby for it."""
    def settled() -> tuple[GatewayProcess, str] | None:
        for proc, instance in candidates:
            others = [(p, i) for p, i in candidates if i != instance]
            if f"this instance {instance} takes over" in proc.log and all(
                    f"instance {instance} is active" in p.log or f"instance {instance} (active since" in p.log
                    for p, _ in others):
                return proc, instance
        return None

    found = wait_until(settled, timeout=2 * LEASE + MARGIN)
    assert steady_holder(sub) == found[1]
    return found


def test_two_standbys_one_becomes_active(configs: tuple[Path, Path], broker: Mosquitto, upstream: Any,
                                         procs: list[GatewayProcess]):
    sub = Subscriber(broker.port, LEASE_TOPIC, live=True)
    a = start(procs, configs[0], broker)
    b = start(procs, configs[1], broker)
    (active, instance) = active_one(sub, a, b)
    standby = b if active is a[0] else a
    tree = retained_tree(broker.port, expected_tree(configs[0], STATES))
    info = json.loads(tree["soest/gateway/info"])
    assert (info["instance"], info["role"]) == (instance, "active")
    assert tree["soest/gateway/status"] == b"online"
    assert json.loads(tree[LEASE_TOPIC])["instance"] == instance

    # After a split brain the loser's old session can end after the winner's online (the broker
    # takes its new CONNECT first): its Will says offline for the serving gateway. The active
    # one hears it and says online again; the standby, which has no status to defend, does not.
    live = Subscriber(broker.port, "soest/gateway/status", live=True)
    live.wait_for("soest/gateway/status", "online")  # the retained one, before anything else
    late_will(broker.port, "soest/gateway/status")
    will = live.wait_for("soest/gateway/status", "offline")
    answer = live.wait_for("soest/gateway/status", "online", after=live.snapshot().index(will) + 1, timeout=5)
    assert (answer.retain, answer.qos) == (True, 1)
    assert retained_tree(broker.port, {"soest/gateway/status"})["soest/gateway/status"] == b"online"
    said_again = "said offline while this instance is connected"
    assert said_again in active.log
    assert said_again not in standby[0].log
    assert "Traceback" not in active.log + standby[0].log
    live.close()
    sub.close()


def test_a_standby_publishes_nothing_and_has_no_last_will(configs: tuple[Path, Path], broker: Mosquitto,
                                                          upstream: Any, procs: list[GatewayProcess]):
    lease_sub = Subscriber(broker.port, LEASE_TOPIC, live=True)
    a = start(procs, configs[0], broker)
    active_one(lease_sub, a)
    everything = Subscriber(broker.port, "#", live=True)
    everything.sync()
    mark = everything.mark()
    standby, instance = start(procs, configs[1], broker)
    wait_until(lambda: f"standby: instance {a[1]} is active" in standby.log, timeout=LEASE + MARGIN)
    # The active's next heartbeat, sent after the standby said it saw one: anything the standby
    # published before saying so has arrived by then (the broker keeps one order for us).
    after_log = everything.mark()
    wait_until(lambda: beats(everything, after_log), timeout=LEASE + MARGIN)
    received = everything.snapshot()[mark:]
    assert {m.topic for m in received} == {LEASE_TOPIC}
    assert holders(received) == {a[1]}
    # No Last Will: its death says nothing on the shared status topic. The broker's log line says
    # it has handled the disconnect (a Will would have gone out then); the barrier, that all arrived.
    standby.kill()
    client = f"soest-gateway-{instance.rsplit('-', 1)[1]}"
    log_file = broker.workdir / f"mosquitto-{broker.port}.log"
    wait_until(lambda: re.search(rf"Client {client} (closed its connection|disconnected)", log_file.read_text()))
    end = barrier(everything, broker.port, topic="soest/test/barrier")
    assert not [m for m in everything.snapshot()[mark:end] if m.topic == "soest/gateway/status"]
    everything.close()
    lease_sub.close()


def test_the_standby_takes_over_from_a_killed_active_and_the_old_one_stays_standby(
        configs: tuple[Path, Path], broker: Mosquitto, upstream: Any, procs: list[GatewayProcess]):
    lease_sub = Subscriber(broker.port, LEASE_TOPIC, live=True)
    first = start(procs, configs[0], broker)
    active_one(lease_sub, first)
    second = start(procs, configs[1], broker)
    wait_until(lambda: f"standby: instance {first[1]} is active" in second[0].log, timeout=LEASE + MARGIN)
    expected = expected_tree(configs[1], STATES)
    live = Subscriber(broker.port, "soest/#", "homeassistant/#", live=True)
    live.sync()
    mark = live.mark()

    first[0].kill()
    killed = time.monotonic()
    assert live.wait_for("soest/gateway/status", "offline", after=mark).retain  # the Last Will
    # The new active publishes every state, status and info topic itself (discovery configs it finds
    # unchanged on the broker stay as they are), within two leases and the first fetches.
    own = {t for t in expected if not t.startswith("homeassistant/")}

    def served() -> bool:
        sent = {m.topic for m in live.snapshot()[mark:] if m.retain and m.payload}
        return own <= sent

    wait_until(served, timeout=2 * LEASE + MARGIN)
    takeover = time.monotonic() - killed
    assert live.wait_for("soest/gateway/status", "online", after=mark).retain
    tree = retained_tree(broker.port, expected)
    assert tree["soest/gateway/status"] == b"online"
    assert json.loads(tree["soest/gateway/info"])["instance"] == second[1]
    assert f"active: no heartbeat from instance {first[1]} for 3s; this instance {second[1]} takes over" \
        in second[0].log
    print(f"takeover after SIGKILL: {takeover:.1f}s with a {LEASE:g}s lease")

    # The killed one comes back: it hears the new active and stays standby.
    port = free_port()
    back = start(procs, configs[0], broker, env={"GATEWAY_HTTP_PORT": str(port)})
    wait_until(lambda: f"standby: instance {second[1]} is active" in back[0].log, timeout=LEASE + MARGIN)
    assert steady_holder(lease_sub, count=4) == second[1]
    status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5).read())
    assert (status["role"], status["instance"], status["broker"]["connected"]) == ("standby", back[1], True)
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
    assert f"this instance {back[1]} takes over" not in back[0].log
    assert "Traceback" not in second[0].log + back[0].log
    live.close()
    lease_sub.close()


def test_an_active_that_hears_a_later_takeover_steps_down_and_takes_over_again(
        configs: tuple[Path, Path], broker: Mosquitto, upstream: Any, procs: list[GatewayProcess]):
    """Split brain, from the loser's side: a rival's heartbeats (later ``since``) arrive while it is active."""
    lease_sub = Subscriber(broker.port, LEASE_TOPIC, live=True)
    proc, instance = start(procs, configs[0], broker)
    active_one(lease_sub, (proc, instance))
    retained_tree(broker.port, expected_tree(configs[0], STATES))
    everything = Subscriber(broker.port, "#", live=True)
    everything.sync()
    rival = "zz-rival"
    since = datetime.now(UTC).isoformat(timespec="milliseconds")
    stop = threading.Event()

    def rival_beats() -> None:
        seq = 0
        while not stop.wait(0 if seq == 0 else LEASE / 3):
            seq += 1
            payload = json.dumps({"instance": rival, "since": since, "lease_s": LEASE, "seq": seq})
            publish(broker.port, LEASE_TOPIC, payload, retain=True)

    thread = threading.Thread(target=rival_beats, daemon=True)
    thread.start()
    try:
        wait_until(lambda: f"outranks this instance {instance}" in proc.log, timeout=LEASE + MARGIN)
        stepped_down = barrier(everything, broker.port) + 1  # what it sent while still active has arrived
        # A few more of the rival's heartbeats: time in which a gateway still serving would show.
        wait_until(lambda: len(beats(everything, stepped_down)) >= 3, timeout=3 * LEASE + MARGIN)
    finally:
        stop.set()
        thread.join(5)
    # The rival falls silent: the old active is an ordinary standby and takes over again.
    wait_until(lambda: f"no heartbeat from instance {rival} for 3s; this instance {instance} takes over" in proc.log,
               timeout=2 * LEASE + MARGIN)
    online = everything.wait_for("soest/gateway/status", "online", after=stepped_down, timeout=MARGIN)
    # Its first message after stepping down is that `online` (on the new connection, with the Will):
    # until then it sent nothing, not even on the connection it stepped down on.
    received = everything.snapshot()
    quiet = received[stepped_down:received.index(online, stepped_down)]
    assert {m.topic for m in quiet} == {LEASE_TOPIC}
    assert holders(quiet) == {rival}
    everything.wait_for("soest/brightsky/temperature", "24.3", after=stepped_down, timeout=MARGIN)
    assert steady_holder(lease_sub) == instance
    # ... with the Last Will again.
    proc.kill()
    assert everything.wait_for("soest/gateway/status", "offline", after=stepped_down).retain
    assert "Traceback" not in proc.log
    everything.close()
    lease_sub.close()
