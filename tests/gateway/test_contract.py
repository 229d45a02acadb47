"""docs/topics.md and the code must describe the same topic tree."""

from __future__ import annotations

import re

from adapters import ADAPTERS
from gateway import catalog, contract, discovery
from gateway.config import load
from tests.helpers import ROOT


def test_docs_table_matches_contract():
    doc = (ROOT / "docs" / "topics.md").read_text()
    m = re.search(r"<!-- contract:start -->\n(.*?)\n<!-- contract:end -->", doc, re.S)
    assert m, "docs/topics.md lost its contract markers"
    assert m.group(1).strip() == contract.markdown_table().strip(), (
        "docs/topics.md is out of date; paste the output of contract.markdown_table()")


def test_every_configured_topic_is_in_the_contract():
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    rows = contract.expand(cat, list(discovery.configs(cat)))
    for row in rows:
        assert contract.match(row.topic, cat.base, cat.prefix) is not None, row.topic
    assert contract.match("soest/brightsky/temperature/extra/level", "soest", "homeassistant") is None
