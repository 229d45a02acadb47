"""Source adapters, one module per data source, registered by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapters import brightsky, sun
from adapters.base import Adapter

ADAPTERS: Mapping[str, Adapter] = MappingProxyType({a.name: a for a in (brightsky.ADAPTER, sun.ADAPTER)})

__all__ = ["ADAPTERS", "Adapter"]
