"""Source adapters, one module per data source, registered by name."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from adapters import (
    brightsky,
    buergerwolke,
    ckan,
    dwd_alerts,
    dwd_pollen,
    dwd_uv,
    ngsi_ld,
    nina,
    open_meteo,
    pegelonline,
    sensor_community,
    sensorthings,
    sun,
    uba_air,
    waste_calendar,
)
from gateway.adapter_api import Adapter

ADAPTERS: Mapping[str, Adapter] = MappingProxyType({a.name: a for a in (
    brightsky.ADAPTER, sun.ADAPTER, dwd_alerts.ADAPTER, nina.ADAPTER, uba_air.ADAPTER, sensor_community.ADAPTER,
    buergerwolke.ADAPTER, sensorthings.ADAPTER, pegelonline.ADAPTER, open_meteo.ADAPTER, dwd_uv.ADAPTER,
    dwd_pollen.ADAPTER, waste_calendar.ADAPTER, ngsi_ld.ADAPTER, ckan.ADAPTER,
)})

__all__ = ["ADAPTERS", "Adapter"]
