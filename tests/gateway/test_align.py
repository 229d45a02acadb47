"""Aligned polling's wiring: `align`/`cadence` in topics.yaml, the Aligner per source, and what a run
tells it (news, Last-Modified) through ``runs.run_once`` against a real local HTTP server."""

from __future__ import annotations

import random
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
from gateway.schedule import Aligner
from gateway.store import Store
from tests.helpers import ROOT, FixtureServer, brightsky_config, fresh_fixture


def edited(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    mutate(data)
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    return path


def test_default_config_aligns_every_sources_only():
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    aligner = Aligner(cat)
    every = {k for k, s in cat.sources.items() if s.config.every is not None and s.config.align != "off"}
    assert set(aligner.rhythms) == every
    assert "brightsky" in every
    assert not {"dwd_uv", "dwd_pollen", "uba_air", "waste_calendar"} & set(aligner.rhythms)  # cron: timed by hand
    assert aligner.describe("dwd_uv") == {"mode": "off"}
    assert aligner.describe("brightsky")["state"] == "learning"
    # The jitter is drawn once per source, within the source's jitter.
    assert 0 <= aligner.rhythms["brightsky"].offset <= cat.sources["brightsky"].config.effective_jitter()


def test_align_off_as_bare_yaml_word(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text((ROOT / "topics.yaml").read_text().replace(
        "    every: 10m                 # DWD SYNOP", "    align: off\n    every: 10m                 # DWD SYNOP", 1))
    cat = catalog.build(load(path), ADAPTERS)
    assert cat.sources["brightsky"].config.align == "off"  # YAML 1.1 reads `off` as false
    assert "brightsky" not in Aligner(cat).rhythms


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
    # The Aligner takes these in (no schedule yet: too few stamps).
    aligner = Aligner(cat, random.Random(1))
    assert aligner.next_run("brightsky", first, now.timestamp()) is None
    assert aligner.next_run("brightsky", again, now.timestamp() + 60) is None
    assert aligner.describe("brightsky")["state"] == "learning"


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
