"""One run of one source as a pure step: ``runs.run_once`` against a real local HTTP server, no broker."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import load
from gateway.records import Reading
from gateway.runs import SourceState, evaluate, run_once
from gateway.store import Store
from gateway.units import UNKNOWN_UNIT, trusted_unit
from tests.helpers import brightsky_config


def spec_and_store(tmp_path: Path, upstream, **overrides):
    cat = catalog.build(load(brightsky_config(tmp_path / "t.yaml", upstream, **overrides)), ADAPTERS)
    return cat.sources["brightsky"], Store(cat.settings.mqtt.heartbeat)


def test_a_good_run_carries_states_attributes_last_fetch_and_online(tmp_path: Path, upstream):
    spec, store = spec_and_store(tmp_path, upstream)
    now = datetime.now(UTC).replace(microsecond=0)
    outcome = run_once(spec, SourceState(), store, now, mono=0.0)
    states = dict(outcome.values.states)
    assert outcome.result == "ok"
    assert outcome.error_kind is None
    assert states["soest/brightsky/temperature"] == b"24.3"
    assert states["soest/brightsky/irradiance"] == b"768"  # 0.128 kWh/m² in 10 min
    assert {t for t, _ in outcome.values.attributes} >= {"soest/brightsky/temperature/attributes"}
    assert outcome.diagnostics == [("soest/brightsky/last_fetch", now.isoformat().encode())]
    assert outcome.online is True
    again = run_once(spec, SourceState(), store, now, mono=1.0)
    assert again.values.states == []
    assert again.online is True


def test_failures_count_and_the_threshold_takes_the_source_offline(tmp_path: Path, upstream):
    spec, store = spec_and_store(tmp_path, upstream, failure_threshold=2)
    upstream.serve("/current_weather", b'{"detail":"boom"}', status=500)
    state = SourceState()
    now = datetime.now(UTC).replace(microsecond=0)
    first = run_once(spec, state, store, now, mono=0.0)
    assert (first.result, first.error_kind, first.online) == ("error", "http_5xx", None)
    assert first.diagnostics == [("soest/brightsky/fetch_errors", b"1")]
    second = run_once(spec, state, store, now, mono=1.0)
    assert second.online is False
    assert second.diagnostics == [("soest/brightsky/fetch_errors", b"2")]
    assert state.last_error is not None
    assert state.last_error.startswith("http_5xx: ")


def test_a_value_refused_for_its_unit_is_counted_and_the_last_good_one_stays(tmp_path: Path, upstream):
    """SensorThings' unit trust (api.trusted_unit) refuses a symbol it does not know; the refusal
    counts as a rejected reading, as an implausible value does, and nothing replaces the value."""
    spec, store = spec_and_store(tmp_path, upstream)
    now = datetime.now(UTC).replace(microsecond=0)
    good = evaluate(spec, store, [Reading("temperature", 21.5, now)], now, "http://x", mono=0.0)
    assert good.states == [("soest/brightsky/temperature", b"21.5")]
    assert good.rejected == []
    value, attrs = trusted_unit(300.0, "C")  # coulomb, not Celsius
    assert value is None
    out = evaluate(spec, store, [Reading("temperature", value, now, attributes=attrs)], now, "http://x", mono=1.0)
    assert [(entity.key, reason) for entity, reason in out.rejected] == [("temperature", UNKNOWN_UNIT)]
    assert out.states == []
    assert store.entities["soest/brightsky/temperature"].text == "21.5"
    # A value that is merely missing is not a rejection.
    missing = evaluate(spec, store, [Reading("temperature", None, now)], now, "http://x", mono=2.0)
    assert missing.rejected == []
