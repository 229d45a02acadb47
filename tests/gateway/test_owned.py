"""The registry of value topics in the data directory: what it may name, and the two phases."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from adapters import ADAPTERS
from gateway import catalog, owned
from gateway.config import load
from gateway.metrics import Metrics
from gateway.outbox import TopicClass
from gateway.owned import OWNED_FILE, OwnedTopics, clears_for, configured_topics, own_value_topic
from gateway.persist import StateFile
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def cat() -> catalog.Catalog:
    return catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)


def registry(tmp_path: Path, topics: list[object]) -> StateFile:
    file = StateFile(tmp_path, OWNED_FILE)
    file.save({"topics": topics})
    return file


@pytest.mark.parametrize(("topic", "ours"), [
    ("soest/brightsky/temperature", True),
    ("soest/sun/status", True),
    ("soest/old_source/fetch_errors", True),
    ("soest/gateway/status", False),            # the gateway's own topics are never value topics
    ("soest/brightsky/temperature/attributes", False),  # follows its state, never listed alone
    ("homeassistant/sensor/soest/x/config", False),
    ("zigbee2mqtt/bridge/state", False),
    ("other/brightsky/temperature", False),
    ("soest/brightsky", False),
    ("soest/+/temperature", False),
    ("soest/Brightsky/temperature", False),
    ("soest/brightsky/temp erature", False),
])
def test_only_value_topics_under_the_base_topic_are_ours(topic: str, ours: bool):
    assert bool(own_value_topic("soest").fullmatch(topic)) is ours


def test_clears_follow_the_kind_of_topic():
    assert clears_for("soest/a/temperature") == [("soest/a/temperature", TopicClass.STATE),
                                                 ("soest/a/temperature/attributes", TopicClass.ATTRIBUTES)]
    assert clears_for("soest/a/status") == [("soest/a/status", TopicClass.AVAILABILITY)]
    assert clears_for("soest/a/last_fetch") == [("soest/a/last_fetch", TopicClass.DIAGNOSTIC)]


def test_phase_one_lists_every_configured_topic_before_anything_is_published(tmp_path: Path, cat):
    file = StateFile(tmp_path, OWNED_FILE)
    reg = OwnedTopics(cat, file, Metrics())
    assert reg.orphans == []
    listed = set(file.load()["topics"])
    assert listed == configured_topics(cat)
    assert {"soest/brightsky/temperature", "soest/brightsky/status", "soest/sun/fetch_errors"} <= listed
    assert all(own_value_topic(cat.base).fullmatch(t) for t in listed)
    before = file.path.stat().st_mtime_ns
    OwnedTopics(cat, file, Metrics())
    assert file.path.stat().st_mtime_ns == before  # nothing new: not written again


def test_removed_topics_become_orphans_and_stay_listed_until_cleared(tmp_path: Path, cat):
    file = registry(tmp_path, ["soest/old/temperature", "soest/brightsky/temperature"])
    reg = OwnedTopics(cat, file, Metrics())
    assert reg.orphans == ["soest/old/temperature"]
    assert "soest/old/temperature" in file.load()["topics"]  # forgotten only after the clears


def test_a_planted_registry_names_nothing_that_is_not_ours(tmp_path: Path, cat, caplog: pytest.LogCaptureFixture):
    planted = ["homeassistant/sensor/x/y/config", "soest/gateway/status", "zigbee2mqtt/bridge/state", 7, None,
               {"t": 1}, "soest/#", "soest/old/x/attributes", "soest/old/x\x00", "soest/old/pm25"]
    with caplog.at_level(logging.WARNING):
        reg = OwnedTopics(cat, registry(tmp_path, planted), Metrics())
    assert reg.orphans == ["soest/old/pm25"]
    assert "ignored 9 entries that are not value topics under 'soest'" in caplog.text


def test_a_huge_registry_is_capped(tmp_path: Path, cat, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(owned, "MAX_REMEMBERED_EXTRA", 3)
    reg = OwnedTopics(cat, registry(tmp_path, [f"soest/old/e{i}" for i in range(10)]), Metrics())
    assert len(reg.orphans) == 3


def test_a_registry_that_is_no_list_is_ignored(tmp_path: Path, cat):
    file = StateFile(tmp_path, OWNED_FILE)
    file.path.write_text(json.dumps({"version": 1, "topics": {"soest/old/x": 1}}))
    assert OwnedTopics(cat, file, Metrics()).orphans == []


def test_without_a_data_directory_nothing_is_remembered(cat):
    reg = OwnedTopics(cat, None, Metrics())
    assert reg.orphans == []
