"""MQTT topic-filter matching, as the broker does it."""

from __future__ import annotations

import pytest

from gateway.topics import matches


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("soest/#", "soest", True),
    ("soest/#", "soest/brightsky/temperature", True),
    ("soest/#", "soestx/a", False),
    ("#", "a/b/c", True),
    ("#", "$SYS/broker/uptime", False),
    ("+/b", "$SYS/b", False),
    ("$SYS/#", "$SYS/broker", True),
    ("homeassistant/+/node/+/config", "homeassistant/sensor/node/temp/config", True),
    ("homeassistant/+/node/+/config", "homeassistant/sensor/other/temp/config", False),
    ("homeassistant/+/node/+/config", "homeassistant/sensor/node/temp/config/x", False),
    ("homeassistant/+/node/+/config", "homeassistant/sensor/node/config", False),
    ("a/+", "a", False),
    ("a/+", "a/", True),
    ("a/+/c", "a//c", True),
    ("a/b", "a/b", True),
    ("a/b", "a/B", False),
    ("a/#/c", "a/b/c", False),  # not a valid filter: matches nothing
])
def test_matches(topic_filter: str, topic: str, expected: bool):
    assert matches(topic_filter, topic) is expected
