"""A hostile upstream against a running gateway: drips, silence and unexpected types in a body."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import FIXTURES, GatewayProcess, Mosquitto, Subscriber, free_port, wait_until, write_config
from tests.rawhttp import RawServer, drip, reply, silent

pytestmark = pytest.mark.broker


def brightsky_only(path: Path, url: str, **overrides: Any) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["sources"] = {k: v for k, v in data["sources"].items() if k in ("brightsky", "sun")}
        data["sources"]["brightsky"].update(base_url=url, **overrides)
    return write_config(path, url, edit=edit)


def body_drip(conn, stop):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    drip(conn, stop, b"{" + b" " * 99999, 0.3)


def test_dripping_source_goes_offline_and_counts_errors(tmp_path: Path, broker: Mosquitto):
    server = RawServer(body_drip)
    cfg = brightsky_only(tmp_path / "t.yaml", server.url, every="1s", jitter="0s", timeout="1s",
                         failure_threshold=2, max_age="3650d")
    sub = Subscriber(broker.port, "soest/#", live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        assert sub.wait_for("soest/brightsky/status", "offline", timeout=15).retain
        counts = wait_until(lambda: [int(m.payload) for m in sub.on("soest/brightsky/fetch_errors")
                                     if int(m.payload) >= 2], 5)
        assert counts[0] >= 2
        assert "timeout" in proc.log
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        proc.terminate()
        server.close()


def test_sigterm_exits_quickly_while_a_fetch_hangs(tmp_path: Path, broker: Mosquitto):
    server = RawServer(silent)
    cfg = brightsky_only(tmp_path / "t.yaml", server.url, timeout="300s")
    sub = Subscriber(broker.port, "soest/#", live=True)
    proc = GatewayProcess(cfg, broker.port)
    try:
        sub.wait_for("soest/gateway/status", "online", timeout=10)
        wait_until(lambda: server.requests, 10)  # the fetch is under way and will get no answer
        started = time.monotonic()
        assert proc.terminate(timeout=10) == 0
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed
        assert sub.wait_for("soest/gateway/status", "offline", timeout=2).retain
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        server.close()


def test_unexpected_type_in_body_is_bad_schema(tmp_path: Path, broker: Mosquitto):
    doc = json.loads((FIXTURES / "brightsky" / "normal.json").read_text())
    doc["weather"]["source_id"] = {"unexpected": "object"}
    body = json.dumps(doc).encode()
    server = RawServer(reply(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body)))
    cfg = brightsky_only(tmp_path / "t.yaml", server.url, every="1s", jitter="0s", failure_threshold=1)
    port = free_port()
    sub = Subscriber(broker.port, "soest/#", live=True)
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(port)})

    def metrics() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return ""

    try:
        sub.wait_for("soest/brightsky/status", "offline", timeout=15)
        # Every label set exists from the start (at 0), so the values are what counts.
        def errors(text: str, kind: str) -> float:
            m = re.search(rf'gateway_fetch_errors_total{{kind="{kind}",source="brightsky"}} ([0-9.e+]+)', text)
            return float(m.group(1)) if m else -1.0

        text = wait_until(lambda: (m := metrics()) and errors(m, "bad_schema") > 0 and m, 10)
        assert errors(text, "bad_schema") >= 1
        assert errors(text, "internal") == 0
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        proc.terminate()
        server.close()
