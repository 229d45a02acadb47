"""The docs' code must work: the "add a data source" example is a real adapter, run as written."""

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


def test_example_adapter_works():
    # tests/adapters/test_size.py checks that the block is adapters/dwd_uv.py verbatim.
    module = types.ModuleType("uv_example")
    exec(compile(doc_blocks()[0], "docs/adapters.md", "exec"), module.__dict__)
    adapter = module.ADAPTER
    opts = adapter.options(latitude=51.571, longitude=8.106)
    request = adapter.request(opts, "https://opendata.dwd.de")
    assert request.url == "https://opendata.dwd.de/climate_environment/health/alerts/uvi.json"
    body = (FIXTURES / "dwd_uv" / "normal.json").read_bytes()
    readings = adapter.parse(body, opts, datetime(2026, 6, 21, 12, 0, tzinfo=UTC))
    assert all(isinstance(r, Reading) for r in readings)
    assert {r.field: r.value for r in readings} == {"uv_today": 7, "uv_tomorrow": 6, "risk_today": "high"}


def test_city_platform_examples_are_valid_sources():
    import yaml

    from adapters import ADAPTERS
    from gateway import catalog
    from gateway.config import loads

    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "docs" / "city-platform.md").read_text(), re.S)
    for block in blocks:
        data["sources"].update(yaml.safe_load(block))
    cat = catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml"), ADAPTERS)
    assert {e.key for e in cat.sources["city_platform"].entities} == {"pm10", "pm25", "nitrogen_dioxide",
                                                                       "sulphur_dioxide"}
    assert {e.key for e in cat.sources["district_statistics"].entities} == {"population", "households"}
