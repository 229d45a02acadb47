"""The files under examples/ parse, and use only entities, topics and metrics the gateway really produces.

Everything is computed in-process from the default topics.yaml and gateway/metrics.py: no network, no broker.
Checks of the waste-calendar examples skip (with the reason) while the `waste_calendar` source is not part of
the default configuration, and run by themselves once it is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters import ADAPTERS
from gateway import catalog, contract, discovery
from gateway.config import load
from gateway.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HA = EXAMPLES / "homeassistant"
BLUEPRINTS = HA / "blueprints" / "automation" / "soest"
OPENHAB = EXAMPLES / "openhab"
DASHBOARD = EXAMPLES / "grafana" / "soest-gateway-dashboard.json"
WASTE = "waste_calendar"

ENTITY_ID = re.compile(r"\b[a-z_]+\.soest_[a-z0-9_]+\b")
TOPIC = re.compile(r"(?<![\w./-])soest/[A-Za-z0-9_/-]*[A-Za-z0-9_]")
METRIC = re.compile(r"\bgateway_[a-z_]+\b")
LEGACY_KEYS = {"platform", "service", "service_template"}  # pre-2024.10 trigger/action syntax


# ----------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Tagged:
    """A Home Assistant YAML tag such as `!input covers` or `!secret password`."""

    tag: str
    value: Any


class ExampleLoader(yaml.SafeLoader):
    """SafeLoader that accepts every `!tag` instead of failing on HA's custom ones."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if isinstance(node, yaml.ScalarNode):
        return Tagged("!" + suffix, loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return Tagged("!" + suffix, tuple(loader.construct_sequence(node, deep=True)))
    return Tagged("!" + suffix, loader.construct_mapping(node, deep=True))


ExampleLoader.add_multi_constructor("!", _construct_tagged)


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=ExampleLoader)  # a SafeLoader subclass


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def walk(node: Any) -> Any:
    """Every node of a parsed YAML/JSON document, depth first."""
    yield node
    if isinstance(node, Tagged):
        yield from walk(node.value)
    elif isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from walk(item)


# ------------------------------------------------------------------- what the default config produces


@dataclass(frozen=True)
class Produced:
    base: str
    node_id: str
    configs: dict[str, dict[str, Any]]  # state_topic -> discovery payload (+ "_component")
    entity_ids: frozenset[str]
    topics: frozenset[str]

    @property
    def waste_registered(self) -> bool:
        return any(is_waste_entity(e, self) for e in self.entity_ids)


@cache
def produced() -> Produced:
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    configs = discovery.configs(cat)
    by_state: dict[str, dict[str, Any]] = {}
    for config_topic, payload in configs.items():
        if "state_topic" in payload:  # buttons have only a command topic
            by_state[payload["state_topic"]] = {**payload, "_component": config_topic.split("/")[1]}
    return Produced(
        base=cat.base,
        node_id=cat.node_id,
        configs=by_state,
        entity_ids=frozenset(p["default_entity_id"] for p in configs.values()),
        topics=frozenset(row.topic for row in contract.expand(cat, list(configs))),
    )


def is_waste_entity(entity_id: str, prod: Produced) -> bool:
    return entity_id.split(".", 1)[1].startswith(f"{prod.node_id}_{WASTE}_")


def is_waste_topic(topic: str, prod: Produced) -> bool:
    return topic.startswith(f"{prod.base}/{WASTE}/")


def skip_unless_waste_registered(prod: Produced) -> None:
    if not prod.waste_registered:
        pytest.skip(f"the `{WASTE}` source is not in the default topics.yaml yet (no {WASTE} entity in the "
                    f"discovery configs); its examples are checked once it is")


def ha_files() -> list[Path]:
    return sorted(p for p in HA.rglob("*") if p.suffix in {".yaml", ".yml"})


def ha_entity_ids() -> dict[str, set[str]]:
    """Entity id -> the example files that reference it."""
    found: dict[str, set[str]] = {}
    for path in ha_files():
        for entity_id in ENTITY_ID.findall(path.read_text(encoding="utf-8")):
            found.setdefault(entity_id, set()).add(rel(path))
    return found


