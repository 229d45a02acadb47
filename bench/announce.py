"""Announce time in both discovery modes, next to ha-mqtt-discoverable (issue #12, point 4).

A cold start of the gateway with N synthetic entities in sources (devices) of 100 each, until every
discovery config, first state and attributes message is acknowledged: ``discovery_mode: entity``
(one config per entity) and ``device`` (one config per device). ha-mqtt-discoverable (its own venv,
bench/.venv-hmd) in its default mode (an MQTT connection per sensor, only at 1,000) and with one
shared client. Each figure is the median of ``--runs`` fresh-process runs on a fresh Mosquitto.
Prints a table and writes bench/results/announce.json.

    .venv/bin/python bench/announce.py            # about 3 minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PY, ensure_hmd, fresh_broker, probe  # noqa: E402

PER_DEVICE = 100
RESULTS = ROOT / "bench" / "results" / "announce.json"


def median_of(runs: int, work: Path, one: Callable[[int], dict[str, Any]]) -> float:
    times = []
    for _ in range(runs):
        broker = fresh_broker(work)
        try:
            times.append(one(broker.port)["announce_s"])
        finally:
            broker.stop()
    return statistics.median(times)


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
            row: dict[str, Any] = {"entities": count, "devices": -(-count // PER_DEVICE)}
            for mode in ("entity", "device"):
                row[f"gateway_{mode}_s"] = round(median_of(args.runs, work, lambda port, m=mode, n=count: probe(
                    "probe_gateway.py", PY, n, port, "--mode", m, "--per-device", str(PER_DEVICE))), 3)
            # At QoS 0, as ha-mqtt-discoverable publishes: the cost of the protocol, not of the gateway.
            row["gateway_device_qos0_s"] = round(median_of(args.runs, work, lambda port, n=count: probe(
                "probe_gateway.py", PY, n, port, "--mode", "device", "--per-device", str(PER_DEVICE), "--qos", "0")),
                3)
            row["hmd_shared_client_s"] = round(median_of(args.runs, work, lambda port, n=count: probe(
                "probe_hmd.py", hmd, n, port, "--shared-client")), 3)
            if count <= 1000:  # a connection and a thread per sensor: 10,000 of them is not a fair fight
                row["hmd_default_s"] = round(median_of(args.runs, work, lambda port, n=count: probe(
                    "probe_hmd.py", hmd, n, port)), 3)
                row["device_vs_hmd_default"] = round(row["hmd_default_s"] / row["gateway_device_s"], 1)
            row["device_vs_hmd_shared"] = round(row["hmd_shared_client_s"] / row["gateway_device_s"], 2)
            row["device_vs_entity"] = round(row["gateway_entity_s"] / row["gateway_device_s"], 2)
            row["device_qos0_vs_hmd_shared"] = round(row["hmd_shared_client_s"] / row["gateway_device_qos0_s"], 2)
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
