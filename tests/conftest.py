"""Shared fixtures: a private Mosquitto per test, a fixture HTTP server, and the gateway's MQTT version.

Tests marked ``both_protocols`` run twice: with the gateway speaking MQTT 5 and speaking 3.1.1
(GATEWAY_MQTT_PROTOCOL, which every gateway process a test starts inherits), so the guarantees
that do not depend on MQTT 5 are shown for brokers that speak only 3.1.1 (NATS, RabbitMQ).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FixtureServer, Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosq = Mosquitto(tmp_path).start()
    yield mosq
    mosq.stop()


@pytest.fixture
def upstream() -> Iterator[FixtureServer]:
    server = FixtureServer()
    yield server
    server.close()


@pytest.fixture(params=["5", "3.1.1"], ids=["mqtt5", "mqtt311"])
def gateway_protocol(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GATEWAY_MQTT_PROTOCOL", request.param)
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Inside a both_protocols module, a test that depends on MQTT 5 runs only in its mqtt5 variant.
    keep = [item for item in items if not (
        item.get_closest_marker("mqtt5_only") and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("gateway_protocol") == "3.1.1")]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep
