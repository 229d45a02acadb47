"""Upstream faults, injected per source through a local HTTP server.

For each fault every network source but one is broken at once (on one host); the remaining one
(on another host, rotating per fault) and the locally computed sun are the control group. Each
broken source must go offline after its threshold, count the fault under its own error kind,
keep its last good values, leave the others alone, and come back when upstream heals.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    free_port,
    retained_tree,
    wait_until,
    write_config,
)
from tests.sources import SourceFixture, network_sources

pytestmark = pytest.mark.broker

SOURCES = network_sources()
MAX_BYTES = 256 * 1024


def fault_reply(source: SourceFixture, fault: str) -> dict[str, Any]:
    body = source.body()
    ctype = "text/calendar" if source.normal.suffix == ".ics" else "application/json"
    return {
        "http_500": {"body": b'{"detail":"Internal Server Error"}', "status": 500},
        "http_429": {"body": b'{"detail":"Too Many Requests"}', "status": 429,
                     "headers": {"Content-Type": "application/json", "Retry-After": "2"}},
        "timeout": {"body": body, "delay": 2.5, "headers": {"Content-Type": ctype}},
        "reset": {"body": b"", "reset": True},
        "html": {"body": b"<!DOCTYPE html><html><body><h1>Wartungsarbeiten</h1></body></html>",
                 "headers": {"Content-Type": "text/html; charset=utf-8"}},
        "truncated": {"body": body[: len(body) * 3 // 5], "headers": {"Content-Type": ctype}},
        "renamed": {"body": b'{"result_v2": {"items": [], "generated": "2026-11-26"}}',
                    "headers": {"Content-Type": "application/json"}},
        "too_large": {"body": b"[" + b" " * (MAX_BYTES + 1024) + b"]", "headers": {"Content-Type": ctype}},
        "content_type": {"body": body, "headers": {"Content-Type": "image/png"}},
    }[fault]


EXPECTED_KINDS = {
    "http_500": {"http_5xx"},
    "http_429": {"http_429"},
    "timeout": {"timeout"},
    "reset": {"reset", "connection"},
    "html": {"html_page"},
    "truncated": {"bad_json", "bad_schema", "not_ics", "not_csv"},
    "renamed": {"bad_schema", "not_ics"},
    "too_large": {"too_large"},
    "content_type": {"content_type"},
}


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def error_kinds(metrics: str, source: str) -> set[str]:
    kinds = set()
    for line in metrics.splitlines():
        if line.startswith("gateway_fetch_errors_total{") and f'source="{source}"' in line:
            value = float(line.rsplit(" ", 1)[1])
            if value > 0:
                kinds.add(line.split('kind="', 1)[1].split('"', 1)[0])
    return kinds


@pytest.mark.parametrize("fault", list(EXPECTED_KINDS))
def test_upstream_fault(tmp_path: Path, broker: Mosquitto, fault: str):
    control = SOURCES[list(EXPECTED_KINDS).index(fault) % len(SOURCES)]
    broken = [s for s in SOURCES if s is not control]
    bad_host, good_host = FixtureServer(), FixtureServer()
    bad_url, good_url = bad_host.url + "/api", good_host.url + "/api"
    for source in broken:
        source.serve(bad_host, bad_url)
    control.serve(good_host, good_url)

    def edit(data: dict[str, Any]) -> None:
        data["http"] = {"per_host_interval": 0, "max_bytes": MAX_BYTES}
        keep = {s.key for s in SOURCES} | {"sun"}
        data["sources"] = {k: v for k, v in data["sources"].items() if k in keep}
        for key, source in data["sources"].items():
            if key == "sun":
                continue
            source.pop("cron", None)
            source.update(every="1s", jitter="0s", failure_threshold=2, timeout="1s", max_age="3650d",
                          enabled=True, base_url=good_url if key == control.key else bad_url)

    cfg = write_config(tmp_path / "t.yaml", bad_url, edit=edit)
    http_port = free_port()
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(http_port)})
    sub = Subscriber(broker.port, "soest/#", live=True)
    try:
        expected = {s.key: s.expected_states() for s in SOURCES}
        before = retained_tree(broker.port, {f"soest/{s.key}/status" for s in SOURCES}
                               | {t for e in expected.values() for t in e})
        assert all(before[f"soest/{s.key}/status"] == b"online" for s in SOURCES)

        mark = sub.mark()
        for source in broken:
            source.break_with(bad_host, bad_url, **fault_reply(source, fault))
        for source in broken:
            sub.wait_for(f"soest/{source.key}/status", "offline", timeout=20, after=mark)
        metrics = wait_until(lambda: all(error_kinds(m := scrape(http_port), s.key) for s in broken) and m, 10)
        seen: set[str] = set()
        for source in broken:
            kinds = error_kinds(metrics, source.key)
            seen |= kinds
            # A 429 from one source makes every source on that host wait (rate_limited, no request).
            allowed = EXPECTED_KINDS[fault] | ({"rate_limited"} if fault == "http_429" else set())
            assert kinds <= allowed, (source.key, kinds)
            if fault != "http_429":
                assert kinds & EXPECTED_KINDS[fault], (source.key, kinds)
        assert seen & EXPECTED_KINDS[fault]
        assert error_kinds(metrics, control.key) == set()

        during = retained_tree(broker.port, {t for s in broken for t in expected[s.key]} | {"soest/sun/status"})
        for source in broken:
            for topic, value in expected[source.key].items():
                assert during[topic].decode() == value, topic  # the last good value stays
        assert during[f"soest/{control.key}/status"] == b"online"
        assert during["soest/sun/status"] == b"online"
        # Positive marker: a control fetch that finished after every broken source went offline;
        # had the control gone offline meanwhile, that status would have arrived before it.
        offline_at = sub.mark()
        sub.wait_for(f"soest/{control.key}/last_fetch", timeout=10, after=offline_at)
        assert [m for m in sub.on(f"soest/{control.key}/status") if m.payload == b"offline"] == []

        mark = sub.mark()
        for source in broken:
            source.serve(bad_host, bad_url)
        for source in broken:
            sub.wait_for(f"soest/{source.key}/status", "online", timeout=20, after=mark)
        assert proc.proc.poll() is None
        assert "Traceback" not in proc.log
    finally:
        sub.close()
        proc.terminate()
        bad_host.close()
        good_host.close()
