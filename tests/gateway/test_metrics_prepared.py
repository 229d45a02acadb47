"""Metric label sets exist from the start, so memory does not grow with each new kind of error."""

from __future__ import annotations

from prometheus_client import generate_latest

from adapters import ADAPTERS
from gateway import catalog
from gateway.config import load
from gateway.metrics import FETCH_ERROR_KINDS, Metrics
from tests.helpers import ROOT


def test_label_sets_are_created_up_front():
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    metrics = Metrics()
    metrics.prepare(cat.sources.values())
    text = generate_latest(metrics.registry).decode()
    for source in cat.sources:
        for kind in FETCH_ERROR_KINDS:
            assert f'gateway_fetch_errors_total{{kind="{kind}",source="{source}"}} 0.0' in text
        assert f'gateway_fetches_total{{outcome="error",source="{source}"}} 0.0' in text
    assert 'gateway_rejected_readings_total{entity="temperature",reason="future",source="brightsky"} 0.0' in text
    assert 'gateway_rejected_readings_total{entity="temperature",reason="above_range",source="brightsky"} 0.0' in text
    # Gauges stay absent until known: an absent series still means "not known yet".
    assert "gateway_source_up{" not in text


def test_every_fetch_error_kind_is_listed():
    """The kinds gateway.fetch and the adapters raise, found in their source text."""
    import re

    text = "\n".join(p.read_text() for p in [*(ROOT / "adapters").glob("*.py"), ROOT / "gateway" / "fetch.py"])
    raised = set(re.findall(r'kind="([a-z0-9_]+)"', text)) | set(re.findall(r'FetchError\(url, "([a-z0-9_]+)"', text))
    assert raised <= set(FETCH_ERROR_KINDS)
