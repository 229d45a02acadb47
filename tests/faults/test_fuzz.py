"""Bad input never crashes: every adapter's parse and topics.yaml, fuzzed with hypothesis."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import loads
from gateway.errors import ConfigError, ParseError
from gateway.records import Reading
from tests.helpers import FIXTURES, ROOT

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DEFAULT = yaml.safe_load((ROOT / "topics.yaml").read_text())


def adapter_options(name: str) -> Any:
    adapter = ADAPTERS[name]
    opts = adapter.options.model_validate({"latitude": 51.571, "longitude": 8.106})
    lookup = FIXTURES / name / "lookup.json"
    if adapter.lookup is not None and lookup.exists():
        opts = opts.model_copy(update=adapter.lookup.parse(lookup.read_bytes(), opts))
    return opts


def configured_options(name: str) -> Any:
    """Options as the default topics.yaml gives them (some adapters need required options)."""
    cat = catalog.build(loads((ROOT / "topics.yaml").read_text(), ROOT / "topics.yaml"), ADAPTERS)
    for spec in cat.sources.values():
        if spec.adapter.name == name:
            return spec.options
    return None


def options_for(name: str) -> Any:
    try:
        return adapter_options(name)
    except Exception:  # an adapter with required options: take them from topics.yaml
        opts = configured_options(name)
        assert opts is not None, name
        return opts


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=40,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_ok_or_parse_error(name: str, body: bytes) -> None:
    adapter = ADAPTERS[name]
    try:
        readings = adapter.parse(body, options_for(name), NOW)
    except ParseError:
        return
    for reading in readings:
        assert reading.observed_at.tzinfo is not None
        json.dumps(dict(reading.attributes), default=str)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@FUZZ
@given(body=st.binary(max_size=300))
def test_parse_survives_arbitrary_bytes(name: str, body: bytes):
    parse_ok_or_parse_error(name, body)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@FUZZ
@given(value=json_values)
def test_parse_survives_arbitrary_json(name: str, value: Any):
    parse_ok_or_parse_error(name, json.dumps(value).encode())


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b"\xff\xfe\x00garbage", b"", b"null", b"BEGIN:VCALENDAR\r\n" * 1000])
def test_parse_survives_deep_nesting_and_oddities(name: str, body: bytes):
    parse_ok_or_parse_error(name, body)


PUSHING = sorted(name for name, adapter in ADAPTERS.items() if adapter.push is not None)
POLLED = Reading("temperature", 21.0, NOW, None, {"datastream": "Lufttemperatur", "datastream_id": "43"})
observations = st.fixed_dictionaries({}, optional={
    "@iot.id": json_values, "phenomenonTime": st.text(max_size=40) | json_values, "result": json_values})


def push_ok_or_parse_error(name: str, payload: bytes) -> None:
    push = ADAPTERS[name].push
    assert push is not None
    try:
        ident, reading = push.parse(payload, POLLED, NOW)
    except ParseError:
        return
    assert ident is None or isinstance(ident, str)
    assert reading.observed_at.tzinfo is not None
    json.dumps(dict(reading.attributes), default=str)


@pytest.mark.parametrize("name", PUSHING)
@FUZZ
@given(value=json_values | observations)
def test_pushed_payloads_survive_arbitrary_json(name: str, value: Any):
    push_ok_or_parse_error(name, json.dumps(value).encode())


@pytest.mark.parametrize("name", PUSHING)
@pytest.mark.parametrize("payload", [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe\x00garbage", b"", b"null"])
def test_pushed_payloads_survive_deep_nesting_and_oddities(name: str, payload: bytes):
    push_ok_or_parse_error(name, payload)


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        out = [path] if path else []
        for key, value in node.items():
            out += _leaves(value, (*path, key))
        return out
    return [path]


LEAVES = _leaves(DEFAULT)


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def expect_clean_outcome(text: str) -> None:
    try:
        catalog.build(loads(text, Path("topics.yaml")), ADAPTERS)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("topics.yaml")
        assert "\n" not in message
        assert "Traceback" not in message


@FUZZ
@given(path=st.sampled_from(LEAVES), value=json_values)
def test_config_with_a_random_field_changed(path: tuple[Any, ...], value: Any):
    data = json.loads(json.dumps(DEFAULT))
    _set(data, path, value)
    expect_clean_outcome(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(text=st.text(max_size=400))
def test_config_from_random_text(text: str):
    expect_clean_outcome(text)


DEFAULT_TEXT = (ROOT / "topics.yaml").read_text()


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(DEFAULT_TEXT)))
# Found by hypothesis: cut after "timezone: Europe", a zone name that is a directory of the zone database.
@example(cut=DEFAULT_TEXT.index("timezone: Europe/") + len("timezone: Europe"))
def test_config_truncated_anywhere(cut: int):
    expect_clean_outcome(DEFAULT_TEXT[:cut])
