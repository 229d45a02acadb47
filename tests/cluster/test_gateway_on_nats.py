"""The real gateway on a real 3-node NATS JetStream cluster: failover between nodes (issue #11, points 4 and 5).

The gateway gets all three MQTT listeners in GATEWAY_MQTT_HOST and the default protocol choice
(``auto``: NATS refuses MQTT 5, so it falls back to 3.1.1). Every test has its own base topic and
city slug: the cluster (and its replicated retained store) is shared by the module.

Readers subscribe at QoS 0 over 3.1.1 (see tests/cluster/test_nats_cluster.py: QoS 1 readers are
JetStream consumers, which slow a node loss down for everyone). The times of a failover are printed;
only the issue's bounds are asserted.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from tests.helpers import (
    FixtureServer,
    GatewayProcess,
    Msg,
    Subscriber,
    SubscriptionRefused,
    expected_tree,
    fresh_fixture,
    publish,
    retained_tree,
    wait_until,
    write_config,
)
from tests.nats import NatsCluster, mqtt_connack
from tests.sources import serve_default_sources

pytestmark = pytest.mark.cluster

V311 = paho.MQTTv311
FAILOVER_S = 10.0  # issue #11: connected to another node within 10 s of losing its own
TAKEOVER_S = 30.0  # issue #11: a standby serves within 30 s
# What it publishes then reaches a surviving node's subscribers once JetStream has leaders again: a
# retained publish holds the connection's read loop up to 4 s each while there are none (nats-server
# logs "Readloop processing time: 4.0s"), so on a loaded 2-core machine that took up to 40 s.
DELIVERY_S = 90.0
LEASE = 3.0
CONNECTED = re.compile(r"connected to MQTT broker 127\.0\.0\.1:(\d+) \(MQTT ([\d.]+)\)")
TAKES_OVER = re.compile(r"this instance (\S+) takes over")
WAITING = re.compile(r"standby: instance (\S+) waits")
GRACE_S = 2.5  # after the cluster answers again: the gateway's 1.5 s CONNACK wait, and a retry


class ClusterAnswers:
    """From ``since`` on, a bare CONNECT to the surviving nodes every 0.25 s: when did one answer first?"""

    def __init__(self, ports: list[int], since: float) -> None:
        self.first: float | None = None
        self._since = since
        self._stop = threading.Event()
        threading.Thread(target=self._run, args=(ports,), daemon=True).start()

    def _run(self, ports: list[int]) -> None:
        while not self._stop.is_set() and self.first is None:
            for port in ports:
                threading.Thread(target=self._try, args=(port,), daemon=True).start()
            self._stop.wait(0.25)

    def _try(self, port: int) -> None:
        if mqtt_connack(port, timeout=6) == 0 and self.first is None:
            self.first = time.monotonic() - self._since

    def stop(self) -> None:
        self._stop.set()


class Tree:
    """One test's base topic and slug, and the filters that cover exactly its part of the store."""

    def __init__(self) -> None:
        self.slug = f"c{uuid.uuid4().hex[:8]}"
        self.base = self.slug
        self.filters = (f"{self.base}/#", f"homeassistant/+/{self.slug}/#")

    def config(self, path: Path, upstream: FixtureServer, **mqtt: Any) -> Path:
        def edit(data: dict[str, Any]) -> None:
            data["mqtt"].update(mqtt)

        path.parent.mkdir(parents=True, exist_ok=True)
        return write_config(path, upstream.url, base=self.base, slug=self.slug, edit=edit)


def gateway(config: Path, cluster: NatsCluster, order: list[int] | None = None, args: tuple[str, ...] = ()
            ) -> GatewayProcess:
    return GatewayProcess(config, cluster.mqtt_ports[0], args=args,
                          env={"GATEWAY_MQTT_HOST": cluster.hosts_env(order)})


def node_of(proc: GatewayProcess, cluster: NatsCluster, after: int = 0) -> int:
    """The node the gateway's newest connection (after log position ``after``) went to."""
    found = CONNECTED.findall(proc.log[after:])
    assert found, "the gateway has not connected yet"
    port, protocol = found[-1]
    assert protocol == "3.1.1"  # auto fell back: NATS takes no MQTT 5
    return cluster.mqtt_ports.index(int(port))


def fresh(port: int, topic: str) -> bytes | None:
    """The retained payload a new subscriber on ``port`` gets for ``topic`` (None: nothing retained)."""
    try:
        sub = Subscriber(port, topic, protocol=V311, qos=0)
    except SubscriptionRefused:
        return None
    try:
        sub.sync()
        got = [m.payload for m in sub.on(topic) if m.retain]
        return got[-1] if got else None
    finally:
        sub.close()


