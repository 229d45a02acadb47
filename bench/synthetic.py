"""A synthetic source of N entities, for benchmarks: the real catalogue, store, discovery and MQTT link."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from adapters import ADAPTERS
from gateway import catalog
from gateway.adapter_api import Adapter, AdapterOptions
from gateway.config import loads
from gateway.records import Reading, Request, Station

ROOT = Path(__file__).resolve().parent.parent


class Options(AdapterOptions):
    count: int = Field(default=1, ge=1)


def _fields(opts: Options) -> frozenset[str]:
    return frozenset(f"e{i}" for i in range(opts.count))


def _request(opts: Options, base_url: str) -> Request | None:
    return None


def _parse(body: bytes, opts: Options, now: datetime) -> list[Reading]:
    return readings(opts.count, 0, now)


STATION = Station(name="bench", id="b1", latitude=51.571, longitude=8.106, distance_m=0.0)


def readings(count: int, round_: int, now: datetime) -> list[Reading]:
    """One reading per entity; each round changes every value, so every state goes out."""
    base = 10.0 + round_ * 0.1
    return [Reading(f"e{i}", base + (i % 1000) * 0.001, now, STATION) for i in range(count)]


ADAPTER = Adapter(
    name="synthetic", title="Synthetic", provider="Benchmark", dataset="synthetic values", license="none",
    attribution="bench", info_url="https://example.invalid/bench", fields=frozenset({"e0"}), options=Options,
    request=_request, parse=_parse, dynamic_fields=_fields)

REGISTRY: Mapping[str, Adapter] = {**ADAPTERS, "synthetic": ADAPTER}


def config_text(count: int, base: str = "bench", slug: str = "bench", every: str = "1h",
                mode: str = "entity", per_device: int | None = None, qos: int = 1) -> str:
    """``count`` entities in one source, or in sources (devices) of ``per_device`` entities each."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "topics.yaml").read_text())
    data["city"]["slug"] = slug
    data["mqtt"]["base_topic"] = base
    data["measurements"] = {"synthetic": {"device_class": "temperature", "unit": "°C", "state_class": "measurement",
                                          "precision": 2, "plausible": [-50, 60]}}
    data["mqtt"]["discovery_mode"] = mode
    data["mqtt"]["qos"] = qos
    size = per_device or count
    data["sources"] = {("synthetic" if size == count else f"synthetic{i}"): {
        "adapter": "synthetic", "base_url": "https://example.invalid", "every": every, "max_age": "2h",
        "options": {"count": min(size, count - i * size)},
        # Listing 100,000 entities by name would measure the YAML parser more than the gateway.
        "entities": {"*": {"measurement": "synthetic"}},
    } for i in range(-(-count // size))}
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def synthetic_catalog(count: int, base: str = "bench", slug: str = "bench", mode: str = "entity",
                      per_device: int | None = None, qos: int = 1) -> catalog.Catalog:
    text = config_text(count, base, slug, mode=mode, per_device=per_device, qos=qos)
    return catalog.build(loads(text, ROOT / "bench.yaml"), REGISTRY)
