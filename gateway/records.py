"""Frozen value types passed between adapters and the core."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

Value = float | int | str | bool | datetime | date | None

EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Station:
    """Where a reading was measured (or computed for)."""

    name: str
    id: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    distance_m: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.id is not None:
            out["id"] = self.id
        if self.latitude is not None and self.longitude is not None:
            out["latitude"] = self.latitude
            out["longitude"] = self.longitude
        if self.distance_m is not None:
            out["distance_m"] = round(self.distance_m)
        return out


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one adapter field, already in the unit the catalogue declares.

    ``value`` is None when upstream sent null or left the field out; the core then keeps the
    entity's last value and notes the gap in its attributes.
    """

    field: str
    value: Value
    observed_at: datetime
    station: Station | None = None
    attributes: Mapping[str, Any] = dataclasses.field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP GET that an adapter wants the core to perform."""

    url: str
    params: Mapping[str, str] = dataclasses.field(default_factory=lambda: EMPTY)
    headers: Mapping[str, str] = dataclasses.field(default_factory=lambda: EMPTY)
    accept: str = "application/json"
