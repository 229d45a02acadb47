"""Throughput on a 3-node NATS JetStream cluster (issue #11, point 6), with Mosquitto for comparison.

Starts its own brokers on free ports: a NATS cluster (``mqtt { stream_replicas: 3 }``, as in
docs/deployment.md) and one Mosquitto. On each it measures, for retained QoS 1 publishes over
MQTT 3.1.1 (all NATS speaks), and on the same Mosquitto 30 ms away (a delaying proxy):

- raw paho-mqtt at in-flight windows 20 … 2,000 (msg/s, waiting for every PUBACK);
- the gateway's own path (``MqttLink`` with ``GATEWAY_MQTT_INFLIGHT=auto``: the window it picks
  itself, and its rate), and its ratio to the best raw window;
- the default tree: the real gateway process with every default source served from fixtures,
  seconds from start until a fresh subscriber on another node holds the whole tree.

Prints a table and writes bench/results/cluster.json.

    .venv/bin/python bench/cluster.py              # about 8 minutes
    .venv/bin/python bench/cluster.py --quick      # fewer messages and repeats
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from gateway.config import Broker  # noqa: E402
from gateway.flow import NEAR_WINDOW  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.mqtt import MqttLink  # noqa: E402
from gateway.outbox import TopicClass  # noqa: E402
from tests.delay_proxy import DelayProxy  # noqa: E402
from tests.helpers import (  # noqa: E402
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    expected_tree,
    retained_tree,
    write_config,
)
from tests.nats import NatsCluster, nats_binary  # noqa: E402
from tests.sources import serve_default_sources  # noqa: E402

WINDOWS = (20, 100, 500, 1000, 2000)
# "mosquitto_far": the same Mosquitto behind a proxy that delays every byte from it by this much,
# a broker across a WAN: here the in-flight window is what limits the rate.
FAR_DELAY_S = 0.030
RESULTS = ROOT / "bench" / "results" / "cluster.json"


def batch(tag: str, count: int, round_: int) -> list[tuple[str, bytes]]:
    """``count`` distinct retained topics shaped like the gateway's (state values of a few bytes)."""
    return [(f"bench/{tag}/e{i}/state", b"%d.%d" % (i, round_)) for i in range(count)]


def raw_rate(port: int, messages: list[tuple[str, bytes]], window: int) -> float:
    """paho-mqtt alone, MQTT 3.1.1: QoS 1, retained, ``window`` in flight; msg/s until the last PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{time.monotonic_ns()}",
                         protocol=paho.MQTTv311)
    client.max_inflight_messages_set(window)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(15), "no CONNACK"
        started = time.perf_counter()
        infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(120)
            assert info.is_published(), "broker did not acknowledge"
        return len(messages) / (time.perf_counter() - started)
    finally:
        client.disconnect()
        client.loop_stop()


def link_rate(link: MqttLink, messages: list[tuple[str, bytes]]) -> float:
    """The gateway's path: the outbox, its flow control, its window; msg/s until every ack."""
    started = time.perf_counter()
    link.publish_many(messages, TopicClass.STATE, None)
    assert link.flush(300), "broker did not acknowledge"
    return len(messages) / (time.perf_counter() - started)


def gateway_link(port: int, tag: str) -> MqttLink:
    link = MqttLink(Broker(port=port, protocol="3.1.1"), client_id=f"bench-{tag}",
                    will_topic=f"bench/{tag}/gateway/status", metrics=Metrics())
    link.start()
    assert link.wait_connected(30), "gateway link did not connect"
    # ``auto`` sizes the window from the acknowledgement of ``online``, just after connecting.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not link.window_settled:
        time.sleep(0.05)
    return link


