"""Aligned polling end to end: a local upstream that updates on a 4-second rhythm, two gateways
(align: auto and align: off) fetching it, the requests counted at the server, data age on MQTT,
/api/status and /metrics."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import GatewayProcess, Mosquitto, Subscriber, free_port, fresh_fixture, wait_until, write_config

pytestmark = pytest.mark.broker

CADENCE = 4  # seconds; stamps at multiples of 4 (Unix time)
LAG = 2  # each stamp becomes available (and Last-Modified) 2 s after it
RUN_S = 36.0


class RhythmicUpstream:
    """Bright Sky's /current_weather, stamped every CADENCE s and published LAG s later, with
    Last-Modified and an ETag (304 for a client that has the current version). Counts requests."""

    def __init__(self) -> None:
        self.requests: list[float] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                now = time.time()
                server.requests.append(now)
                stamp = server.stamp(now)
                etag = f'"{stamp}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = fresh_fixture("brightsky/normal.json", datetime.fromtimestamp(stamp, UTC))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", formatdate(stamp + LAG, usegmt=True))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def stamp(now: float) -> int:
        """The newest stamp available at ``now``."""
        return math.floor((now - LAG) / CADENCE) * CADENCE

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def rhythmic() -> Iterator[tuple[RhythmicUpstream, RhythmicUpstream]]:
    servers = RhythmicUpstream(), RhythmicUpstream()
    yield servers
    for s in servers:
        s.close()


def start(tmp_path: Path, name: str, broker: Mosquitto, upstream: RhythmicUpstream, align: str) -> tuple[
        GatewayProcess, int]:
    def edit(data: dict[str, Any]) -> None:
        data["mqtt"]["base_topic"] = name
        data["sources"] = {"brightsky": data["sources"]["brightsky"]}
        data["sources"]["brightsky"].update(every=f"{CADENCE}s", align=align, max_age="1h")

    cfg = write_config(tmp_path / f"{name}.yaml", upstream.url, base=name, slug=name, edit=edit)
    (tmp_path / name).mkdir()
    port = free_port()
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(port),
                                                 "GATEWAY_DATA_DIR": str(tmp_path / name / "data")})
    return proc, port


def get_json(port: int, path: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except OSError:
        return {}


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def most_in_a_window(times: list[float], window: float) -> int:
    return max(sum(1 for u in times[i:] if u < t + window) for i, t in enumerate(times))


def test_aligned_polling_fetches_after_each_update_and_never_more_often(
        tmp_path: Path, broker: Mosquitto, rhythmic: tuple[RhythmicUpstream, RhythmicUpstream]):
    aligned_up, fixed_up = rhythmic
    sub = Subscriber(broker.port, "aligned/brightsky/temperature/attributes", live=True)
    aligned, aligned_port = start(tmp_path, "aligned", broker, aligned_up, "auto")
    fixed, fixed_port = start(tmp_path, "fixed", broker, fixed_up, "off")
    try:
        wait_until(lambda: aligned_up.requests and fixed_up.requests, 20)
        begin = time.time()
        wait_until(lambda: time.time() - begin > RUN_S, RUN_S + 5, interval=0.5)
        st = get_json(aligned_port, "/api/status")["sources"]["brightsky"]
        fixed_st = get_json(fixed_port, "/api/status")["sources"]["brightsky"]
        aligned_metrics = metrics(aligned_port)
    finally:
        aligned.terminate()
        fixed.terminate()
        sub.close()

    # The request budget: never more than the plain interval allows, in any window.
    for times in (aligned_up.requests, fixed_up.requests):
        for window in (CADENCE * 3, CADENCE * 6):
            assert most_in_a_window(times, window) <= window // CADENCE + 1
    assert len(aligned_up.requests) <= len(fixed_up.requests) + 1

    # What the rhythm learned: Last-Modified says each stamp arrives LAG s after it.
    align = st["align"]
    assert align["mode"] == "auto"
    assert align["state"] == "aligned"
    assert align["lag_from"] == "last_modified"
    assert align["lag_s"] == LAG
    assert align["hits"] >= 3
    assert fixed_st["align"] == {"mode": "off"}
    assert st["cadence_s"] == CADENCE
    assert st["data_age_s"] is not None
    assert st["data_age_s"] <= 2 * CADENCE

    # Planned fetches land just after an update: LAG s after a stamp, plus at most the jitter
    # (10 % of 4 s) and the scheduler's wake-up. The first three fetches were the plain interval.
    late = [(t - LAG) % CADENCE for t in aligned_up.requests[4:]]
    assert len(late) >= 4
    assert all(x < 1.5 for x in late), late

    # A real subscriber got each new observation, retained and at QoS 1, soon after upstream had it.
    msgs = sub.snapshot()
    assert all(m.retain and m.qos == 1 for m in msgs)
    stamps = [datetime.fromisoformat(m.json()["observed_at"]).timestamp() for m in msgs]
    assert stamps == sorted(set(stamps))  # one message per new stamp, in order
    assert len(stamps) >= 5
    assert {int(s) % CADENCE for s in stamps} == {0}

    # Metrics: data age at scrape time, and publish delays (since the observation, since Last-Modified).
    assert aligned_metrics['gateway_data_age_seconds{source="brightsky"}'] <= 2 * CADENCE
    count = aligned_metrics['gateway_publish_delay_seconds_count{source="brightsky"}']
    assert count >= 5
    # After alignment every publish is LAG + a little after its stamp; the plain interval's are up to LAG + CADENCE.
    assert aligned_metrics['gateway_publish_delay_seconds_bucket{le="5.0",source="brightsky"}'] >= count - 3
    assert aligned_metrics['gateway_publish_delay_since_modified_seconds_count{source="brightsky"}'] == count
    assert aligned_metrics['gateway_publish_delay_since_modified_seconds_bucket{le="5.0",source="brightsky"}'] \
        == count


def test_a_restart_keeps_the_learned_rhythm(tmp_path: Path, broker: Mosquitto,
                                            rhythmic: tuple[RhythmicUpstream, RhythmicUpstream]):
    """The rhythm is saved in the data directory: after a restart the first planned fetch is aligned,
    instead of three plain-interval fetches to learn it again."""
    upstream = rhythmic[0]
    proc, port = start(tmp_path, "kept", broker, upstream, "auto")
    try:
        wait_until(lambda: get_json(port, "/api/status").get("sources", {}).get("brightsky", {})
                   .get("align", {}).get("hits", 0) >= 2, 40, interval=0.5)
    finally:
        proc.terminate()  # saves the state at exit
    saved = json.loads((tmp_path / "kept" / "data" / "state.json").read_text())["rhythms"]["brightsky"]
    assert saved["cadence"] == CADENCE
    assert len(saved["lags"]) >= 3

    first = len(upstream.requests)
    again = GatewayProcess(tmp_path / "kept.yaml", broker.port, env={"GATEWAY_HTTP_PORT": str(port),
                                                          "GATEWAY_DATA_DIR": str(tmp_path / "kept" / "data")})
    try:
        wait_until(lambda: len(upstream.requests) >= first + 4, 30, interval=0.2)
        align = get_json(port, "/api/status")["sources"]["brightsky"]["align"]
    finally:
        again.terminate()
    assert "restored the learned update rhythm of brightsky (aligned)" in again.log
    assert (align["state"], align["lag_from"], align["lag_s"]) == ("aligned", "last_modified", LAG)
    # The fetch at start is the plain one; every later one lands just after an update.
    late = [(t - LAG) % CADENCE for t in upstream.requests[first + 1:]]
    assert all(x < 1.5 for x in late), late
