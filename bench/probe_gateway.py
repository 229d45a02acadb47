"""One gateway with N synthetic entities in this process: announce time and resident memory.

Prints one JSON line. Used by bench/run.py in a fresh process per N, so memory is not shared.
    python bench/probe_gateway.py --entities 10000 --port 1883
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.synthetic import synthetic_catalog  # noqa: E402
from gateway import discovery  # noqa: E402
from gateway.app import Gateway  # noqa: E402
from gateway.config import Broker  # noqa: E402
from gateway.outbox import TopicClass  # noqa: E402


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def main(count: int, port: int, mode: str = "entity", per_device: int | None = None,
               qos: int = 1) -> dict[str, float]:
    cat = synthetic_catalog(count, mode=mode, per_device=per_device, qos=qos)
    gc.collect()
    rss_catalog = rss_bytes()
    t0, t0_wall = time.perf_counter(), time.time()
    gw = Gateway(cat, Broker(port=port), http_port=None, data_dir=None)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    configs = gw.announcer.config_count

    def announced() -> bool:
        values = sum(1 for st in gw.store.entities.values() if st.text is not None)
        return gw.announced.is_set() and values == count

    while not announced():
        await asyncio.sleep(0.005)
    await asyncio.to_thread(gw.link.flush, 120)
    if qos == 0:
        # Nothing is acknowledged at QoS 0: a QoS 1 message after the burst is (the broker takes a
        # connection's messages in order), as the ha-mqtt-discoverable probe does.
        await asyncio.to_thread(gw.link.send_confirmed, "bench/flush", b"x", TopicClass.INFO, 120)
    t1 = time.perf_counter()
    gc.collect()
    await asyncio.sleep(0.5)
    rss = rss_bytes()
    stop.set()
    await task
    return {"entities": count, "announce_s": t1 - t0, "t0_wall": t0_wall, "rss_bytes": rss,
            "rss_after_config_bytes": rss_catalog,
            "discovery_configs": sum(1 for _ in discovery.mode_configs(cat)), "entity_configs": configs,
            "mode": mode,
            "process_to_announced_s": t1 - STARTED}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("entity", "device"), default="entity")
    parser.add_argument("--per-device", type=int, default=None, help="entities per source (device)")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="mqtt.qos of the gateway")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.entities, args.port, args.mode, args.per_device, args.qos))))
