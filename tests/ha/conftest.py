"""One Home Assistant, one Mosquitto and one fixture upstream per module; the gateway comes and goes.

Starting HA takes seconds, so the module shares one and tests leave it running. Tests run in random
order, so none relies on another: each asks ``world.full()`` for the gateway with the whole default
config, which (re)starts it only when it is not already running with exactly that config.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import ADAPTERS
from gateway import catalog, discovery
from gateway.config import load
from tests.ha.hass import HomeAssistant, venv_problem
from tests.helpers import FixtureServer, GatewayProcess, Mosquitto, publish, retained_tree, wait_until, write_config
from tests.sources import SourceFixture, network_sources

# The source the fault test breaks: fetched every 2 s and offline after one failure, so the test
# sees the outage without waiting for the default schedule (5 min, 3 failures in a row).
FAILING = "sensor_community"
Edit = Callable[[dict[str, Any]], None]
FIRST_RUN_DONE = re.compile(r"first run: (\d+)/\1 sources tried")


def whole_config(data: dict[str, Any]) -> None:
    """Every source of topics.yaml, the ones disabled by default too."""
    for source in data["sources"].values():
        source["enabled"] = True
    data["sources"][FAILING].update(every="2s", jitter="0s", failure_threshold=1)
    # Its fixture keeps the dates it was recorded with (tests/sources.py moves others to the clock).
    data["sources"]["urban_sensors"]["max_age"] = "3650d"


def entity_id(topic: str, config: dict[str, Any]) -> str:
    """The entity_id HA gives a new entity: HA 2025.4 takes ``<component>.<object_id>`` (it does not
    know ``default_entity_id`` yet, which newer versions use and which must say the same)."""
    component = topic.split("/")[1]
    assert config["default_entity_id"] == f"{component}.{config['object_id']}", topic
    return f"{component}.{config['object_id']}"


def available(config: dict[str, Any], values: dict[str, bytes]) -> bool:
    """Whether HA should show the entity available, given the retained tree: every availability
    topic says online, and an entity with ``expire_after`` has received a value (until its first
    value HA counts it as expired)."""
    online = all(values.get(a["topic"]) == b"online" for a in config.get("availability", []))
    return online and ("expire_after" not in config or config["state_topic"] in values)


class World:
    """The module's broker, upstream and Home Assistant, and the gateway currently running."""

    def __init__(self, workdir: Path, broker: Mosquitto, upstream: FixtureServer, hass: HomeAssistant) -> None:
        self.workdir = workdir
        self.broker = broker
        self.upstream = upstream
        self.hass = hass
        self.fixtures: dict[str, SourceFixture] = {s.key: s for s in network_sources()}
        # One config path for every gateway run: the data dir next to it remembers what was
        # published, which is how a restart with a smaller config clears what it no longer has.
        self.config = workdir / "gateway" / "topics.yaml"
        self.config.parent.mkdir()
        self.gateway: GatewayProcess | None = None
        self.config_text: str | None = None

    def serve_all(self) -> None:
        for source in self.fixtures.values():
            source.serve(self.upstream, self.upstream.url)

    def start_gateway(self, *edits: Edit) -> GatewayProcess:
        """The gateway with the whole config changed by ``edits``; restarted only if that differs."""

        def edit(data: dict[str, Any]) -> None:
            whole_config(data)
            for e in edits:
                e(data)

        text = write_config(self.workdir / "wanted.yaml", self.upstream.url, edit=edit).read_text()
        if self.gateway is not None and self.gateway.proc.poll() is None and text == self.config_text:
            return self.gateway
        self.stop_gateway()
        self.config.write_text(text)
        self.config_text = text
        self.gateway = GatewayProcess(self.config, self.broker.port)
        GatewayProcess.started.remove(self.gateway)  # it outlives a test on purpose; the module stops it
        return self.gateway

    def stop_gateway(self) -> int | None:
        """SIGTERM to the gateway; its exit code (None when none was running)."""
        code = self.gateway.terminate() if self.gateway is not None else None
        self.gateway = None
        self.config_text = None
        return code

    def expected_configs(self) -> dict[str, dict[str, Any]]:
        """The discovery configs of the running config, as the gateway builds them."""
        return discovery.configs(catalog.build(load(self.config), ADAPTERS))

    def published_configs(self, expected: dict[str, dict[str, Any]],
                          timeout: float = 20.0) -> dict[str, dict[str, Any]]:
        """The discovery configs on the broker (what HA reads), once they are exactly ``expected``:
        all there, and those of entities no longer configured cleared."""
        ours = "homeassistant/+/soest/+/config"

        def exact() -> dict[str, dict[str, Any]] | None:
            tree = retained_tree(self.broker.port, set(), filters=(ours,))
            configs = {t: json.loads(p) for t, p in tree.items() if p}
            return configs if configs == expected else None

        try:
            return wait_until(exact, timeout=timeout, interval=0.3)
        except AssertionError:
            tree = retained_tree(self.broker.port, set(), filters=(ours,))
            got = {t for t, p in tree.items() if p}
            raise AssertionError(f"discovery on the broker: missing {sorted(set(expected) - got)}, "
                                 f"extra {sorted(got - set(expected))}\n{self.gateway and self.gateway.log[-3000:]}"
                                 ) from None

    def values(self) -> dict[str, bytes]:
        """The gateway's retained state tree (``soest/#``), as a subscriber sees it now."""
        return {t: p for t, p in retained_tree(self.broker.port, set(), filters=("soest/#",)).items() if p}

    def settled(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        """Wait until the broker holds exactly the running config's discovery configs and HA has
        each as an entity and nothing else of ours, and every enabled entity is available exactly
        when the broker says it should be; returns the configs."""
        configs = self.published_configs(self.expected_configs())
        wanted = {c["unique_id"] for c in configs.values()}
        if self.gateway is not None:
            # Until every source has had its first run, the broker still holds the statuses of
            # an earlier run: HA matching those would prove nothing.
            gateway = self.gateway
            wait_until(lambda: FIRST_RUN_DONE.search(gateway.log), timeout=timeout, interval=0.1)
            wait_until(lambda: self.values().get("soest/gateway/status") == b"online", timeout=timeout)
        values = self.values()
        enabled = {entity_id(t, c): available(c, values) for t, c in configs.items()
                   if c.get("enabled_by_default", True)}

        def missing() -> tuple[set[str], set[str], list[str]]:
            entities, _ = self.hass.registries()
            ours = {e["unique_id"] for e in entities if e["platform"] == "mqtt"}
            states = self.hass.states()
            wrong = sorted(e for e, want in enabled.items()
                           if e not in states or (states[e]["state"] != "unavailable") != want)
            return wanted - ours, ours - wanted, wrong

        try:
            wait_until(lambda: not any(missing()), timeout=timeout, interval=0.3)
        except AssertionError:
            absent, extra, wrong = missing()
            states = self.hass.states()
            raise AssertionError(f"HA did not settle: missing {sorted(absent)}, extra {sorted(extra)}, "
                                 f"availability not as on the broker: "
                                 f"{[(e, enabled[e], states.get(e, {}).get('state')) for e in wrong]}\n"
                                 f"{self.hass.log_tail()}") from None
        return configs

    def full(self) -> dict[str, dict[str, Any]]:
        """The gateway with the whole default config, and HA showing all of it."""
        self.serve_all()
        self.start_gateway()
        return self.settled()

    def mqtt_round_trip(self, timeout: float = 30.0) -> None:
        """Wait until HA's discovery subscription is live: a probe config (without unique_id, so it
        never enters the registries) becomes an entity, shows a state, and goes again."""
        probe = f"probe_{secrets.token_hex(4)}"
        topic = f"homeassistant/sensor/{probe}/config"
        state_topic = f"soest-probe/{probe}"
        publish(self.broker.port, state_topic, "42", retain=True)
        publish(self.broker.port, topic, json.dumps({"name": "Probe", "object_id": probe,
                                                     "state_topic": state_topic}), retain=True)
        entity = f"sensor.{probe}"
        wait_until(lambda: self.hass.states().get(entity, {}).get("state") == "42", timeout=timeout, interval=0.2)
        publish(self.broker.port, topic, "", retain=True)
        publish(self.broker.port, state_topic, "", retain=True)
        wait_until(lambda: entity not in self.hass.states(), timeout=timeout, interval=0.2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    problem = venv_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    workdir = tmp_path_factory.mktemp("ha")
    (workdir / "broker").mkdir()
    broker = Mosquitto(workdir / "broker").start()
    upstream = FixtureServer()
    hass = HomeAssistant(workdir / "hass", broker.port)
    w = World(workdir, broker, upstream, hass)
    try:
        started = time.monotonic()
        hass.start()
        w.mqtt_round_trip()
        print(f"\nHome Assistant up in {hass.start_seconds[0]:.1f} s, MQTT round trip after "
              f"{time.monotonic() - started:.1f} s")
        yield w
    finally:
        w.stop_gateway()
        hass.stop()
        upstream.close()
        broker.stop()