def throughput(port: int, name: str, count: int, repeats: int) -> dict[str, Any]:
    """Every variant on the same topics, interleaved round by round (a clustered store's speed drifts)."""
    link = gateway_link(port, f"{name}-gw")
    raw: dict[int, list[float]] = {w: [] for w in WINDOWS}
    gateway: list[float] = []
    try:
        chosen = link.in_flight
        raw_rate(port, batch(name, count, 0), NEAR_WINDOW)  # the first round creates every retained subject
        for r in range(repeats):
            runs: list[tuple[int | None, Callable[[], float]]] = [
                (w, lambda w=w, r=r: raw_rate(port, batch(name, count, 2 * r + 1), w)) for w in WINDOWS]
            runs.append((None, lambda r=r: link_rate(link, batch(name, count, 2 * r + 2))))
            for window, run in runs[r % len(runs):] + runs[:r % len(runs)]:
                (gateway if window is None else raw[window]).append(run())
    finally:
        link.stop()
    rates = {w: statistics.median(v) for w, v in raw.items()}
    best = max(rates, key=lambda w: rates[w])
    gw = statistics.median(gateway)
    for w in WINDOWS:
        print(f"  {name}: raw paho, window {w:>5}: {rates[w]:>8,.0f} msg/s", flush=True)
    print(f"  {name}: gateway (auto, window {chosen}): {gw:,.0f} msg/s = {gw / rates[best]:.2f} × raw "
          f"at its best window ({best}), {gw / rates[NEAR_WINDOW]:.2f} × raw at {NEAR_WINDOW}", flush=True)
    return {"messages": count, "repeats": repeats,
            "raw_paho_msg_s": {str(w): round(r) for w, r in rates.items()},
            "best_raw_window": best, "gateway_window": chosen, "gateway_msg_s": round(gw),
            "ratio_to_best_raw": round(gw / rates[best], 3),
            "ratio_to_raw_at_20": round(gw / rates[NEAR_WINDOW], 3)}


def default_tree(ports: list[int], workdir: Path, name: str) -> dict[str, Any]:
    """The real gateway, every default source served: seconds from start to the whole tree on another node."""
    upstream = FixtureServer()
    try:
        served = serve_default_sources(upstream, upstream.url)
        slug = f"b{int(time.time() * 1000) % 10**8}"
        config = write_config(workdir / f"{name}.yaml", upstream.url, base=slug, slug=slug)
        expected = expected_tree(config, served)
        hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
        started = time.perf_counter()
        proc = GatewayProcess(config, ports[0], env={"GATEWAY_MQTT_HOST": hosts, "GATEWAY_MQTT_PROTOCOL": "3.1.1"})
        try:
            reader = ports[-1]
            retained_tree(reader, expected, timeout=120, protocol=paho.MQTTv311, qos=0,
                          filters=(f"{slug}/#", f"homeassistant/+/{slug}/#"))
            elapsed = time.perf_counter() - started
        finally:
            proc.terminate()
    finally:
        upstream.close()
    print(f"  {name}: default tree, {len(expected)} retained topics, complete on node {reader} "
          f"{elapsed:.2f} s after the gateway started", flush=True)
    return {"topics": len(expected), "seconds_from_start": round(elapsed, 2)}


@contextmanager
def brokers(workdir: Path) -> Iterator[dict[str, list[int]]]:
    (workdir / "mosquitto").mkdir()
    (workdir / "nats").mkdir()
    mosquitto = Mosquitto(workdir / "mosquitto").start()
    cluster = NatsCluster(workdir / "nats").start()
    far = DelayProxy(mosquitto.port, FAR_DELAY_S)
    try:
        yield {"nats": cluster.mqtt_ports, "mosquitto": [mosquitto.port], "mosquitto_far": [far.port]}
    finally:
        far.close()
        cluster.stop()
        mosquitto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 messages, 1 repeat")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if nats_binary() is None:
        print("nats-server is not installed (scripts/ensure-nats installs it)", file=sys.stderr)
        return 2
    count, repeats = (2_000, 1) if args.quick else (5_000, 3)
    result: dict[str, Any] = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": f"{platform.machine()}, {platform.python_version()}", "protocol": "3.1.1"}
    run: Callable[[str, list[int], Path], None]
    with tempfile.TemporaryDirectory() as tmp, brokers(Path(tmp)) as ports:
        def run(name: str, node_ports: list[int], workdir: Path) -> None:
            print(f"{name} ({len(node_ports)} node{'s' if len(node_ports) > 1 else ''}):", flush=True)
            result[name] = {"nodes": len(node_ports), **throughput(node_ports[0], name, count, repeats),
                            "default_tree": default_tree(node_ports, workdir, name)}

        for name, node_ports in ports.items():
            run(name, node_ports, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