def openhab_topics() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(OPENHAB.glob("*")):
        for topic in TOPIC.findall(path.read_text(encoding="utf-8")):
            found.setdefault(topic, set()).add(rel(path))
    return found


# --------------------------------------------------------------------------------------- parsing


YAML_FILES = sorted(p for p in EXAMPLES.rglob("*") if p.suffix in {".yaml", ".yml"})
JSON_FILES = sorted(EXAMPLES.rglob("*.json"))


def test_examples_exist():
    expected = [HA / "automations.yaml", BLUEPRINTS / "facade_sun_protection.yaml",
                BLUEPRINTS / "storm_retract.yaml", OPENHAB / "soest.things", OPENHAB / "soest.items",
                OPENHAB / "soest.rules", DASHBOARD, EXAMPLES / "README.md"]
    missing = [rel(p) for p in expected if not p.is_file()]
    assert not missing, missing


@pytest.mark.parametrize("path", YAML_FILES, ids=rel)
def test_yaml_parses(path: Path):
    assert load_yaml(path) is not None, f"{rel(path)} is empty"


@pytest.mark.parametrize("path", JSON_FILES, ids=rel)
def test_json_parses(path: Path):
    json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------- Home Assistant


def test_ha_examples_reference_soest_entities():
    assert len(ha_entity_ids()) >= 10, "the entity-id regex found almost nothing; did the examples move?"


def test_ha_entity_ids_exist():
    prod = produced()
    unknown = {e: sorted(files) for e, files in ha_entity_ids().items()
               if not is_waste_entity(e, prod) and e not in prod.entity_ids}
    assert not unknown, f"entity ids the default topics.yaml does not produce: {unknown}"


def test_ha_waste_entity_ids_exist():
    prod = produced()
    waste = {e: sorted(files) for e, files in ha_entity_ids().items() if is_waste_entity(e, prod)}
    assert waste, "the bin reminder examples reference no waste_calendar entity"
    skip_unless_waste_registered(prod)
    unknown = {e: files for e, files in waste.items() if e not in prod.entity_ids}
    assert not unknown, f"waste entity ids the default topics.yaml does not produce: {unknown}"


def test_automations_use_current_syntax():
    automations = load_yaml(HA / "automations.yaml")
    assert isinstance(automations, list)
    assert len(automations) >= 5
    ids = [a["id"] for a in automations]
    assert len(ids) == len(set(ids)), "automation ids must be unique"
    for automation in automations:
        _check_automation(automation, automation["id"])


def _check_automation(automation: dict[str, Any], where: str) -> None:
    assert {"triggers", "actions"} <= automation.keys(), where
    assert not {"trigger", "condition", "action"} & automation.keys(), f"{where}: use triggers/conditions/actions"
    triggers = automation["triggers"]
    assert isinstance(triggers, list), where
    assert triggers, where
    for trig in triggers:
        assert "trigger" in trig, f"{where}: each trigger needs `trigger: <platform>`"
    for node in walk(automation):
        if isinstance(node, dict):
            legacy = LEGACY_KEYS & node.keys()
            assert not legacy, f"{where}: legacy key(s) {legacy}; use `trigger:` / `action:`"


@pytest.mark.parametrize("path", sorted(BLUEPRINTS.glob("*.yaml")), ids=rel)
def test_blueprint(path: Path):
    doc = load_yaml(path)
    meta = doc["blueprint"]
    assert meta["name"]
    assert meta["domain"] == "automation"
    inputs: dict[str, Any] = meta["input"]
    assert inputs, "a blueprint without inputs"
    _check_automation({k: v for k, v in doc.items() if k != "blueprint"}, rel(path))
    used = {n.value for n in walk({k: v for k, v in doc.items() if k != "blueprint"})
            if isinstance(n, Tagged) and n.tag == "!input"}
    assert used <= inputs.keys(), f"!input of undeclared inputs: {used - inputs.keys()}"
    assert inputs.keys() <= used, f"declared but unused inputs: {inputs.keys() - used}"
    for name, spec in inputs.items():
        entity = (spec.get("selector") or {}).get("entity")
        if entity is None or "default" not in spec:
            continue
        domains = {f["domain"] for f in entity.get("filter", []) if "domain" in f}
        defaults = spec["default"] if isinstance(spec["default"], list) else [spec["default"]]
        for default in defaults:
            assert not domains or default.split(".", 1)[0] in domains, f"{name}: default {default} not in {domains}"


