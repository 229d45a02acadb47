"""Shared fixtures: a private Mosquitto per test, a NATS cluster per module, a fixture HTTP server,
and the gateway's MQTT version.

Tests marked ``both_protocols`` run twice: with the gateway speaking MQTT 5 and speaking 3.1.1
(GATEWAY_MQTT_PROTOCOL, which every gateway process a test starts inherits), so the guarantees
that do not depend on MQTT 5 are shown for brokers that speak only 3.1.1 (NATS, RabbitMQ).
"""

from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.helpers import FixtureServer, GatewayProcess, Mosquitto
from tests.nats import NatsCluster, nats_binary


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosq = Mosquitto(tmp_path).start()
    yield mosq
    mosq.stop()


@pytest.fixture(scope="session", autouse=True)
def _collect_leftover_sockets_quietly() -> Iterator[None]:
    """Collect, before pytest's own last collection, what the run left for the garbage collector.

    One fresh-clone run in five ended with all tests passed and exit 1: pytest's final gc found an
    unclosed in-process socket pair (a test's client and its in-process server, which of them
    could not be told afterwards) and reported the ResourceWarning, which our warning filter turns
    into an error. A leak inside a test still fails that test; this only keeps the collector's
    leftovers at the very end from failing a green run.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture(autouse=True)
def _no_gateway_outlives_its_test() -> Iterator[None]:
    """A test that fails before stopping its gateway would leave it publishing into later tests' brokers."""
    yield
    while GatewayProcess.started:
        proc = GatewayProcess.started.pop()
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


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


@pytest.fixture(scope="module")
def nats_cluster_of_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    # One cluster per module: starting one takes seconds, not the milliseconds of a Mosquitto.
    if nats_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server is not installed; scripts/ensure-nats installs it (as root)")
        pytest.skip("nats-server is not installed (apt-get install nats-server, or scripts/ensure-nats as root)")
    cluster = NatsCluster(tmp_path_factory.mktemp("nats"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_cluster(nats_cluster_of_module: NatsCluster) -> NatsCluster:
    """The module's 3-node NATS cluster, every node running and ready.

    Nodes an earlier test killed (and did not restart, say because it failed) are restarted
    first, so tests stay independent in any order.
    """
    nats_cluster_of_module.heal()
    return nats_cluster_of_module


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    # A failing cluster test shows what the nodes logged: leader elections, refused consumers.
    report = yield
    cluster = getattr(item, "funcargs", {}).get("nats_cluster")
    if isinstance(report, pytest.TestReport) and report.failed and isinstance(cluster, NatsCluster):
        report.sections.append(("nats-server logs (tails)", cluster.log_tail()))
    return report
