"""Bodies with the right shape and the wrong types: always readings or a classified ParseError.

Values of every JSON fixture (strings, numbers, objects, arrays) are replaced, one at a time, by an
object, an array, a number too large for a float, null and a few more; the wrapped parse must not raise anything else.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import ADAPTERS
from gateway import catalog
from gateway.adapter_api import Adapter, AdapterOptions
from gateway.config import load
from gateway.errors import ParseError
from gateway.pipeline import parse, parse_lookup
from tests.helpers import FIXTURES, ROOT

MAX_MUTATIONS = 40  # values mutated per fixture, spread over the document
HUGE = "__HUGE__"
REPLACEMENTS: tuple[Any, ...] = ({}, [], HUGE, None, "x", ["x"], {"x": 1}, True, -1)
NOW = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)


def default_options() -> dict[str, AdapterOptions]:
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    found: dict[str, AdapterOptions] = {}
    for spec in cat.sources.values():
        found.setdefault(spec.adapter.name, spec.options)
    return found


OPTIONS = default_options()


def options_for(adapter: Adapter) -> AdapterOptions:
    return OPTIONS.get(adapter.name) or adapter.options(latitude=51.571, longitude=8.106)


def value_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every value's path, containers included: a list where an object was expected matters too."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from value_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:3]):
            yield from value_paths(value, (*path, index))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> bytes:
    copy = json.loads(json.dumps(doc))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return json.dumps(copy).replace(f'"{HUGE}"', "1e400").encode()


def mutations(doc: Any) -> Iterator[bytes]:
    paths = [p for p in value_paths(doc) if p]
    step = max(1, len(paths) // MAX_MUTATIONS)
    for path in paths[::step][:MAX_MUTATIONS]:
        for value in REPLACEMENTS:
            yield replaced(doc, path, value)


CASES = [(name, path) for name in sorted(ADAPTERS) for path in sorted((FIXTURES / name).glob("*.json"))]


@pytest.mark.parametrize(("name", "fixture"), CASES, ids=[f"{n}/{p.name}" for n, p in CASES])
def test_mutated_fixture_gives_readings_or_parse_error(name: str, fixture: Path):
    adapter = ADAPTERS[name]
    opts = options_for(adapter)
    doc = json.loads(fixture.read_text())
    for body in mutations(doc):
        # Anything but a list of readings or a ParseError propagates and fails the test.
        with contextlib.suppress(ParseError):
            assert isinstance(parse(adapter, body, opts, NOW), list)
        if adapter.lookup is not None:
            with contextlib.suppress(ParseError):
                parse_lookup(adapter.lookup, body, opts)


def test_unexpected_type_is_bad_schema_with_a_short_detail():
    doc = json.loads((FIXTURES / "brightsky" / "normal.json").read_text())
    doc["weather"]["source_id"] = {"id": "x" * 500}
    with pytest.raises(ParseError) as info:
        parse(ADAPTERS["brightsky"], json.dumps(doc).encode(), options_for(ADAPTERS["brightsky"]), NOW)
    assert info.value.kind == "bad_schema"
    assert str(info.value).startswith("TypeError: ")
    assert len(str(info.value)) <= 160