@pytest.fixture
def procs() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.terminate()


def test_the_gateway_survives_losing_its_node(nats_cluster: NatsCluster, upstream: FixtureServer, tmp_path: Path,
                                              procs: list[GatewayProcess], capsys: pytest.CaptureFixture[str]):
    tree = Tree()
    served = serve_default_sources(upstream, upstream.url)
    config = tree.config(tmp_path / "topics.yaml", upstream)
    expected = expected_tree(config, served)
    proc = gateway(config, nats_cluster)
    procs.append(proc)
    status = f"{tree.base}/gateway/status"

    # The whole tree, read on a node the gateway is not connected to.
    wait_until(lambda: CONNECTED.search(proc.log), 30)
    home = node_of(proc, nats_cluster)
    other = nats_cluster.mqtt_ports[(home + 1) % 3]
    retained_tree(other, expected, timeout=60, protocol=V311, qos=0, filters=tree.filters)

    # SIGKILL its node: no DISCONNECT, no Last Will; the gateway must notice and move on.
    mark = len(proc.log)
    nats_cluster.kill(home)
    killed = time.monotonic()
    ready = ClusterAnswers([p for i, p in enumerate(nats_cluster.mqtt_ports) if i != home], killed)
    try:
        wait_until(lambda: CONNECTED.search(proc.log[mark:]), FAILOVER_S + 20)
        failover = time.monotonic() - killed
    finally:
        ready.stop()
    # Within 10 s; unless the cluster itself answered nobody for that long (a new JetStream leader
    # takes 2-8 s here), then within a moment of its first answer to anyone.
    assert failover <= FAILOVER_S or (ready.first is not None and failover <= ready.first + GRACE_S), \
        f"connected {failover:.1f} s after the kill; the cluster answered a CONNECT after {ready.first} s"
    survivor = nats_cluster.mqtt_ports[node_of(proc, nats_cluster, mark)]
    assert node_of(proc, nats_cluster, mark) != home

    wait_until(lambda: fresh(survivor, status) == b"online", 30, interval=0.5)
    online = time.monotonic() - killed
    retained_tree(survivor, expected, timeout=60, protocol=V311, qos=0, filters=tree.filters)
    whole = time.monotonic() - killed

    # Home Assistant comes up on a surviving node: the configs go out again, live.
    watcher = Subscriber(survivor, f"homeassistant/+/{tree.slug}/#", protocol=V311, qos=0)
    try:
        watcher.sync()  # the retained configs are in: whatever comes after a birth was sent for it
        config_topic = f"homeassistant/sensor/{tree.slug}/{tree.slug}_brightsky_temperature/config"

        def reannounced() -> Msg | None:
            # Births are repeated: while the node is missing, a subscription may still be retried.
            at = watcher.mark()
            publish(survivor, "homeassistant/status", "online", protocol=V311)
            try:
                return watcher.wait_for(config_topic, timeout=3, after=at)
            except AssertionError:
                return None

        live = wait_until(reannounced, 30, interval=0)
        # (NATS keeps the retain flag on live messages, unlike Mosquitto over 3.1.1.)
        assert json.loads(live.payload)["state_topic"] == f"{tree.base}/brightsky/temperature"
    finally:
        watcher.close()
    births = time.monotonic() - killed

    # And the refresh button pressed there is taken (which sources it fetches depends on how
    # recently each was fetched).
    def refreshed() -> bool:
        publish(survivor, f"{tree.base}/gateway/refresh", "PRESS", protocol=V311)
        return "refresh: fetching" in proc.log[mark:]

    wait_until(refreshed, 30, interval=2.5)  # presses closer than 2 s apart are ignored
    with capsys.disabled():
        print(f"\nnode {home} killed: the survivors answered a CONNECT after {ready.first:.1f} s; the gateway "
              f"connected to one {failover:.1f} s after the kill, online there after "
              f"{online:.1f} s, whole tree ({len(expected)} topics) after {whole:.1f} s, "
              f"HA birth acted on after {births:.1f} s")
    assert "Traceback" not in proc.log


