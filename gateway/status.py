"""What the operator sees over HTTP: readiness, a JSON status document and a small status page."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway import __version__
from gateway.catalog import Catalog, SourceSpec
from gateway.history import History
from gateway.http import Route
from gateway.mqtt import MqttLink
from gateway.payloads import encode_json, iso
from gateway.runs import SourceState
from gateway.schedule import alignment
from gateway.store import Store


@dataclass(frozen=True)
class View:
    """What the status page may read of a running gateway (all of it owned by the event loop)."""

    catalog: Catalog
    sources: Mapping[str, SourceState]
    store: Store
    link: MqttLink
    started_at: datetime
    started_mono: float
    next_run: Callable[[str], datetime | None]
    instance: str = ""
    role: str = "active"  # "standby": another instance publishes (gateway.lease)
    push: Callable[[str], dict[str, Any] | None] = lambda key: None  # a source's push link (gateway.push)


def snapshot(view: View) -> dict[str, Any]:
    """The whole status as JSON-ready data; call it on the gateway's event loop."""
    now = datetime.now(UTC)
    broker = view.link.broker
    host, port = view.link.address
    sources: dict[str, Any] = {}
    entities: list[dict[str, Any]] = []
    for key, spec in view.catalog.sources.items():
        state = view.sources[key]
        newest = view.store.newest_observed(spec)
        sources[key] = {
            "name": spec.device_name,
            "adapter": spec.adapter.name,
            "status": "unknown" if state.online is None else "online" if state.online else "offline",
            "schedule": spec.schedule_text(),
            "last_fetch": iso(state.last_success),
            "last_error": state.last_error,
            "failures_in_a_row": state.failures,
            "next_run": iso(view.next_run(key)),
            "requests": state.runs,
            "errors": state.errors_total,
            "max_age_s": spec.max_age,
            "newest_observed": iso(newest),
            "data_age_s": round((now - newest).total_seconds()) if newest is not None else None,
            "cadence_s": spec.config.effective_cadence(),
            "align": alignment(spec, state),
            "push": view.push(key),
        }
        entities.extend(_entity_rows(spec, view.store, now))
    return {
        "version": __version__,
        "city": view.catalog.settings.city.name,
        "started_at": iso(view.started_at),
        "uptime_s": round(time.monotonic() - view.started_mono),
        "instance": view.instance,
        "role": view.role,
        "broker": {"connected": view.link.connected, "host": host, "port": port, "nodes": broker.address,
                   "protocol": view.link.protocol, "tls": broker.use_tls, "connections": view.link.connections,
                   "failed_subscriptions": view.link.subscriptions.failed()},
        "base_topic": view.catalog.base,
        "sources": sources,
        "entities": entities,
    }


