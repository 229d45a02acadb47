"""Push latency: from an Observation published on the SensorThings server's broker to our state on ours.

A second Mosquitto plays FROST-Server's MQTT side (tests/frost.py), the fixture server its REST
side; the gateway runs as a process, as a user starts it. One client publishes Observations in
FROST's format on ``v1.1/Datastreams(43)/Observations``, one subscriber on our broker notes when
each value arrives; both in this process, on one monotonic clock. Prints one JSON document and
writes it to bench/results/push.json. Target (issue #13): p95 ≤ 1 s.

    .venv/bin/python bench/push_latency.py                     # 300 Observations, one every 100 ms
    .venv/bin/python bench/push_latency.py --count 50 --interval 0.5 --protocol 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402

from tests.frost import TEMPERATURE, UP_TEMPERATURE, RestSide, observation, push_config  # noqa: E402
from tests.helpers import FixtureServer, GatewayProcess, Mosquitto, Subscriber, mqtt_client, wait_until  # noqa: E402

TARGET_P95 = 1.0  # seconds, issue #13


def value(i: int) -> float:
    """A distinct, plausible temperature per Observation (the store publishes changes only)."""
    return round(10 + (i % 390) / 10, 1)


class Arrivals(Subscriber):
    """Notes the monotonic arrival time of each temperature payload on our broker."""

    def __init__(self, port: int) -> None:
        self.at: dict[float, float] = {}  # value (our payload "24" is 24.0) -> arrival
        self.seen = threading.Condition()
        super().__init__(port, TEMPERATURE, live=True)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        arrived = time.monotonic()
        if msg.topic == TEMPERATURE and msg.retain:
            with self.seen:
                self.at.setdefault(float(msg.payload), arrived)
                self.seen.notify_all()
        super()._on_message(client, userdata, msg)


def measure(workdir: Path, count: int, interval: float, protocol: str) -> dict[str, Any]:
    for name in ("ours", "theirs"):
        (workdir / name).mkdir()
    ours = Mosquitto(workdir / "ours").start()
    theirs = Mosquitto(workdir / "theirs").start()
    upstream = FixtureServer()
    rest = RestSide(upstream)
    ident, at, _ = rest.newest[43]
    rest.newest[43] = (ident, at, -5.0)  # outside value()'s range: every pushed value is a change
    proc = GatewayProcess(push_config(workdir / "topics.yaml", upstream, theirs.port, protocol=protocol), ours.port,
                          args=["--log-level", "info"])  # the last --log-level counts: no per-packet debug lines
    arrivals = Arrivals(ours.port)
    publisher = mqtt_client(paho.MQTTv311)
    try:
        wait_until(lambda: -5.0 in arrivals.at and rest.polls() >= 2, 20)  # first poll, subscribed, gap polled
        time.sleep(0.5)
        publisher.connect("127.0.0.1", theirs.port)
        publisher.loop_start()
        start = datetime.now(UTC) - timedelta(seconds=count * interval + 60)
        sent: dict[float, float] = {}
        for i in range(count):
            payload = observation(10_000 + i, start + timedelta(seconds=i * interval), value(i))
            sent[value(i)] = time.monotonic()
            publisher.publish(UP_TEMPERATURE, payload, qos=1)
            time.sleep(interval)
        with arrivals.seen:
            arrivals.seen.wait_for(lambda: all(v in arrivals.at for v in sent), timeout=10)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        arrivals.close()
        proc.terminate()
        upstream.close()
        theirs.stop()
        ours.stop()
    latencies = sorted(arrivals.at[v] - t for v, t in sent.items() if v in arrivals.at)
    return summary(latencies, count, interval, protocol, "Traceback" in proc.log)


def summary(latencies: list[float], count: int, interval: float, protocol: str, traceback: bool) -> dict[str, Any]:
    ms = [x * 1000 for x in latencies]
    cuts = statistics.quantiles(ms, n=100) if len(ms) >= 2 else ms * 99
    p95 = round(cuts[94], 2)
    return {
        "what": "upstream publish (FROST's broker) -> our retained state, seen by a subscriber on our broker",
        "observations": count, "interval_s": interval, "upstream_protocol": protocol,
        "received": len(ms), "lost": count - len(ms),
        "p50_ms": round(statistics.median(ms), 2), "p95_ms": p95, "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(ms), 2), "min_ms": round(min(ms), 2),
        "target_p95_ms": TARGET_P95 * 1000, "meets_target": p95 <= TARGET_P95 * 1000 and len(ms) == count,
        "traceback_in_log": traceback,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "measured_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="at most 390 (distinct values)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between upstream Observations")
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1", help="to the upstream broker")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "push.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), args.count, args.interval, args.protocol)
    text = json.dumps(result, indent=2)
    print(text)
    args.json.write_text(text + "\n")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
