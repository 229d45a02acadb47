"""Every network source, end to end: fixture API → gateway → Mosquitto → subscriber; and `fetch`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, FixtureServer, GatewayProcess, Mosquitto, retained_tree, write_config
from tests.sources import SourceFixture, network_sources, only

pytestmark = pytest.mark.broker

SOURCES = network_sources()


@pytest.mark.parametrize("source", SOURCES, ids=[s.key for s in SOURCES])
def test_source_end_to_end(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer, source: SourceFixture):
    base_url = upstream.url + "/api"
    source.serve(upstream, base_url)
    cfg = write_config(tmp_path / "t.yaml", base_url, edit=lambda d: only(source.key, d, base_url))
    expected = source.expected_states()
    assert expected, "the normal fixture should give at least one value"
    # Some values depend on the clock (the next 3 hours, days until pickup): what the gateway saw
    # may be the expectation from just before or just after.
    proc = GatewayProcess(cfg, broker.port)
    try:
        status = f"soest/{source.key}/status"
        tree = retained_tree(broker.port, {status, *expected})
        assert tree[status] == b"online"
        later = source.expected_states()
        for topic, value in expected.items():
            assert tree[topic].decode() in (value, later.get(topic)), topic
        for topic in expected:
            attrs = json.loads(tree[f"{topic}/attributes"])
            assert attrs["license"]
            assert attrs["attribution"]
            assert attrs["observed_at"]
            assert attrs["source_url"].startswith(base_url)
        config_topics = [t for t in tree if t.endswith("/config") and f"_{source.key}_" in t]
        assert len(config_topics) >= len(expected)
        assert tree[f"soest/{source.key}/fetch_errors"] == b"0"
        assert "Traceback" not in proc.log
    finally:
        proc.terminate()


@pytest.mark.parametrize("source", SOURCES, ids=[s.key for s in SOURCES])
def test_fetch_command(tmp_path: Path, upstream: FixtureServer, source: SourceFixture):
    base_url = upstream.url + "/api"
    source.serve(upstream, base_url)
    cfg = write_config(tmp_path / "t.yaml", base_url, edit=lambda d: only(source.key, d, base_url))
    result = subprocess.run([sys.executable, "-m", "gateway", "fetch", source.key, "--config", str(cfg), "--json"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    shown = {r["topic"] for r in rows if r["value"] is not None}
    assert set(source.expected_states()) <= shown
