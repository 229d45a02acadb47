"""Shared fixtures: a private Mosquitto per test and a fixture HTTP server."""

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
