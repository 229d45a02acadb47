"""Soak test: the real gateway for N minutes against fixture APIs that fail at random.

Accelerated schedules (every source every few seconds), random upstream faults (HTTP 500/429,
timeouts, resets, HTML, truncated JSON) and random broker kills. Reports RSS at the start (after a
20 s warm-up), at minute 1 and at the end, the growth from each, the number of reconnects, and
whether the final retained tree equals the expected tree once every fault has healed. The growth
from minute 1 is the figure to watch (< 5 % over 30 minutes): start-up transients are over by then.

    .venv/bin/python bench/soak.py --minutes 30
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import (  # noqa: E402
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    expected_tree,
    free_port,
    retained_tree,
    wait_until,
    write_config,
)
from tests.sources import network_sources  # noqa: E402

FAULTS: list[dict[str, Any]] = [
    {"body": b'{"detail":"boom"}', "status": 500},
    {"body": b'{"detail":"slow down"}', "status": 429,
     "headers": {"Content-Type": "application/json", "Retry-After": "3"}},
    {"body": b"{}", "delay": 3.0},
    {"body": b"", "reset": True},
    {"body": b"<html>Wartung</html>", "headers": {"Content-Type": "text/html"}},
    {"body": b'{"weather": {"temp', "headers": {"Content-Type": "application/json"}},
]


def proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    return proc_status(pid, "VmRSS")


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    broker = Mosquitto(work).start()
    server = FixtureServer()
    sources = [s for s in network_sources() if s.key not in ("urban_sensors",)]
    for source in sources:
        source.serve(server, server.url)

    def edit(data: dict[str, Any]) -> None:
        data["mqtt"]["heartbeat"] = "30s"
        data["http"] = {"per_host_interval": 0}
        for key, source in data["sources"].items():
            if key == "sun":
                continue
            source.pop("cron", None)
            source.update(every="2s", jitter="0.5s", timeout="2s", max_age="3650d", enabled=True,
                          failure_threshold=2)
        data["sources"] = {k: v for k, v in data["sources"].items() if k == "sun" or k in {s.key for s in sources}}

    cfg = write_config(work / "topics.yaml", server.url, edit=edit)
    http_port = free_port()
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)}, args=["--log-level", "info"])
    wait_until(lambda: metric(http_port, "gateway_mqtt_connected") == 1.0, 30)
    time.sleep(20)  # warm-up: imports done, first fetches in, caches filled
    rss_start = rss_kib(proc.proc.pid)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    broken: dict[str, float] = {}
    broker_kills = faults = 0
    next_kill = started + rng.uniform(120, 300)
    samples: list[tuple[float, int]] = [(0.0, rss_start)]
    threads = [proc_status(proc.proc.pid, "Threads")]
    while time.monotonic() < deadline:
        now = time.monotonic()
        if rng.random() < 0.3:
            source = rng.choice(sources)
            source.break_with(server, server.url, **rng.choice(FAULTS))
            broken[source.key] = now + rng.uniform(3, 30)
            faults += 1
        for source in sources:
            if broken.get(source.key, float("inf")) < now:
                source.serve(server, server.url)
                del broken[source.key]
        if now > next_kill:
            broker.stop(kill=True)
            time.sleep(rng.uniform(0.5, 8))
            broker.start()
            broker_kills += 1
            next_kill = now + rng.uniform(120, 300)
        if proc.proc.poll() is not None:
            print("the gateway died", file=sys.stderr)
            print(proc.log[-3000:], file=sys.stderr)
            return 1
        if not samples or now - started - samples[-1][0] >= 60:
            samples.append((now - started, rss_kib(proc.proc.pid)))
            threads.append(proc_status(proc.proc.pid, "Threads"))
        # Nothing else to do until the next random event.
        time.sleep(2)
    for source in sources:
        source.serve(server, server.url)
    expected_states: dict[str, str] = {}
    for source in sources:
        expected_states.update(source.expected_states())
    expected = expected_tree(cfg, expected_states)
    ok = True
    try:
        wait_until(lambda: metric(http_port, "gateway_source_up") == len(sources) + 1, 60)
        tree = retained_tree(broker.port, expected, timeout=30)
        wrong = [t for t, v in expected_states.items() if tree.get(t, b"").decode() != v]
        missing = sorted(expected - set(tree))
        ok = not wrong and not missing
    except AssertionError as exc:
        wrong, missing, ok = [], [str(exc)[:300]], False
    rss_end = rss_kib(proc.proc.pid)
    # Minute 1 of the run; a run shorter than that compares with its start.
    rss_1min = next((kib for at, kib in samples if at >= 60), rss_start)
    reconnects = metric(http_port, "gateway_mqtt_reconnects_total")
    errors = metric(http_port, "gateway_fetch_errors_total")
    proc.terminate()
    broker.stop()
    server.close()
    result = {
        "minutes": round((time.monotonic() - started) / 60, 1),
        "sources": len(sources) + 1,
        "rss_start_kib": rss_start,
        "rss_end_kib": rss_end,
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "rss_1min_kib": rss_1min,
        "rss_growth_from_1min_pct": round(100 * (rss_end - rss_1min) / rss_1min, 2),
        "rss_samples_kib": [s for _, s in samples],
        "thread_samples": threads,
        "upstream_faults_injected": faults,
        "fetch_errors_counted": errors,
        "broker_kills": broker_kills,
        "reconnects": reconnects,
        "final_tree_matches": ok,
        "wrong_values": wrong[:10],
        "missing_topics": missing[:10],
        "tracebacks_in_log": proc.log.count("Traceback"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    # The gateway's whole log, so that a traceback counted above can be read afterwards.
    args.json.with_suffix(".log").write_text(proc.log)
    width = max(len(k) for k in result)
    for key, value in result.items():
        if key not in ("rss_samples_kib", "thread_samples"):
            print(f"{key:<{width}}  {value}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
