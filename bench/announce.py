"""Announce time in both discovery modes, next to ha-mqtt-discoverable (issue #12, point 4).

A cold start of the gateway with N synthetic entities in sources (devices) of 100 each:
``discovery_mode: entity`` (one config per entity) and ``device`` (one config per device), and
ha-mqtt-discoverable (its own venv, bench/.venv-hmd) in its default mode (an MQTT connection per
sensor, only at 1,000) and with one shared client. Two figures, from the publisher's start (``t0``):

- ``announce``: every discovery config has arrived at a subscriber to ``homeassistant/#`` (QoS 1),
  as Home Assistant is one; the issue's target is on this figure;
- ``acked``: every discovery config and every entity's first state, as the publisher sees it: its
  last message acknowledged (the gateway's also include an attributes message per entity, which
  ha-mqtt-discoverable does not send).

Each figure is the median of ``--runs`` fresh-process runs on a fresh Mosquitto. Prints a table and
writes bench/results/announce.json.

    .venv/bin/python bench/announce.py            # about 3 minutes
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.run import PY, ensure_hmd, fresh_broker, probe  # noqa: E402

PER_DEVICE = 100
RESULTS = ROOT / "bench" / "results" / "announce.json"


class Watcher:
    """Home Assistant's view: when each discovery config first arrived (wall clock)."""

    def __init__(self, port: int) -> None:
        self.configs: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="announce-watcher", protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._ready.set()
        self.client.on_connect = lambda client, *args: client.subscribe("homeassistant/#", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("the watcher's subscription was not acknowledged")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.time()
        if msg.payload:
            with self._lock:
                self.configs.setdefault(msg.topic, now)

    def close(self) -> dict[str, Any]:
        time.sleep(0.3)  # what is still on its way from the broker
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            return {"configs": len(self.configs), "configs_at": max(self.configs.values(), default=None)}


def median_of(runs: int, work: Path, one: Callable[[int], dict[str, Any]], configs: int) -> dict[str, float]:
    """Median announce and acked seconds of ``runs`` runs; every config must arrive."""
    figures: dict[str, list[float]] = {"announce": [], "acked": []}
    for _ in range(runs):
        broker = fresh_broker(work)
        watcher = Watcher(broker.port)
        try:
            result = one(broker.port)
        finally:
            seen = watcher.close()
            broker.stop()
        expected = result.get("discovery_configs", configs)  # the gateway's: its own device's configs too
        if seen["configs"] != expected:
            raise RuntimeError(f"the watcher saw {seen['configs']} configs, not {expected}")
        figures["announce"].append(seen["configs_at"] - result["t0_wall"])
        figures["acked"].append(result["announce_s"])
    return {k: round(statistics.median(v), 3) for k, v in figures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    hmd = ensure_hmd()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for count in args.sizes:
            devices = -(-count // PER_DEVICE)
            row: dict[str, Any] = {"entities": count, "devices": devices}

            def put(name: str, figures: dict[str, float], row: dict[str, Any] = row) -> None:
                for key, value in figures.items():
                    row[f"{name}_{key}_s"] = value

            for mode, configs in (("entity", count), ("device", devices)):
                put(f"gateway_{mode}", median_of(args.runs, work, lambda port, m=mode, n=count: probe(
                    "probe_gateway.py", PY, n, port, "--mode", m, "--per-device", str(PER_DEVICE)), configs))
            # At QoS 0, as ha-mqtt-discoverable publishes: the cost of the protocol, not of the gateway.
            put("gateway_device_qos0", median_of(args.runs, work, lambda port, n=count: probe(
                "probe_gateway.py", PY, n, port, "--mode", "device", "--per-device", str(PER_DEVICE), "--qos", "0"),
                devices))
            put("hmd_shared_client", median_of(args.runs, work, lambda port, n=count: probe(
                "probe_hmd.py", hmd, n, port, "--shared-client"), count))
            if count <= 1000:  # a connection and a thread per sensor: 10,000 of them is not a fair fight
                put("hmd_default", median_of(args.runs, work, lambda port, n=count: probe(
                    "probe_hmd.py", hmd, n, port), count))
            for figure in ("announce", "acked"):
                device = row[f"gateway_device_{figure}_s"]
                if "hmd_default_announce_s" in row:
                    row[f"device_vs_hmd_default_{figure}"] = round(row[f"hmd_default_{figure}_s"] / device, 1)
                row[f"device_vs_hmd_shared_{figure}"] = round(row[f"hmd_shared_client_{figure}_s"] / device, 2)
            entity, device = row["gateway_entity_announce_s"], row["gateway_device_announce_s"]
            row["device_vs_entity_announce"] = round(entity / device, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {platform.python_version()}", "per_device": PER_DEVICE,
              "runs": args.runs, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
