"""Benchmarks: the real gateway pipeline against raw paho-mqtt, discovery burst, memory, start-up, steady state.

Starts its own Mosquitto brokers on free ports. Prints a table and writes bench/results/bench.json.

    .venv/bin/python bench/run.py                 # everything (about 5 minutes)
    .venv/bin/python bench/run.py --quick         # 1,000 and 10,000 entities only, shorter runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from bench.synthetic import readings, synthetic_catalog  # noqa: E402
from gateway.config import Broker  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.mqtt import MqttLink  # noqa: E402
from gateway.outbox import TopicClass  # noqa: E402
from gateway.runs import evaluate  # noqa: E402
from gateway.store import Store  # noqa: E402
from tests.helpers import FixtureServer, Mosquitto, Subscriber, write_config  # noqa: E402
from tests.sources import serve_default_sources  # noqa: E402

PY = sys.executable
HMD_VENV = ROOT / "bench" / ".venv-hmd"
INFLIGHT = 20  # paho's default, and the gateway's


# --------------------------------------------------------------------------- 1 + 2: throughput


def pipeline_round(link: MqttLink, store: Store, spec: Any, count: int, round_: int) -> tuple[float, int]:
    """readings -> plausibility + change detection -> encoding -> publish (QoS 1, retained) -> all acks."""
    now = datetime.now(UTC)
    batch = readings(count, round_, now)
    started = time.perf_counter()
    out = evaluate(spec, store, batch, now, "https://example.invalid/bench", time.monotonic())
    # Every value carries its remaining life as message expiry, as the gateway's Publisher does.
    ends = {topic: now.timestamp() + spec.max_age for topic, _ in (*out.states, *out.attributes)}
    link.publish_many(out.states, TopicClass.STATE, ends)
    link.publish_many(out.attributes, TopicClass.ATTRIBUTES, ends)
    assert link.flush(300), "broker did not acknowledge"
    return time.perf_counter() - started, len(out)


def raw_round(port: int, messages: list[tuple[str, bytes]]) -> float:
    """paho-mqtt alone: the same pre-encoded messages, QoS 1, retained, waiting for all acks.

    With the one piece of flow control any paho user needs for big batches: at most 20,000
    unacknowledged messages, because paho's 16-bit message ids would collide beyond 65,535.
    """
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{time.monotonic_ns()}", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT)
    connected = threading.Event()
    acked = threading.Condition()
    unacked = [0]

    def on_publish(*args: object) -> None:
        with acked:
            unacked[0] -= 1
            acked.notify_all()

    client.on_connect = lambda *a: connected.set()
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    started = time.perf_counter()
    info = None
    for topic, payload in messages:
        if unacked[0] >= 20_000:
            with acked:
                acked.wait_for(lambda: unacked[0] < 10_000, 60)
        info = client.publish(topic, payload, qos=1, retain=True)
        with acked:
            unacked[0] += 1
    assert info is not None
    info.wait_for_publish(300)
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def throughput(port: int, count: int, repeats: int) -> dict[str, Any]:
    cat = synthetic_catalog(count, base=f"tp{count}", slug=f"tp{count}")
    spec = cat.sources["synthetic"]
    store = Store(heartbeat=900)
    link = MqttLink(Broker(port=port), client_id=f"bench-{count}", will_topic=f"tp{count}/gateway/status",
                    metrics=Metrics())
    link.start()
    assert link.wait_connected(10)
    # The first round fills the store; the raw client then sends exactly what a round produces.
    pipeline_round(link, store, spec, count, 0)
    now = datetime.now(UTC)
    probe = Store(heartbeat=900)
    out = evaluate(spec, probe, readings(count, 1, now), now, "https://example.invalid/bench", 0.0)
    messages = out.states + out.attributes
    pipe, raw = [], []
    for r in range(repeats):
        elapsed, sent = pipeline_round(link, store, spec, count, r + 1)
        assert sent == len(messages), (sent, len(messages))
        pipe.append(sent / elapsed)
        raw.append(len(messages) / raw_round(port, messages))
    link.stop()
    p, q = statistics.median(pipe), statistics.median(raw)
    return {"entities": count, "messages": len(messages), "pipeline_msg_s": round(p), "raw_paho_msg_s": round(q),
            "ratio": round(p / q, 3)}


# --------------------------------------------------------------------------- 3 + 4: discovery burst, memory


def probe(script: str, python: str, count: int, port: int, *extra: str) -> dict[str, Any]:
    result = subprocess.run([python, str(ROOT / "bench" / script), "--entities", str(count), "--port", str(port),
                             *extra],
                            capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{script} {count}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ensure_hmd() -> str:
    python = HMD_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(HMD_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "ha-mqtt-discoverable==0.26.0"], check=True)
    return str(python)


def fresh_broker(work: Path) -> Mosquitto:
    return Mosquitto(Path(tempfile.mkdtemp(dir=work))).start()


# --------------------------------------------------------------------------- 5: start-up


def startup(work: Path, runs: int) -> dict[str, Any]:
    """Process start -> first state on the broker, default Soest config, fixture APIs (no upstream latency)."""
    server = FixtureServer()
    serve_default_sources(server, server.url)
    times = []
    for i in range(runs):
        broker = fresh_broker(work)
        cfg = write_config(work / f"startup{i}.yaml", server.url)
        sub = Subscriber(broker.port, "soest/+/+")
        env = {**os.environ, "GATEWAY_MQTT_PORT": str(broker.port), "GATEWAY_HTTP_PORT": "off",
               "GATEWAY_DATA_DIR": str(work / f"data{i}")}
        started = time.perf_counter()
        proc = subprocess.Popen([PY, "-m", "gateway", "run", "--config", str(cfg), "--log-level", "warning"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = None
        while first is None and time.perf_counter() - started < 30:
            for m in sub.snapshot():
                parts = m.topic.split("/")
                if parts[1] != "gateway" and parts[2] not in ("status", "last_fetch", "fetch_errors"):
                    first = time.perf_counter()
                    break
            time.sleep(0.002)
        proc.terminate()
        proc.wait(10)
        sub.close()
        broker.stop()
        if first is not None:
            times.append(first - started)
    server.close()
    return {"runs": runs, "median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
            "max_s": round(max(times), 3)}


# --------------------------------------------------------------------------- 6: steady state


def steady_state(work: Path, compress: float, seconds: float) -> dict[str, Any]:
    """The default config with real cadences, time-compressed: CPU seconds and requests per real hour."""
    from gateway.config import load

    server = FixtureServer()
    serve_default_sources(server, server.url)
    broker = fresh_broker(work)
    cat_sources = load(ROOT / "topics.yaml").settings.sources

    def edit(data: dict[str, Any]) -> None:
        data["mqtt"]["heartbeat"] = f"{900 / compress}s"
        for key, source in data["sources"].items():
            interval = cat_sources[key].interval()
            source.pop("cron", None)
            source.update(every=f"{interval / compress}s", jitter="0s", max_age=f"{10 * interval}s")

    cfg = write_config(work / "steady.yaml", server.url, edit=edit)
    env = {**os.environ, "GATEWAY_MQTT_PORT": str(broker.port), "GATEWAY_HTTP_PORT": "off",
           "GATEWAY_DATA_DIR": str(work / "steady-data")}
    proc = subprocess.Popen([PY, "-m", "gateway", "run", "--config", str(cfg), "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(5)  # start-up is measured separately
    cpu0, req0 = cpu_seconds(proc.pid), len(server.requests)
    paths0 = [p for p, _ in server.requests]
    time.sleep(seconds)
    cpu1 = cpu_seconds(proc.pid)
    paths = [p for p, _ in server.requests][len(paths0):]
    proc.terminate()
    proc.wait(10)
    broker.stop()
    server.close()
    simulated_hours = seconds * compress / 3600
    per_source: dict[str, float] = {}
    for key in cat_sources:
        if not cat_sources[key].enabled or cat_sources[key].adapter == "sun":
            continue
        per_source[key] = 0
    for path in paths:
        for adapter, hint in PATH_HINTS.items():  # specific hints first: uvi.json before /alerts
            if hint in path.split("?", 1)[0]:
                key = next((k for k, src in cat_sources.items() if src.adapter == adapter and k in per_source), None)
                if key is not None:
                    per_source[key] += 1
                break
    return {"compression": compress, "wall_s": seconds, "simulated_hours": round(simulated_hours, 2),
            "cpu_s_per_hour": round((cpu1 - cpu0) / simulated_hours, 2),
            "requests_per_hour": {k: round(v / simulated_hours, 1) for k, v in per_source.items()},
            # Cron sources ran at their typical gap in the compressed run; their real rate is:
            "cron_requests_per_hour": {k: round(cron_fires_per_day(cat_sources[k].cron or "") / 24, 2)
                                       for k in per_source if cat_sources[k].cron},
            "requests_total_per_hour": round((len(server.requests) - req0) / simulated_hours, 1)}


PATH_HINTS = {"dwd_uv": "uvi.json", "dwd_pollen": "s31fg.json", "brightsky": "/current_weather",
              "dwd_alerts": "/alerts", "open_meteo": "/v1/forecast", "nina": "/dashboard/", "uba_air": "/airquality/",
              "sensor_community": "/airrohr/", "buergerwolke": "/nodered/", "waste_calendar": "/download"}


def cron_fires_per_day(expr: str) -> int:
    from gateway.schedule import cron_trigger

    trigger = cron_trigger(expr, "Europe/Berlin")
    start = datetime(2026, 6, 15, tzinfo=UTC)  # a Monday
    fires, moment = 0, trigger.get_next_fire_time(None, start)
    while moment is not None and moment < start + timedelta(days=7):
        fires += 1
        moment = trigger.get_next_fire_time(moment, moment + timedelta(seconds=1))
    return round(fires / 7)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "bench.json")
    args = parser.parse_args()
    sizes = [1000, 10000] if args.quick else [1000, 10000, 100000]
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
    }

    print("1-2. pipeline vs raw paho-mqtt (QoS 1, retained, all acks)")
    rows = []
    for count in sizes:
        broker = fresh_broker(work)
        rows.append(throughput(broker.port, count, repeats=3 if count < 100000 else 2))
        broker.stop()
        print("   ", rows[-1])
    results["throughput"] = rows

    print("3. discovery burst: announce N entities (config + first state) from a cold start")
    hmd_python = ensure_hmd()
    burst = []
    for count in sizes:
        broker = fresh_broker(work)
        ours = probe("probe_gateway.py", PY, count, broker.port)
        broker.stop()
        row: dict[str, Any] = {"entities": count, "gateway_s": round(ours["announce_s"], 3)}
        if count <= 10000:
            broker = fresh_broker(work)
            hmd = probe("probe_hmd.py", hmd_python, count, broker.port, "--shared-client")
            broker.stop()
            row["hmd_shared_client_s"] = round(hmd["announce_s"], 3)
            row["speedup_vs_shared"] = round(hmd["announce_s"] / ours["announce_s"], 2)
        if count <= 1000:
            # HMD's default (its README): one MQTT connection and thread per sensor.
            broker = fresh_broker(work)
            hmd = probe("probe_hmd.py", hmd_python, count, broker.port)
            broker.stop()
            row["hmd_default_s"] = round(hmd["announce_s"], 3)
            row["speedup_vs_default"] = round(hmd["announce_s"] / ours["announce_s"], 2)
        burst.append(row)
        print("   ", row)
    results["discovery_burst"] = burst

    print("4. resident memory")
    memory = []
    base = None
    for count in [1, *sizes]:
        broker = fresh_broker(work)
        ours = probe("probe_gateway.py", PY, count, broker.port)
        broker.stop()
        base = base if base is not None else ours["rss_bytes"]
        row = {"entities": count if count > 1 else 0, "rss_mib": round(ours["rss_bytes"] / 2**20, 1),
               "rss_after_config_mib": round(ours["rss_after_config_bytes"] / 2**20, 1)}
        if count > 1:
            row["bytes_per_entity"] = round((ours["rss_bytes"] - base) / count)
        memory.append(row)
        print("   ", row)
    results["memory"] = memory

    print("5. start-up to first published state (default Soest config, fixture APIs)")
    results["startup"] = startup(work, runs=3 if args.quick else 7)
    print("   ", results["startup"])

    print("6. steady state, default config and cadences, time-compressed")
    results["steady_state"] = steady_state(work, compress=60.0, seconds=60 if args.quick else 180)
    print("   ", results["steady_state"])

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
