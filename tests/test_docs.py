"""The docs' code must work: the "add a data source" example is run as written."""

from __future__ import annotations

import re
import types
from datetime import UTC, datetime

from gateway.records import Reading
from tests.helpers import FIXTURES, ROOT


def doc_blocks() -> list[str]:
    text = (ROOT / "docs" / "adapters.md").read_text()
    example = text.split("## A complete example", 1)[1]
    return re.findall(r"```python\n(.*?)```", example, re.S)


def test_example_adapter_is_short_and_works():
    adapter_code, test_code = doc_blocks()[:2]
    assert len(adapter_code.strip().splitlines()) < 60
    module = types.ModuleType("uv_example")
    exec(compile(adapter_code, "docs/adapters.md", "exec"), module.__dict__)
    adapter = module.ADAPTER
    request = adapter.request(adapter.options(latitude=51.571, longitude=8.106), "https://opendata.dwd.de")
    assert request.url == "https://opendata.dwd.de/climate_environment/health/alerts/uvi.json"
    body = (FIXTURES / "dwd_uv" / "normal.json").read_bytes()
    readings = adapter.parse(body, adapter.options(latitude=51.571, longitude=8.106), datetime.now(UTC))
    assert all(isinstance(r, Reading) for r in readings)
    assert {r.field for r in readings} == {"today", "tomorrow"}
    # The doc's test runs too, in the module's namespace.
    namespace = {**module.__dict__, "NOW": datetime.now(UTC)}
    exec(compile(test_code, "docs/adapters.md", "exec"), namespace)
    namespace["test_parse"]()