def test_at_least_two_blueprints():
    names = {p.stem for p in BLUEPRINTS.glob("*.yaml")}
    assert {"facade_sun_protection", "storm_retract"} <= names


# --------------------------------------------------------------------------------------- openHAB


@dataclass(frozen=True)
class Channel:
    kind: str
    id: str
    params: dict[str, str]


CHANNEL = re.compile(r"^\s*Type\s+(\w+)\s*:\s*(\w+)\s*\"[^\"]*\"\s*\[([^\]]*)\]", re.M)
PARAM = re.compile(r"(\w+)\s*=\s*\"([^\"]*)\"")
ITEM = re.compile(r"^(Group(?::\w+(?::\w+\([^)]*\))?)?|Number(?::\w+)?|Switch|Contact|String|DateTime|"
                  r"Rollershutter|Dimmer|Color|Location|Player|Image|Call)\s+(\w+)", re.M)
LINK = re.compile(r"channel=\"mqtt:topic:(\w+):(\w+):(\w+)\"")
ITEM_FOR_CHANNEL = {"number": "Number", "switch": "Switch", "contact": "Contact", "string": "String",
                    "datetime": "DateTime"}


def things_text() -> str:
    return (OPENHAB / "soest.things").read_text(encoding="utf-8")


def channels() -> dict[str, Channel]:
    found = {m.group(2): Channel(m.group(1), m.group(2), dict(PARAM.findall(m.group(3))))
             for m in CHANNEL.finditer(things_text())}
    assert found, "no channels found in soest.things"
    return found


def expected_kinds(topic: str, prod: Produced) -> tuple[set[str], dict[str, str]]:
    """Channel types that fit a topic's payload, and the on/off parameters a switch/contact needs."""
    config = prod.configs.get(topic)
    if config is None:
        assert topic.endswith("/status"), f"{topic} is neither a state nor a status topic"
        assert topic in prod.topics, f"{topic} is not produced"
        return {"switch", "contact", "string"}, {"on": "online", "off": "offline"}  # availability: online/offline
    if config["_component"] == "binary_sensor":
        return {"switch", "contact"}, {"on": config.get("payload_on", "ON"), "off": config.get("payload_off", "OFF")}
    if config.get("device_class") == "timestamp":
        return {"datetime"}, {}
    if config.get("device_class") == "enum" or not ({"unit_of_measurement", "state_class"} & config.keys()):
        return {"string"}, {}
    return {"number"}, {}


def test_openhab_topics_are_produced():
    prod = produced()
    topics = openhab_topics()
    assert len(topics) >= 10
    unknown = {t: sorted(f) for t, f in topics.items() if not is_waste_topic(t, prod) and t not in prod.topics}
    assert not unknown, f"topics the default topics.yaml does not produce: {unknown}"


def test_openhab_waste_topics_are_produced():
    prod = produced()
    waste = {t: sorted(f) for t, f in openhab_topics().items() if is_waste_topic(t, prod)}
    assert waste, "the openHAB examples subscribe to no waste_calendar topic"
    skip_unless_waste_registered(prod)
    unknown = {t: f for t, f in waste.items() if t not in prod.topics}
    assert not unknown, f"waste topics the default topics.yaml does not produce: {unknown}"


def _check_channel_types(waste: bool) -> None:
    prod = produced()
    checked = 0
    for channel in channels().values():
        topic = channel.params.get("stateTopic")
        assert topic, f"channel {channel.id} has no stateTopic"
        if is_waste_topic(topic, prod) != waste:
            continue
        kinds, on_off = expected_kinds(topic, prod)
        assert channel.kind in kinds, f"{channel.id} ({topic}) is `{channel.kind}`, expected one of {kinds}"
        if channel.kind in {"switch", "contact"}:
            got = {k: channel.params.get(k) for k in on_off}
            assert got == on_off, f"{channel.id} ({topic}): on/off must be {on_off}, got {got}"
        unit = prod.configs.get(topic, {}).get("unit_of_measurement")
        if channel.kind == "number" and "unit" in channel.params:
            got_unit = channel.params["unit"]
            assert got_unit == unit, f"{channel.id} ({topic}): unit {got_unit!r} != {unit!r}"
        checked += 1
    assert checked, "no channel checked"


