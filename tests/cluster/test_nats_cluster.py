"""A real 3-node NATS JetStream cluster with MQTT, with raw paho MQTT 3.1.1 clients (no gateway).

What the gateway's failover (issue #11) has to live with, checked and measured on the broker alone:
the replicated retained store, the topic characters of our tree, and what a node loss does. The
numbers (start-up, how long retained messages and QoS 1 subscriptions are unavailable) are
printed, not asserted; only the outcomes and the generous bounds are.

Readers subscribe at QoS 0 unless QoS 1 is the point: on nats-server 2.9 every QoS 1 subscription
is a JetStream consumer, deleted again when its clean session ends, and a delete that races a
publish to the same topic stalls the node for 4 s (its JetStream API timeout); a retained publish
during the stall can be lost although it was acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho
import pytest

from adapters import ADAPTERS
from gateway import catalog, contract, discovery
from gateway.config import load
from tests.helpers import ROOT, Subscriber, mqtt_client, publish, retained_tree, wait_until
from tests.nats import NatsCluster, Probe

pytestmark = pytest.mark.cluster

V311 = paho.MQTTv311
# How long the node stays down while QoS 1 subscriptions are probed; failures are intermittent
# and last as long as the node is gone, so a longer window only repeats the pattern.
DOWN_WINDOW_S = 15.0
FAILOVER_BOUND_S = 60.0


def tag() -> str:
    return uuid.uuid4().hex[:8]


def fresh_retained(port: int, topic: str) -> list[bytes]:
    """Retained payloads a new 3.1.1 QoS 0 subscriber on ``port`` gets for ``topic`` (once all have arrived)."""
    sub = Subscriber(port, topic, protocol=V311, qos=0)
    try:
        sub.sync()
        return [m.payload for m in sub.on(topic) if m.retain]
    finally:
        sub.close()


def test_a_retained_message_published_on_one_node_reaches_a_fresh_subscriber_on_another(
        nats_cluster: NatsCluster, capsys: pytest.CaptureFixture[str]):
    with capsys.disabled():
        print(f"\nNATS cluster ready {nats_cluster.started_in:.2f} s after spawn; "
              f"meta leader {nats_cluster.meta_leader()}; GATEWAY_MQTT_HOST={nats_cluster.hosts_env()}")
    first, _, third = nats_cluster.mqtt_ports
    topic = f"soest/test/nats_{tag()}/temperature"
    publish(first, topic, "21.5", retain=True, protocol=V311)
    # Node 2 fills its copy of the retained store from the replicated stream a moment later.
    wait_until(lambda: fresh_retained(third, topic) == [b"21.5"], timeout=10, interval=0.1)
    sub = Subscriber(third, topic, protocol=V311)
    try:
        sub.sync()
        [msg] = sub.on(topic)
        assert (msg.payload, msg.retain, msg.qos) == (b"21.5", True, 1)
    finally:
        sub.close()


def test_an_empty_retained_payload_clears_the_topic_on_every_node(nats_cluster: NatsCluster):
    first, second, third = nats_cluster.mqtt_ports
    topic = f"soest/test/nats_{tag()}/status"
    publish(first, topic, "online", retain=True, protocol=V311)
    wait_until(lambda: fresh_retained(third, topic) == [b"online"], timeout=10, interval=0.1)
    publish(second, topic, b"", retain=True, protocol=V311)
    # sync() in fresh_retained is the positive marker: the whole retained store has arrived without it.
    wait_until(lambda: fresh_retained(third, topic) == [] and fresh_retained(first, topic) == [],
               timeout=10, interval=0.1)


def default_tree_topics() -> set[str]:
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    return {r.topic for r in contract.expand(cat, list(discovery.configs(cat))) if r.retained}


def test_every_retained_topic_of_the_default_tree_is_accepted_and_served_by_another_node(
        nats_cluster: NatsCluster, capsys: pytest.CaptureFixture[str]):
    # NATS closes the connection on a topic with '.' or ' ' (they are NATS subject syntax);
    # this proves none of ours has one, and that the whole tree survives replication.
    topics = default_tree_topics()
    first, second, _ = nats_cluster.mqtt_ports
    client = mqtt_client(V311)
    client.max_inflight_messages_set(50)
    client.connect("127.0.0.1", first)
    client.loop_start()
    began = time.monotonic()
    try:
        infos = [client.publish(t, t.encode(), qos=1, retain=True) for t in sorted(topics)]
        for info in infos:
            info.wait_for_publish(10)
        assert all(info.is_published() for info in infos)
    finally:
        client.disconnect()
        client.loop_stop()
    published = time.monotonic() - began
    tree = retained_tree(second, topics, protocol=V311, qos=0)
    with capsys.disabled():
        print(f"\n{len(topics)} retained topics of the default tree: published QoS 1 on node 0 in {published:.2f} s "
              f"({len(topics) / published:.0f} msg/s, in-flight 50), all served by node 1")
    assert {t: tree[t] for t in topics} == {t: t.encode() for t in topics}


# --------------------------------------------------------------------------- node loss


@dataclass
class SubackLog:
    """QoS 1 SUBSCRIBE attempts from fresh clients on one node: (seconds after the kill, outcome)."""

    port: int
    since: float
    attempts: list[tuple[float, float, str]] = field(default_factory=list)  # start, took, outcome
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            outcome = self._attempt()
            self.attempts.append((began - self.since, time.monotonic() - began, outcome))
            self.stop.wait(0.2)

    def _attempt(self) -> str:
        try:
            probe = Probe(self.port, timeout=10)
        except (TimeoutError, OSError):
            return "no CONNACK"
        try:
            code = probe.subscribe_code(f"soest/test/q1/{tag()}", qos=1, timeout=10)
        finally:
            probe.close()
        return "no SUBACK" if code is None else f"0x{code:02x}"

    def summary(self, after: float = 0.0) -> str:
        rows = [a for a in self.attempts if a[0] >= after]
        bad = [a for a in rows if a[2] != "0x01"]
        spans = ", ".join(f"{s:.1f}s {o} ({d:.1f}s)" for s, d, o in bad) or "none"
        return f"{len(rows)} attempts, {len(bad)} failed: {spans}"


def served_again(port: int, filt: str, want: set[str], timeout: float) -> bool:
    """A fresh QoS 0 subscription on ``port`` gets every topic in ``want`` as retained."""
    try:
        probe = Probe(port, timeout)
    except (TimeoutError, OSError):
        return False
    try:
        probe.client.subscribe(filt, qos=0)
        return bool(wait_until_or_false(lambda: want <= {m.topic for m in probe.messages if m.retain}, 1.0))
    finally:
        probe.close()


def wait_until_or_false(check: Callable[[], bool], timeout: float) -> bool:
    try:
        wait_until(check, timeout=timeout, interval=0.05)
    except AssertionError:
        return False
    return True


def publish_bounded(port: int, topic: str, payload: str) -> bool:
    try:
        probe = Probe(port, timeout=5)
    except (TimeoutError, OSError):
        return False
    try:
        probe.publish_retained(topic, payload.encode(), timeout=5)
        return True
    except (TimeoutError, RuntimeError):
        return False
    finally:
        probe.close()


def test_node_loss_retained_store_recovers_and_qos1_subscriptions_fail_for_a_while(
        nats_cluster: NatsCluster, capsys: pytest.CaptureFixture[str]):
    first, second, third = nats_cluster.mqtt_ports
    base = f"soest/test/nats_{tag()}"
    before = {f"{base}/before/{i}" for i in range(5)}
    for topic in sorted(before):
        publish(first, topic, "before", retain=True, protocol=V311)
    retained_tree(third, before, protocol=V311, qos=0)  # everything is replicated before the kill
    leader = nats_cluster.meta_leader()
    killed = time.monotonic()
    nats_cluster.kill(0)
    logs = [SubackLog(port, killed) for port in (second, third)]
    threads = [threading.Thread(target=log.run, daemon=True) for log in logs]
    for thread in threads:
        thread.start()
    try:
        # The retained topics from before the kill, read on a surviving node.
        wait_until(lambda: served_again(third, f"{base}/before/#", before, 5), timeout=FAILOVER_BOUND_S,
                   interval=0.1)
        gap = time.monotonic() - killed
        # A retained publish on one survivor, read by a fresh subscriber on the other.
        seq = iter(range(10_000))
        after = f"{base}/after"
        wait_until(lambda: publish_bounded(second, after, str(next(seq)))
                   and served_again(third, after, {after}, 5), timeout=FAILOVER_BOUND_S, interval=0.1)
        cross = time.monotonic() - killed
        time.sleep(max(0.0, DOWN_WINDOW_S - (time.monotonic() - killed)))  # the probes keep probing
        restarted = time.monotonic()
        nats_cluster.restart(0)
        ready = time.monotonic() - restarted
        # The restarted node caught up with what was published while it was down.
        wait_until(lambda: served_again(first, f"{base}/#", before | {after}, 5), timeout=30, interval=0.1)
        # Probe on for a moment after the restart, to see the failures stop.
        time.sleep(3)
    finally:
        for log in logs:
            log.stop.set()
        for thread in threads:
            thread.join(25)
    back = restarted - killed
    with capsys.disabled():
        print(f"\nnode 0 SIGKILLed (meta leader before: {leader}); after the kill:")
        print(f"  retained topics from before served again on node 2 after {gap:.1f} s")
        print(f"  a retained publish on node 1 readable on node 2 after {cross:.1f} s")
        for name, log in zip(("node 1", "node 2"), logs, strict=True):
            print(f"  QoS 1 SUBSCRIBE on {name}, node 0 down: {log.summary()}")
        print(f"  node 0 restarted at {back:.1f} s, cluster ready {ready:.1f} s later; from then on:")
        for name, log in zip(("node 1", "node 2"), logs, strict=True):
            print(f"  QoS 1 SUBSCRIBE on {name}: {log.summary(after=back + ready)}")
    assert all(log.attempts for log in logs)
