"""Latency from an NGSI-LD notification to the MQTT message a subscriber receives (issue #14: within 1 s).

A gateway process subscribes to a local NGSI-LD broker (tests/ngsi_broker.py); the broker then POSTs
``--count`` notifications, one at a time, each with a new temperature, and the time from sending each
to its arrival at an MQTT subscriber is measured. The poll interval is an hour, so every value comes
through the notification path. Prints the figures and writes bench/results/notify.json.

    .venv/bin/python bench/notify.py            # about 10 seconds
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import fresh_broker  # noqa: E402
from tests.helpers import GatewayProcess, free_port, mqtt_client, wait_until, write_config  # noqa: E402
from tests.ngsi_broker import NgsiBroker  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "notify.json"
SOEST = "urn:ngsi-ld:WeatherObserved:Soest-Wetterstation-Rathaus"
TOPIC = "soest/city_platform/temperature"


def station(temperature: float) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"id": SOEST, "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": temperature, "unitCode": "CEL", "observedAt": stamp},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.1061, 51.5711]}}}


class Arrivals:
    """An MQTT subscriber that notes when each payload of ``TOPIC`` arrived (time.perf_counter)."""

    def __init__(self, port: int) -> None:
        self.seen: dict[bytes, float] = {}
        self.cond = threading.Condition()
        self.client = mqtt_client()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(TOPIC, qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.cond:
            self.seen.setdefault(msg.payload, time.perf_counter())
            self.cond.notify_all()

    def wait(self, payload: bytes, timeout: float = 10.0) -> float:
        with self.cond:
            assert self.cond.wait_for(lambda: payload in self.seen, timeout), payload
            return self.seen[payload]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure(work: Path, count: int) -> list[float]:
    mosquitto = fresh_broker(work)
    ngsi = NgsiBroker([station(20.0)])
    http_port = free_port()

    def edit(data: dict[str, Any]) -> None:
        source = data["sources"]["city_platform"]
        source.update(enabled=True, base_url=ngsi.url, every="1h", max_age="3650d")
        source["options"].update(subscribe=True, notify_url=f"http://127.0.0.1:{http_port}")
        data["sources"] = {"city_platform": source}

    config = write_config(work / "notify.yaml", ngsi.url, edit=edit)
    proc = GatewayProcess(config, mosquitto.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    sub = Arrivals(mosquitto.port)
    try:
        sub.wait(b"20", timeout=30)
        ident = wait_until(lambda: next(iter(ngsi.subscriptions), None), timeout=30)
        seconds = []
        # Each value new, within the plausible range, never a whole number (published without ".0").
        for value in [f"{t / 10:.1f}" for t in range(-440, 490) if t % 10][:count]:
            sent = time.perf_counter()
            ngsi.notify(ident, [station(float(value))])
            seconds.append(sub.wait(value.encode()) - sent)
        return seconds
    finally:
        sub.close()
        proc.terminate()
        ngsi.close()
        mosquitto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seconds = sorted(measure(Path(tmp), args.count))
    row = {"notifications": len(seconds), "median_ms": round(statistics.median(seconds) * 1000, 1),
           "p95_ms": round(seconds[int(len(seconds) * 0.95) - 1] * 1000, 1), "max_ms": round(seconds[-1] * 1000, 1)}
    print(json.dumps(row))
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {platform.python_version()}", **row}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
