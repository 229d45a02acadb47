"""The whole default topic tree as pure data, for a byte-for-byte comparison across refactors.

Discovery configs of the default topics.yaml plus the state and attributes messages that one run
of every enabled source produces from its ``normal`` fixture at a fixed moment. Nothing here
talks to a broker: it pins what the pipeline computes, and the end-to-end tests pin the transport.

    .venv/bin/python -m tests.golden.tree --write   # after an intended change of the tree
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from adapters import ADAPTERS
from gateway import catalog, discovery
from gateway.config import load
from gateway.runs import evaluate
from gateway.store import Store
from tests.helpers import ROOT
from tests.sources import network_sources

GOLDEN = Path(__file__).with_name("default_tree.json")
T0 = datetime(2026, 6, 21, 12, 0, tzinfo=UTC)
# Daily products whose fixture is of another day than T0.
DAY_OF_FIXTURE = {"dwd_pollen": datetime(2026, 4, 10, 12, 0, tzinfo=UTC)}


def _readings(spec: catalog.SourceSpec, body: bytes, lookup: bytes | None, now: datetime) -> list:
    opts = spec.options
    if lookup is not None and spec.adapter.lookup is not None:
        opts = opts.model_copy(update=spec.adapter.lookup.parse(lookup, opts))
    return list(spec.adapter.parse(body, opts, now))


def tree(moments: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(topic -> payload text, source -> the moment it was run at)."""
    cat = catalog.build(load(ROOT / "topics.yaml"), ADAPTERS)
    out = {topic: payload.decode() for topic, payload in discovery.messages(cat)}
    fixtures = {f.key: f for f in network_sources()}
    used: dict[str, str] = {}
    for key, spec in cat.sources.items():
        fixture = fixtures.get(key)
        body = fixture.normal.read_bytes() if fixture else b""
        lookup = fixture.lookup.read_bytes() if fixture and fixture.lookup else None
        if moments is not None:
            now = datetime.fromisoformat(moments[key])
        else:
            start = DAY_OF_FIXTURE.get(key, T0)
            stamps = [r.observed_at for r in _readings(spec, body, lookup, start)]
            now = max([start, *stamps]).replace(microsecond=0)
        used[key] = now.isoformat()
        readings = _readings(spec, body, lookup, now)
        url = f"{spec.config.base_url}#golden"
        result = evaluate(spec, Store(cat.settings.mqtt.heartbeat), readings, now, url, 0.0)
        for topic, payload in (*result.states, *result.attributes):
            out[topic] = payload.decode()
    return out, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the golden file")
    args = parser.parse_args()
    if args.write:
        messages, moments = tree()
        GOLDEN.write_text(json.dumps({"moments": moments, "messages": messages}, ensure_ascii=False, indent=1,
                                     sort_keys=True) + "\n")
        print(f"wrote {len(messages)} messages to {GOLDEN}")


if __name__ == "__main__":
    main()
