"""Aligned polling's wiring: `align`/`cadence` in topics.yaml, the rhythm per source, and what a run
tells it (news, Last-Modified) through ``runs.run_once`` against a real local HTTP server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import load
from gateway.errors import ConfigError
from gateway.metrics import DataAge, Metrics
from gateway.runs import SourceState, run_once
from gateway.schedule import aligned_run, alignment, rhythm_of
from gateway.store import Store
from tests.helpers import ROOT, FixtureServer, brightsky_config, fresh_fixture


def edited(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    mutate(data)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def aligned_keys(cat: catalog.Catalog) -> set[str]:
    return {k for k, spec in cat.sources.items() if rhythm_of(spec, SourceState()) is not None}


def test_default_config_aligns_every_sources_only():
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    every = {k for k, s in cat.sources.items() if s.config.every is not None}
    assert aligned_keys(cat) == every
    assert "brightsky" in every
    assert not {"dwd_uv", "dwd_pollen", "uba_air", "waste_calendar"} & every  # cron: timed by hand
    assert alignment(cat.sources["dwd_uv"], SourceState()) == {"mode": "off"}
    state = SourceState()
    assert alignment(cat.sources["brightsky"], state)["state"] == "learning"
    # Made once, with the jitter drawn once per source, within the source's jitter.
    rhythm = rhythm_of(cat.sources["brightsky"], state)
    assert rhythm is state.rhythm
    assert rhythm is not None
    assert 0 <= rhythm.offset <= cat.sources["brightsky"].config.effective_jitter()
    assert rhythm.cadence == rhythm.every == 600
    assert rhythm_of(cat.sources["uba_air"], SourceState()) is None


def test_align_off_as_bare_yaml_word(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text((ROOT / "topics.yaml").read_text().replace(
        "    every: 10m                 # DWD SYNOP", "    align: off\n    every: 10m                 # DWD SYNOP", 1))
    cat = catalog.build(load(path), ADAPTERS)
    assert cat.sources["brightsky"].config.align == "off"  # YAML 1.1 reads `off` as false
    assert "brightsky" not in aligned_keys(cat)


@pytest.mark.parametrize(("mutate", "fragments"), [
    (lambda d: d["sources"]["dwd_uv"].update(align="auto"),
     ["sources.dwd_uv", "align: 'auto' works with 'every' only"]),
    (lambda d: d["sources"]["brightsky"].update(align="sometimes"), ["sources.brightsky.align", "'auto'", "'off'"]),
    (lambda d: d["sources"]["brightsky"].update(cadence="10x"), ["sources.brightsky.cadence", "not a duration"]),
])
def test_bad_align_or_cadence_is_one_line(tmp_path: Path, mutate, fragments: list[str]):
    with pytest.raises(ConfigError) as info:
        load(edited(tmp_path, mutate))
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "topics.yaml") in message
    for fragment in fragments:
        assert fragment in message


def test_a_run_reports_news_and_last_modified(tmp_path: Path, upstream: FixtureServer):
    cat = catalog.build(load(brightsky_config(tmp_path / "t.yaml", upstream)), ADAPTERS)
    spec, store, state = cat.sources["brightsky"], Store(cat.settings.mqtt.heartbeat), SourceState()
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now - timedelta(minutes=4)
    modified = now - timedelta(minutes=1)
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json", stamp), etag='"v1"',
                   headers={"Content-Type": "application/json", "Last-Modified": format_datetime(modified, True)})
    first = run_once(spec, state, store, now, mono=0.0)
    assert (first.result, first.news, first.newest, first.modified) == ("ok", True, stamp, modified)
    again = run_once(spec, state, store, now + timedelta(seconds=60), mono=60.0)
    assert (again.result, again.news, again.newest, again.modified) == ("not_modified", False, stamp, None)
    # A new body without Last-Modified: news, nothing to measure the delay since modification by.
    upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json", now))
    third = run_once(spec, state, store, now + timedelta(seconds=120), mono=120.0)
    assert (third.news, third.newest, third.modified) == (True, now, None)
    # Aligned polling takes these in (no plan yet: too few stamps), errors it leaves alone.
    learner = SourceState()
    assert aligned_run(spec, learner, first, now.timestamp()) is None
    assert aligned_run(spec, learner, again, now.timestamp() + 60) is None
    assert learner.rhythm is not None
    assert learner.rhythm.hits + learner.rhythm.missed == 0
    assert alignment(spec, learner)["state"] == "learning"


def test_aligned_run_plans_after_three_stamps(tmp_path: Path, upstream: FixtureServer):
    cat = catalog.build(load(brightsky_config(tmp_path / "t.yaml", upstream)), ADAPTERS)
    spec, store, state = cat.sources["brightsky"], Store(cat.settings.mqtt.heartbeat), SourceState()
    base = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
    plans = []
    for k in range(4):
        stamp = base + timedelta(minutes=10 * k)
        fetched = stamp + timedelta(minutes=7)  # the plain interval, 7 min after each stamp
        upstream.serve("/current_weather", fresh_fixture("brightsky/normal.json", stamp),
                       headers={"Content-Type": "application/json",
                                "Last-Modified": format_datetime(stamp + timedelta(minutes=4), True)})
        outcome = run_once(spec, state, store, fetched, mono=float(k))
        assert outcome.news
        plans.append(aligned_run(spec, state, outcome, fetched.timestamp()))
    assert plans[:2] == [None, None]
    # Learned from three stamps: the 10-minute grid and, from Last-Modified, a 4-minute lag.
    info = alignment(spec, state)
    assert (info["state"], info["lag_s"], info["lag_from"]) == ("aligned", 240.0, "last_modified")
    # After the 12:37 fetch the next may not come before 12:47. The 12:40 stamp arrives at 12:44,
    # and fetching it at 12:47 would keep every later fetch 3 minutes late: the plan skips to the
    # 12:50 stamp, at 12:54 + the source's jitter offset.
    assert plans[2] is not None
    last = plans[3]
    assert last is not None
    assert state.rhythm is not None
    assert last.timestamp() >= (base + timedelta(minutes=37)).timestamp() + 600  # never sooner than `every`
    assert last.timestamp() == pytest.approx((base + timedelta(minutes=54)).timestamp() + state.rhythm.offset)
    assert info["next_update"] == "2026-06-21T12:54:00+00:00"


def test_data_age_is_computed_at_scrape_time():
    clock = [1000.0]
    age = DataAge(clock=lambda: clock[0])
    registry = CollectorRegistry()
    registry.register(age)
    age.set("brightsky", datetime.fromtimestamp(900.0, UTC))
    age.set("sun", None)  # no data yet: no series

    def scrape() -> dict[str, float | None]:
        return {s: registry.get_sample_value("gateway_data_age_seconds", {"source": s})
                for s in ("brightsky", "sun")}

    assert scrape() == {"brightsky": 100.0, "sun": None}
    clock[0] = 1600.0
    assert scrape() == {"brightsky": 700.0, "sun": None}
    assert "gateway_data_age_seconds" in {m.name for m in Metrics().registry.collect()}
