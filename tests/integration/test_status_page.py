"""The operator's HTTP side: status page (in headless Chromium), /api/status, /readyz, and the refresh button."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.history import History
from gateway.status import PAGE
from tests.helpers import (
    ROOT,
    FixtureServer,
    GatewayProcess,
    Mosquitto,
    Subscriber,
    brightsky_config,
    free_port,
    fresh_fixture,
    publish,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.broker

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def status(port: int) -> dict:
    code, body = get(port, "/api/status")
    return json.loads(body) if code == 200 else {}


def start(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer, **brightsky: object):
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json"))

    def edit(data: dict) -> None:
        data["sources"] = {k: v for k, v in data["sources"].items() if k in ("brightsky", "sun")}
        data["sources"]["brightsky"].update(failure_threshold=1, **brightsky)

    cfg = write_config(tmp_path / "t.yaml", upstream.url, edit=edit)
    port = free_port()
    proc = GatewayProcess(cfg, broker.port, env={"GATEWAY_HTTP_PORT": str(port)})
    wait_until(lambda: status(port).get("sources", {}).get("brightsky", {}).get("status") == "online", 15)
    return port, proc


@pytest.fixture
def running(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer):
    port, proc = start(tmp_path, broker, upstream)
    yield port, proc
    proc.terminate()


@pytest.fixture
def running_fast(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer):
    """Bright Sky every 2 s, so a failure shows without a refresh (which is rate-limited per source)."""
    port, proc = start(tmp_path, broker, upstream, every="2s")
    yield port, proc
    proc.terminate()


def chromium_dom(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """Render ``url`` in headless Chromium, let its scripts run, and return the resulting DOM."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=4000", "--window-size=1280,1000"]
    assert CHROMIUM is not None
    if screenshot is not None:
        subprocess.run([CHROMIUM, *flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=60,
                       check=True)
    result = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=60,
                            check=True)
    return result.stdout