def _entity_rows(spec: SourceSpec, store: Store, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for entity in spec.entities:
        st = store.entities.get(entity.state_topic)
        age = (now - st.observed_at).total_seconds() if st is not None and st.observed_at else None
        rows.append({
            "source": spec.key,
            "key": entity.key,
            "name": entity.name,
            "value": st.text if st is not None else None,
            "unit": entity.measurement.unit,
            "observed_at": iso(st.observed_at) if st is not None else None,
            "age_s": round(age) if age is not None else None,
            "stale": age is not None and age > spec.max_age,
            "topic": entity.state_topic,
            "entity_id": f"{entity.component}.{entity.unique_id}",
        })
    return rows


def readiness(status: dict[str, Any]) -> tuple[bool, list[str]]:
    """Ready = connected to the broker and at least one source delivering fresh data (a standby: connected)."""
    reasons = []
    if not status["broker"]["connected"]:
        reasons.append("not connected to the MQTT broker")
    for topic_filter in status["broker"].get("failed_subscriptions", ()):
        reasons.append(f"the broker refused the subscription to {topic_filter}; retrying")
    if status.get("role") != "standby" and not any(s["status"] == "online" for s in status["sources"].values()):
        reasons.append("no source has fresh data")
    return not reasons, reasons


def info(catalog: Catalog, started_at: datetime, instance: str = "", role: str = "active",
         mqtt: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The retained ``<base>/gateway/info`` document: what this gateway publishes and how often.

    ``mqtt``: the connection as negotiated (protocol version, node), once connected.
    """
    settings = catalog.settings
    return {
        "version": __version__,
        "started_at": iso(started_at),
        "instance": instance,
        "role": role,
        "mqtt": dict(mqtt) if mqtt else None,
        "city": settings.city.model_dump(),
        "base_topic": catalog.base,
        "discovery_prefix": catalog.prefix if settings.mqtt.discovery else None,
        "heartbeat_s": settings.mqtt.heartbeat,
        "sources": {
            key: {"adapter": s.adapter.name, "schedule": s.schedule_text(), "interval_s": s.interval,
                  "max_age_s": s.max_age, "expire_after_s": s.expire_after,
                  "entities": [e.key for e in s.entities], "provider": s.adapter.provider,
                  "license": s.license, "attribution": s.attribution}
            for key, s in catalog.sources.items()},
    }


JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
BUSY = 503, JSON, encode_json({"error": "the gateway's event loop did not answer in time"})


def routes(on_loop: Callable[[Callable[[], Any]], Any], view: Callable[[], View], history: History) -> dict[str, Route]:
    """The HTTP routes; ``on_loop`` runs a function on the event loop and raises TimeoutError when it is stuck."""

    def status_now() -> dict[str, Any]:
        return on_loop(lambda: snapshot(view()))  # type: ignore[no-any-return]

    def ping() -> None:
        on_loop(lambda: None)

    def past() -> tuple[int, str, bytes]:
        try:
            return 200, JSON, encode_json(on_loop(lambda: history.document(time.time())))
        except (TimeoutError, RuntimeError):
            return BUSY

    def api() -> tuple[int, str, bytes]:
        try:
            return 200, JSON, encode_json(status_now())
        except (TimeoutError, RuntimeError):
            return BUSY

    def ready() -> tuple[int, str, bytes]:
        try:
            ok, reasons = readiness(status_now())
        except (TimeoutError, RuntimeError):
            return BUSY
        return (200 if ok else 503), JSON, encode_json({"ready": ok, "reasons": reasons})

    def healthz() -> tuple[int, str, bytes]:
        # Alive means the event loop still answers, not merely that this HTTP thread runs.
        try:
            ping()
        except (TimeoutError, RuntimeError):
            return 503, TEXT, b"event loop not responding\n"
        return 200, TEXT, b"ok\n"

    return {
        "/": lambda: (200, "text/html; charset=utf-8", PAGE.encode()),
        "/api/status": api,
        "/api/history": past,
        "/readyz": ready,
        "/healthz": healthz,
    }


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Soest MQTT Gateway</title>
<style>
 body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2329}
 header{background:#1d4e89;color:#fff;padding:12px 20px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 header h1{font-size:18px;margin:0} main{padding:16px 20px} h2{font-size:15px;margin:20px 0 8px}
 table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
 th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ea;vertical-align:top}
 th{background:#eef1f5;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
 .online{color:#0a7d32;font-weight:600} .offline{color:#b3261e;font-weight:600} .unknown{color:#8a6d00}
 .stale{color:#b3261e} code{font-size:12px;color:#44505c} .err{color:#b3261e;font-size:12px}
 #updated{opacity:.8;font-size:12px}
 svg.spark{display:block} svg.spark polyline{fill:none;stroke:#1d4e89;stroke-width:1.5}
 svg.strip rect.ok{fill:#0a7d32} svg.strip rect.not_modified{fill:#9db8d9} svg.strip rect.error{fill:#b3261e}
 svg.strip polyline{fill:none;stroke:#8a6d00;stroke-width:1}
 header .online,header .offline{background:#fff;padding:1px 10px;border-radius:10px}
</style></head>
<body>
<header><h1>Soest MQTT Gateway</h1><span id="version"></span><span id="broker"></span>
<span id="updated"></span></header>
<main>
<h2>Sources</h2>
<table id="sources"><thead><tr><th>Source</th><th>Status</th><th>Data age</th><th>Cadence</th>
<th>Polling</th><th>Last 24 h</th><th>Last fetch</th><th>Next run</th><th>Requests</th><th>Errors</th>
<th>Last error</th></tr></thead><tbody></tbody></table>
<h2>Entities</h2>
<table id="entities"><thead><tr><th>Entity</th><th>Value</th><th>Last 24 h</th><th>Unit</th><th>Age</th><th>Topic</th>
<th>Home Assistant</th></tr></thead><tbody></tbody></table>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
// ?ha=http://homeassistant.local:8123 (remembered in this browser) turns entity ids into links to
// their history in that Home Assistant; the page cannot know where Home Assistant runs by itself.
const params = new URLSearchParams(location.search);
if (params.has("ha")) localStorage.setItem("ha", params.get("ha"));
const ha = (localStorage.getItem("ha") || "").replace(/[/]+$/, "");
function entityId(td, id) {
  const el = document.createElement(/^https?:[/][/][^ "<>]+$/.test(ha) ? "a" : "code");
  if (el.tagName === "A") el.href = ha + "/history?entity_id=" + encodeURIComponent(id);
  el.textContent = id; td.replaceChildren(el);
}
function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text ?? "—"; if (cls) td.className = cls; return td;
}
function age(s) {
  if (s == null) return "—"; if (s < 120) return s + " s"; if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}
function when(t) { return t ? new Date(t).toLocaleString() : "—"; }
// "aligned, lag 4.9 min": fetches follow upstream's learned rhythm; otherwise the plain interval.
function polling(a) {
  if (!a || a.mode === "off") return "interval";
  if (a.state !== "aligned") return "interval (" + a.state + ")";
  return "aligned, lag " + age(Math.round(a.lag_s));
}
function pushed(p) {
  if (!p) return "";
  if (p.up) return "; push: " + p.topics + " topics on " + p.host;
  return p.running ? "; push down (" + (p.why || "not connected") + ")" : "; push starts with the first poll";
}
// Pictures of the last day from /api/history (refreshed every minute): plain SVG, no library.
const SVG = "http://www.w3.org/2000/svg";
let past = {entities: {}, sources: {}};
function svg(cls, w, h) {
  const el = document.createElementNS(SVG, "svg");
  el.setAttribute("class", cls); el.setAttribute("width", w); el.setAttribute("height", h);
  el.setAttribute("viewBox", "0 0 " + w + " " + h); return el;
}
function line(points, x0, x1, w, h) {
  // points: [[t, value], ...]; y scaled to their own range, x to the day ending now.
  const vals = points.map(p => p[1]).filter(v => v != null);
  if (!vals.length) return null;
  const lo = Math.min(...vals), hi = Math.max(...vals), span = hi - lo || 1;
  const el = document.createElementNS(SVG, "polyline");
  el.setAttribute("points", points.filter(p => p[1] != null).map(p =>
    ((p[0] - x0) / (x1 - x0) * w).toFixed(1) + "," + (h - 2 - (p[1] - lo) / span * (h - 4)).toFixed(1)).join(" "));
  return el;
}
function sparkline(td, points) {
  const now = Date.now() / 1000, el = svg("spark", 120, 24), pl = line(points || [], now - 86400, now, 120, 24);
  if (pl) { el.appendChild(pl); td.replaceChildren(el); } else td.textContent = "—";
}
function strip(td, points) {
  // One bar per 5-minute slot with a fetch (green ok, pale not modified, red error); the line is the data age.
  const now = Date.now() / 1000, w = 144, h = 24, el = svg("strip", w, h);
  for (const [t, , outcome] of points || []) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", ((t - now + 86400) / 86400 * w).toFixed(1)); r.setAttribute("y", 14);
    r.setAttribute("width", 1); r.setAttribute("height", 10); r.setAttribute("class", outcome);
    el.appendChild(r);
  }
  const pl = line(points || [], now - 86400, now, w, 12);
  if (pl) el.appendChild(pl);
  td.replaceChildren(el);
}
function render(st) {
  $("version").textContent = "v" + st.version + " · " + st.city + (st.role === "standby" ? " · standby" : "");
  const b = st.broker;
  $("broker").innerHTML = "";
  const span = document.createElement("span");
  span.className = b.connected ? "online" : "offline";
  span.textContent = (b.connected ? "broker connected" : "broker disconnected")
    + " (" + b.host + ":" + b.port + ", MQTT " + b.protocol + ")";
  $("broker").appendChild(span);
  const sources = $("sources").tBodies[0]; sources.replaceChildren();
  for (const [key, s] of Object.entries(st.sources)) {
    const row = sources.insertRow(); row.id = "source-" + key; row.dataset.status = s.status;
    cell(row, s.name + " (" + key + ")");
    cell(row, s.status, s.status);
    cell(row, age(s.data_age_s), "num age" + (s.data_age_s > s.max_age_s ? " stale" : ""));
    cell(row, age(s.cadence_s), "num"); cell(row, polling(s.align) + pushed(s.push), "polling");
    strip(cell(row, ""), past.sources[key]);
    cell(row, when(s.last_fetch)); cell(row, when(s.next_run));
    cell(row, s.requests, "num"); cell(row, s.errors, "num"); cell(row, s.last_error, "err");
  }
  const entities = $("entities").tBodies[0]; entities.replaceChildren();
  for (const e of st.entities) {
    const row = entities.insertRow(); row.id = "entity-" + e.source + "-" + e.key;
    cell(row, e.name + " (" + e.source + ")");
    cell(row, e.value, "num value"); sparkline(cell(row, "", "spark"), past.entities[e.topic]); cell(row, e.unit);
    cell(row, age(e.age_s), e.stale ? "stale" : ""); cell(row, e.topic).innerHTML = "<code></code>";
    row.cells[5].firstChild.textContent = e.topic;
    entityId(cell(row, ""), e.entity_id);
  }
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}
let pastAt = 0;
async function refresh() {
  try {
    if (Date.now() - pastAt > 60000) {
      const resp = await fetch("api/history", {cache: "no-store"});
      if (resp.ok) { past = await resp.json(); pastAt = Date.now(); }
    }
    const resp = await fetch("api/status", {cache: "no-store"});
    render(await resp.json());
  } catch (err) {
    $("updated").textContent = "status unavailable: " + err;
  }
}
refresh();
setInterval(refresh, 5000);
</script>
</body></html>
"""