def test_a_standby_takes_over_when_the_active_gateway_and_its_node_die(
        nats_cluster: NatsCluster, upstream: FixtureServer, tmp_path: Path, procs: list[GatewayProcess],
        capsys: pytest.CaptureFixture[str]):
    """The active one's Last Will dies with its node: only the lease tells the standby."""
    tree = Tree()
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))
    configs = [tree.config(tmp_path / name / "topics.yaml", upstream, lease=f"{LEASE:g}s") for name in "ab"]
    lease_topic = f"{tree.base}/gateway/lease"
    # Different first nodes (0 and 1); the reader sits on node 2, which survives either kill.
    a = gateway(configs[0], nats_cluster, [0, 1, 2], args=("--standby",))
    b = gateway(configs[1], nats_cluster, [1, 2, 0], args=("--standby",))
    procs += [a, b]
    ids = {p: wait_until(lambda p=p: (m := WAITING.search(p.log)) and m.group(1), 30) for p in (a, b)}
    keep = 2
    watcher = Subscriber(nats_cluster.mqtt_ports[keep], lease_topic, protocol=V311, qos=0)
    try:
        def holder() -> str | None:
            """The one instance in the last three heartbeats, once there are three."""
            last = {json.loads(m.payload)["instance"] for m in watcher.on(lease_topic)[-3:]}
            return last.pop() if len(watcher.on(lease_topic)) >= 3 and len(last) == 1 else None

        def settled() -> str | None:
            """The holder, once the other one says so too: right after both took over at the start,
            the last three heartbeats may come from the one that is about to step down. NATS flags live
            heartbeats retained too, so this also shows that the lease hears them as live ("is active",
            or "outranks this instance")."""
            held = holder()
            other = b if held == ids[a] else a
            return held if held is not None and f"standby: instance {held} " in other.log else None

        try:
            held = wait_until(settled, 6 * LEASE + 20)
        except AssertionError:
            raise AssertionError(f"no settled holder; the logs:\n{a.log[-3000:]}\n\n{b.log[-3000:]}") from None
        active, standby = (a, b) if ids[a] == held else (b, a)
        home = node_of(active, nats_cluster)
        if home == keep:  # its first nodes held the CONNECT while the cluster elected a leader: read elsewhere
            keep = next(n for n in range(3) if n != home)
            watcher.close()
            watcher = Subscriber(nats_cluster.mqtt_ports[keep], lease_topic, protocol=V311, qos=0)
            wait_until(lambda: json.loads(watcher.on(lease_topic)[-1].payload)["instance"] == held
                       if watcher.on(lease_topic) else False, 3 * LEASE)
        mark, logged = watcher.mark(), len(standby.log)
        active.kill()
        nats_cluster.kill(home)
        killed = time.monotonic()
        wait_until(lambda: f"this instance {ids[standby]} takes over" in standby.log[logged:], TAKEOVER_S)
        takeover = time.monotonic() - killed
        # It serves: its own heartbeats arrive on the surviving node, and nobody else's after them.
        # (Its connection may still move once or twice while the cluster elects a new leader.)
        try:
            wait_until(lambda: ids[standby] in [json.loads(m.payload)["instance"]
                                                for m in watcher.snapshot()[mark:] if m.topic == lease_topic],
                       killed + DELIVERY_S - time.monotonic())
        except AssertionError:
            raise AssertionError(f"no heartbeat of the standby on node {keep}; its log:\n"
                                 f"{standby.log[logged:][-4000:]}") from None
        serving = time.monotonic() - killed
        after = [json.loads(m.payload)["instance"] for m in watcher.snapshot()[mark:] if m.topic == lease_topic]
        assert set(after[after.index(ids[standby]):]) == {ids[standby]}
    finally:
        watcher.close()
    survivor = nats_cluster.mqtt_ports[keep]
    for topic, payload in ((f"{tree.base}/gateway/status", b"online"), (f"{tree.base}/brightsky/temperature", b"24.3")):
        seen: list[bytes | None] = []
        try:
            wait_until(lambda t=topic, v=payload, got=seen: got.append(fresh(survivor, t)) or got[-1] == v,
                       max(killed + DELIVERY_S - time.monotonic(), 1), interval=0.5)
        except AssertionError:
            raise AssertionError(f"{topic}: retained on node {keep}: {seen[-3:]}, not {payload!r}; the standby's "
                                 f"log:\n{standby.log[logged:][-3000:]}") from None
    whole = time.monotonic() - killed
    with capsys.disabled():
        print(f"\nactive gateway and its node {home} killed: the standby took over {takeover:.1f} s later, its "
              f"heartbeats on node {keep} after {serving:.1f} s, status and values there after {whole:.1f} s")
    assert "Traceback" not in standby.log