def day_of_history(server: FixtureServer, st: dict, tmp_path: Path) -> None:
    """The page's own HTML and script, fed the gateway's real status and a full day of history
    (a test cannot wait a day): every sparkline and strip drawn, in status-page-history.png."""
    history = History()
    now = time.time()
    for i, e in enumerate(st["entities"]):
        if not re.fullmatch(r"-?[0-9.]+", e["value"] or ""):
            continue  # text, ON/OFF and timestamps have no sparkline
        for k in range(96):
            history.value(e["topic"], str(round(10 + 5 * math.sin(k / 15 + i), 2)).encode(), now - 86400 + k * 900)
    for key in st["sources"]:
        for k in range(288):
            outcome = "error" if 100 <= k < 110 else "not_modified" if k % 3 else "ok"
            history.fetch(key, outcome, 300 + 200 * (k % 3) + (3000 if 100 <= k < 110 else 0), now - 86400 + k * 300)
    server.serve("/", PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    server.serve("/api/status", st)
    server.serve("/api/history", history.document(now))
    dom = chromium_dom(server.url + "/", tmp_path / "profile-history", ARTIFACTS / "status-page-history.png")
    sparks = re.findall(r'<svg class="spark"[^>]*><polyline points="([^"]+)"', dom)
    assert len(sparks) == sum(1 for e in st["entities"] if history.entities.get(e["topic"]))
    assert all(len(points.split()) >= 90 for points in sparks)  # a day of 15-minute points
    strips = re.findall(r'<svg class="strip".*?</svg>', dom)
    assert len(strips) == len(st["sources"])
    assert all(s.count('class="error"') == 10 and s.count("<rect") >= 280 for s in strips)


def test_api_status_and_readiness(running, broker: Mosquitto):
    port, _ = running
    st = status(port)
    assert st["broker"]["connected"] is True
    assert st["sources"]["brightsky"]["last_fetch"]
    assert st["sources"]["brightsky"]["next_run"]
    assert st["sources"]["brightsky"]["requests"] >= 1
    # Data age and the expected cadence; aligned polling is still learning after one fetch.
    assert 0 <= st["sources"]["brightsky"]["data_age_s"] <= 60
    assert st["sources"]["brightsky"]["newest_observed"]
    assert st["sources"]["brightsky"]["cadence_s"] == 600
    assert st["sources"]["brightsky"]["align"]["mode"] == "auto"
    assert st["sources"]["brightsky"]["align"]["state"] == "learning"
    temperature = next(e for e in st["entities"] if e["source"] == "brightsky" and e["key"] == "temperature")
    assert temperature["value"] == "24.3"
    assert temperature["unit"] == "°C"
    assert temperature["topic"] == "soest/brightsky/temperature"
    assert temperature["age_s"] is not None
    assert get(port, "/healthz") == (200, b"ok\n")
    code, body = get(port, "/readyz")
    assert code == 200
    assert json.loads(body) == {"ready": True, "reasons": []}
    broker.stop()
    wait_until(lambda: get(port, "/readyz")[0] == 503, 10)
    assert "not connected to the MQTT broker" in json.loads(get(port, "/readyz")[1])["reasons"]
    broker.start()
    wait_until(lambda: get(port, "/readyz")[0] == 200, 10)


def test_refresh_button_fetches_due_sources_now(running, broker: Mosquitto, upstream: FixtureServer):
    """A press runs the sun (no upstream to spare) now, but not Bright Sky, fetched moments ago."""
    _, proc = running
    before = len(upstream.requests)
    publish(broker.port, "soest/gateway/refresh", "PRESS")
    # Positive marker: the press's own log line, written after it has rescheduled what is due.
    line = wait_until(lambda: next((r for r in proc.log.splitlines() if "refresh: fetching" in r), None), 10)
    assert "fetching 1 of 2 sources now (sun); fetched too recently: brightsky" in line
    assert len(upstream.requests) == before


def test_a_retained_press_does_not_refresh_at_start(tmp_path: Path, broker: Mosquitto, upstream: FixtureServer):
    publish(broker.port, "soest/gateway/refresh", "PRESS", retain=True)  # left on the broker by someone
    cfg = brightsky_config(tmp_path / "t.yaml", upstream)
    proc = GatewayProcess(cfg, broker.port)
    sub = Subscriber(broker.port, "soest/brightsky/status")
    try:
        sub.wait_for("soest/brightsky/status", "online")
        # Positive marker: the gateway subscribes to the refresh topic before it publishes its
        # discovery sync marker, so the broker hands it the retained press before that marker, and
        # it logs "discovery: ..." only after the marker came back. refresh_all() logs before it
        # returns, so by then a refresh for the retained press would be in the log.
        wait_until(lambda: "discovery:" in proc.log, 10)
        assert "refresh: fetching" not in proc.log
        # The button itself works: a live press is handled (and not locked out by the retained
        # one); it runs the sun, and leaves Bright Sky, fetched moments ago, alone.
        publish(broker.port, "soest/gateway/refresh", "PRESS")
        wait_until(lambda: "refresh: fetching" in proc.log, 10)
        assert proc.log.count("refresh: fetching") == 1
        assert "fetched too recently: brightsky" in proc.log
        assert len(upstream.requests) == 1  # only the first scheduled fetch
    finally:
        sub.close()
        proc.terminate()


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed")
def test_status_page_in_headless_chromium(running_fast, tmp_path: Path, upstream: FixtureServer, broker: Mosquitto):
    port, _ = running_fast
    url = f"http://127.0.0.1:{port}/"
    ARTIFACTS.mkdir(exist_ok=True)
    dom = chromium_dom(url, tmp_path / "profile", ARTIFACTS / "status-page.png")
    assert 'id="source-brightsky" data-status="online"' in dom
    assert '<td class="online">online</td>' in dom
    assert "24.3" in dom  # the temperature, rendered by the page's own script from /api/status
    assert "soest/brightsky/temperature" in dom
    assert "<code>sensor.soest_brightsky_temperature</code>" in dom  # so an operator finds it in HA
    assert '<td class="polling">interval (learning)</td>' in dom  # aligned polling has one stamp so far
    assert '<td class="num">2 s</td>' in dom  # the cadence (every: 2s)
    # The pictures of the last day: a sparkline per numeric entity, a fetch strip per source.
    assert '<td class="spark"><svg class="spark"' in dom
    assert '<svg class="strip"' in dom
    assert '<rect x="' in dom
    assert 'class="ok"' in dom
    code, body = get(port, "/api/history")
    past = json.loads(body)
    assert code == 200
    assert past["entities"]["soest/brightsky/temperature"][-1][1] == 24.3
    assert "soest/sun/daylight" not in past["entities"]  # ON/OFF: nothing to draw
    assert past["sources"]["brightsky"][-1][2] == "ok"
    assert (ARTIFACTS / "status-page.png").stat().st_size > 1000
    linked = chromium_dom(url + "?ha=http://ha.example:8123/", tmp_path / "profile-ha")
    assert '<a href="http://ha.example:8123/history?entity_id=sensor.soest_brightsky_temperature">' \
           "sensor.soest_brightsky_temperature</a>" in linked

    day_of_history(upstream, status(port), tmp_path)

    upstream.serve("/current_weather", "upstream down", status=503)
    wait_until(lambda: status(port)["sources"]["brightsky"]["status"] == "offline", 15)
    dom = chromium_dom(url, tmp_path / "profile2", ARTIFACTS / "status-page-failing.png")
    assert 'id="source-brightsky" data-status="offline"' in dom
    assert "HTTP 503" in dom
    assert 'id="source-sun" data-status="online"' in dom
