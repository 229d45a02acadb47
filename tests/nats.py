"""A real 3-node NATS JetStream cluster with MQTT (3.1.1) enabled, on free ports, for the cluster tests.

nats-server 2.9 speaks MQTT 3.1.1 only (QoS 0 and 1). Retained messages live in a JetStream stream
replicated to all three nodes (``stream_replicas: 3``); every node also keeps them in memory, filled
from that stream, which is why a retained publish on one node shows up on another a moment later,
and why after a node loss the survivors serve nothing until JetStream has re-elected its leaders.

Seen with nats-server 2.9.10 (tests/cluster/test_nats_cluster.py measures the first two): a CONNECT
gets no CONNACK while there is no meta leader; a QoS 1 SUBSCRIBE is a JetStream consumer, and after
a node loss some of them fail (SUBACK 0x80, after a 4 s API timeout) as long as the node is down;
when a clean session with QoS 1 subscriptions ends while a publish to one of its topics arrives, the
node stalls for 4 s, and a retained publish during the stall can be acknowledged yet not stored.
A topic with '.' or ' ' closes the connection (they are NATS subject syntax).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import free_port

READY_TOPIC = "test-nats-ready/probe"
LOG_TAIL_LINES = 60


def nats_binary() -> str | None:
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    return found if Path(found).is_file() else None


def mqtt_connack(port: int, timeout: float = 5.0) -> int | None:
    """The CONNACK return code of a bare MQTT 3.1.1 CONNECT (clean session), or None without one.

    A raw socket rather than paho: no thread per try, and a CONNECT that NATS holds (it answers only
    once its session stream has a leader) simply times out.
    """
    client_id = f"probe-{uuid.uuid4().hex[:12]}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol name, level 4 = 3.1.1, clean session, keepalive 10 s
    body = variable + len(client_id).to_bytes(2, "big") + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"\x10" + bytes([len(body)]) + body)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return None
                reply += chunk
            sock.sendall(b"\xe0\x00")  # DISCONNECT, so the server drops the session at once
    except OSError:
        return None
    return reply[3] if reply[0] == 0x20 else None


class Probe:
    """A paho 3.1.1 client with a bounded wait on every step, for checks that must not hang.

    Raises TimeoutError without a CONNACK within ``timeout`` (NATS holds a CONNECT while JetStream
    has no leader) and OSError when nothing listens.
    """

    def __init__(self, port: int, timeout: float) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._connected = threading.Event()
        self._arrived = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ready-{uuid.uuid4().hex[:12]}",
                                  protocol=paho.MQTTv311, clean_session=True)
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise TimeoutError(f"no CONNACK from 127.0.0.1:{port} within {timeout}s")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._arrived:
            self.messages.append(msg)
            self._arrived.notify_all()

    def publish_retained(self, topic: str, payload: bytes, timeout: float) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK for {topic} within {timeout}s")

    def sees_retained(self, topic: str, payload: bytes, timeout: float) -> bool:
        """Whether a new subscription gets the retained ``payload`` on ``topic`` before ``timeout``.

        A node fills its in-memory retained store from the replicated stream a moment after the
        publish, and serves retained messages only when a subscription is made, so ask again and
        again. QoS 0, because a QoS 1 subscription needs a JetStream consumer: a slower and (after
        a node loss) failing path that is not what this checks.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._arrived:
                self.messages.clear()
            self.client.subscribe(topic, qos=0)
            try:
                with self._arrived:
                    if self._arrived.wait_for(
                            lambda: any(m.retain and m.payload == payload for m in self.messages), 0.25):
                        return True
            finally:
                self.client.unsubscribe(topic)
            if time.monotonic() > deadline:
                return False

    def subscribe_code(self, topic: str, qos: int, timeout: float) -> int | None:
        """The SUBACK code for one SUBSCRIBE (0-2 granted QoS, 0x80 failure), None without a SUBACK."""
        acked = threading.Event()
        codes: list[int] = []

        def on_suback(client: paho.Client, userdata: object, mid: int, granted: list[paho.ReasonCode],
                      properties: object) -> None:
            codes.extend(c.value for c in granted)
            acked.set()

        self.client.on_subscribe = on_suback
        self.client.subscribe(topic, qos=qos)
        return codes[0] if acked.wait(timeout) and codes else None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    monitor_port: int
    conf_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """Three ``nats-server`` processes forming one JetStream cluster, each with an MQTT listener.

    Each node has its own ``server_name``, store directory and log file (kept across restarts, so a
    failing test can print what happened). ``start()`` returns once every node accepts an MQTT 3.1.1
    CONNECT and a retained message published on one node is served by all of them.
    """

    def __init__(self, workdir: Path, size: int = 3, name: str = "soest-test") -> None:
        self.workdir = workdir
        ports = self._distinct_ports(4 * size)
        self.nodes = [
            NatsNode(name=f"n{i}", client_port=ports[4 * i], cluster_port=ports[4 * i + 1],
                     mqtt_port=ports[4 * i + 2], monitor_port=ports[4 * i + 3],
                     conf_path=workdir / f"n{i}.conf", log_path=workdir / f"n{i}.log")
            for i in range(size)]
        self.started_in: float | None = None
        routes = ", ".join(f"nats-route://127.0.0.1:{n.cluster_port}" for n in self.nodes)
        for node in self.nodes:
            store = workdir / f"{node.name}-store"
            node.conf_path.write_text(
                f'server_name: {node.name}\n'
                f'listen: 127.0.0.1:{node.client_port}\n'
                f'http: 127.0.0.1:{node.monitor_port}\n'
                f'jetstream {{ store_dir: "{store}" }}\n'
                f'cluster {{ name: {name}, listen: 127.0.0.1:{node.cluster_port}, routes: [{routes}] }}\n'
                # stream_replicas 3: the retained store and sessions survive the loss of one node.
                f'mqtt {{ listen: 127.0.0.1:{node.mqtt_port}, stream_replicas: {size} }}\n')

    @staticmethod
    def _distinct_ports(count: int) -> list[int]:
        # free_port() releases the port it found, so two calls can hand out the same one.
        ports: list[int] = []
        while len(ports) < count:
            port = free_port()
            if port not in ports:
                ports.append(port)
        return ports

    # ----------------------------------------------------------------------- addresses

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.mqtt_port for n in self.nodes]

    def hosts_env(self, nodes: list[int] | None = None) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``: the value for GATEWAY_MQTT_HOST."""
        chosen = range(len(self.nodes)) if nodes is None else nodes
        return ",".join(f"127.0.0.1:{self.nodes[i].mqtt_port}" for i in chosen)

    def alive(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.running]

    # ----------------------------------------------------------------------- processes

    def start(self, timeout: float = 30.0) -> NatsCluster:
        began = time.monotonic()
        for i in range(len(self.nodes)):
            self._spawn(i)
        self.wait_ready(timeout)
        self.started_in = time.monotonic() - began  # seconds from spawn to ready, for the record
        return self

    def _spawn(self, i: int) -> None:
        node = self.nodes[i]
        binary = nats_binary()
        assert binary is not None, "nats-server is not installed (scripts/ensure-nats installs it)"
        # -l appends, so a restarted node's log follows the one it had before.
        node.proc = subprocess.Popen([binary, "-c", str(node.conf_path), "-l", str(node.log_path)],
                                     cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``: no goodbye to its peers or clients, its clients' Last Wills are lost."""
        proc = self.nodes[i].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Start node ``i`` again on its ports and store (killing it first if it runs), wait until ready."""
        self.kill(i)
        self._spawn(i)
        self.wait_ready(timeout)

    def heal(self, timeout: float = 30.0) -> None:
        """Restart every node that is not running (a test killed it), then wait until ready."""
        dead = [i for i, n in enumerate(self.nodes) if not n.running]
        for i in dead:
            self._spawn(i)
        if dead:
            self.wait_ready(timeout)

    def stop(self) -> None:
        # SIGTERM to all first, so they shut down in parallel rather than one after another.
        for node in self.nodes:
            if node.running:
                node.proc.terminate()  # type: ignore[union-attr]
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(5)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)
            node.proc = None

    # ----------------------------------------------------------------------- readiness

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait until every running node accepts a 3.1.1 CONNECT and serves a fresh retained message.

        Returns the seconds it took. The order is what makes a fresh cluster ready in 2-4 s
        instead of 7: a CONNECT before JetStream has a meta leader waits out a 4 s API timeout, so
        wait for the leader first (cheap, on the monitoring port); the first CONNECT creates the
        MQTT streams and must come alone (concurrent creators collide and again wait out a
        timeout); the other nodes then only add their own retained-store consumer, in parallel.
        The retained check proves what the tests rely on: the replicated retained store works on
        every node.
        """
        began = time.monotonic()
        deadline = began + timeout
        nodes = self.alive()
        assert nodes, "no NATS node is running"
        for i in nodes:
            self._wait(lambda i=i: self._reported_leader(i) is not None, deadline,
                       f"node {i} knows a JetStream meta leader")
        self._wait(lambda: self._connack(nodes[0], deadline), deadline, f"node {nodes[0]} accepts a CONNECT")
        others = [threading.Thread(target=self._connack, args=(i, deadline)) for i in nodes[1:]]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join()
        for i in nodes[1:]:
            self._wait(lambda i=i: self._connack(i, deadline), deadline, f"node {i} accepts a CONNECT")
        token = uuid.uuid4().hex.encode()
        self._wait(lambda: self._retained_everywhere(nodes, token, deadline), deadline,
                   "a retained message published on one node is served by every node")
        return time.monotonic() - began

    def _connack(self, i: int, deadline: float) -> bool:
        """One MQTT 3.1.1 CONNECT to node ``i``, accepted; tried until ``deadline`` in the caller's thread."""
        while True:
            if mqtt_connack(self.nodes[i].mqtt_port, timeout=5.0) == 0:
                return True
            if time.monotonic() > deadline or not self.nodes[i].running:
                return False
            time.sleep(0.2)  # each refused CONNECT is an error line in the node's log

    def _retained_everywhere(self, nodes: list[int], token: bytes, deadline: float) -> bool:
        step = max(0.5, min(5.0, deadline - time.monotonic()))
        probes: list[Probe] = []
        try:
            for i in nodes:
                probes.append(Probe(self.nodes[i].mqtt_port, step))
            probes[0].publish_retained(READY_TOPIC, token, step)
            if not all(p.sees_retained(READY_TOPIC, token, step) for p in probes):
                return False
            # Clear the probe again: an empty retained payload removes the topic on NATS as on Mosquitto.
            probes[0].publish_retained(READY_TOPIC, b"", step)
            return True
        except (TimeoutError, RuntimeError, OSError):
            return False
        finally:
            for p in probes:
                p.close()

    def _wait(self, check: Callable[[], bool], deadline: float, what: str) -> None:
        while True:
            if check():
                return
            dead = [n.name for n in self.nodes if n.proc is not None and n.proc.poll() is not None]
            if time.monotonic() > deadline or dead:
                reason = f"exited: {', '.join(dead)}" if dead else "timed out"
                raise AssertionError(f"NATS cluster not ready ({reason}): waiting until {what}\n{self.log_tail()}")
            time.sleep(0.05)

    # ----------------------------------------------------------------------- diagnostics

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server_name as the running nodes report it (monitoring port)."""
        for i in self.alive():
            leader = self._reported_leader(i)
            if leader:
                return leader
        return None

    def _reported_leader(self, i: int) -> str | None:
        url = f"http://127.0.0.1:{self.nodes[i].monitor_port}/jsz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                leader = json.load(resp).get("meta_cluster", {}).get("leader")
        except (OSError, ValueError):
            return None
        return str(leader) if leader else None

    def log(self, i: int) -> str:
        path = self.nodes[i].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = []
        for i, node in enumerate(self.nodes):
            tail = self.log(i).splitlines()[-lines:]
            state = "running" if node.running else "down"
            parts.append(f"----- {node.name} ({state}, mqtt {node.mqtt_port}) {node.log_path}\n" + "\n".join(tail))
        return "\n".join(parts)
