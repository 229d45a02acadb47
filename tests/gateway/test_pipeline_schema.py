"""collect against a real fixture server: unexpected types in a body are ParseError bad_schema, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import load
from gateway.errors import ParseError
from gateway.fetch import make_session
from gateway.pipeline import collect
from tests.helpers import FIXTURES, brightsky_config


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
    return edit


# The first two raised TypeError (unhashable dict) inside the adapter before; the others are
# the adapter's own checks and must stay bad_schema.
EDITS = {
    "station-id-object": set_in(("sources", 0, "id"), {"x": 1}),
    "source-id-object": set_in(("weather", "source_id"), {"x": 1}),
    "fallback-id-list": set_in(("weather", "fallback_source_ids"), {"temperature": []}),
    "weather-list": set_in(("weather",), [1, 2]),
    "timestamp-object": set_in(("weather", "timestamp"), {"at": "now"}),
}


@pytest.mark.parametrize("edit", list(EDITS.values()), ids=list(EDITS))
def test_collect_classifies_unexpected_types(tmp_path: Path, upstream, edit):
    spec = catalog.build(load(brightsky_config(tmp_path / "t.yaml", upstream)), ADAPTERS).sources["brightsky"]
    doc = json.loads((FIXTURES / "brightsky" / "normal.json").read_text())
    edit(doc)
    upstream.serve("/current_weather", doc)
    with pytest.raises(ParseError) as info:
        collect(spec, make_session(), None, None, datetime.now(UTC))
    assert info.value.kind == "bad_schema"
    assert len(str(info.value)) <= 160