def test_openhab_channel_types_match_payloads():
    _check_channel_types(waste=False)


def test_openhab_waste_channel_types_match_payloads():
    skip_unless_waste_registered(produced())
    _check_channel_types(waste=True)


def test_openhab_items_link_existing_channels():
    bridge = re.search(r"Bridge\s+mqtt:broker:(\w+)", things_text())
    thing = re.search(r"Thing\s+topic\s+(\w+)", things_text())
    assert bridge, "no `Bridge mqtt:broker:<id>` in soest.things"
    assert thing, "no `Thing topic <id>` in soest.things"
    chans = channels()
    items = (OPENHAB / "soest.items").read_text(encoding="utf-8")
    links = 0
    for line in items.splitlines():
        link = LINK.search(line)
        if not link:
            continue
        links += 1
        assert link.group(1, 2) == (bridge.group(1), thing.group(1)), line
        channel = chans.get(link.group(3))
        assert channel is not None, f"unknown channel {link.group(3)}"
        item = ITEM.match(line.strip())
        assert item, line
        assert item.group(1).split(":")[0] == ITEM_FOR_CHANNEL[channel.kind], (
            f"{item.group(2)} is {item.group(1)} but channel {channel.id} is {channel.kind}")
    assert links >= len(chans), "some channels are not linked to an item"


def test_openhab_rules_use_defined_items():
    items = {m.group(2) for m in ITEM.finditer((OPENHAB / "soest.items").read_text(encoding="utf-8"))}
    rules = (OPENHAB / "soest.rules").read_text(encoding="utf-8")
    code = re.sub(r"//[^\n]*", "", rules)
    used = set(re.findall(r"\b([A-Za-z]\w*)\.(?:state|sendCommand|postUpdate|members)\b", code))
    used |= set(re.findall(r"\b(?:Item|Member of)\s+(\w+)", code))
    used |= set(re.findall(r"triggeringItemName\s*==\s*\"(\w+)\"", code))
    used -= set(re.findall(r"\[\s*(\w+)\s*\|", code))  # lambda parameters such as [ i | i.state == ON ]
    assert used, "no item references found in soest.rules"
    assert used <= items, f"items used in soest.rules but not defined in soest.items: {used - items}"
    assert len(re.findall(r"^rule\s+\"", code, re.M)) >= 5
    assert len(re.findall(r"^rule\s+\"", code, re.M)) == len(re.findall(r"^end\s*$", code, re.M))


# ------------------------------------------------------------------------------ Grafana / Prometheus


def defined_metrics() -> set[str]:
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "info": ("_info",), "gauge": ("",), "summary": ("", "_count", "_sum", "_created")}
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_dashboard_structure():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 8
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), f"{panel['title']}: {target['expr']}"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def _exprs(node: Any) -> list[str]:
    return [n["expr"] for n in walk(node) if isinstance(n, dict) and isinstance(n.get("expr"), str)]


def test_dashboard_metrics_exist():
    exprs = _exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert len(used) >= 10
    assert used <= defined_metrics(), f"metrics gateway/metrics.py does not define: {used - defined_metrics()}"


def test_prometheus_examples_use_existing_metrics():
    files = [p for p in (EXAMPLES / "prometheus.yml", EXAMPLES / "prometheus-alerts.yml", EXAMPLES / "README.md")
             if p.is_file()]
    used = {m: rel(p) for p in files for m in METRIC.findall(p.read_text(encoding="utf-8"))}
    unknown = {m: f for m, f in used.items() if m not in defined_metrics()}
    assert not unknown, f"metrics gateway/metrics.py does not define: {unknown}"
