"""What an adapter is: a description plus two pure functions, ``request`` and ``parse``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import ParseError
from gateway.records import Reading, Request


class AdapterOptions(BaseModel):
    """Options every adapter gets; the core fills the city's values unless topics.yaml overrides them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timezone: str = "Europe/Berlin"
    elevation: float = 0.0


@dataclass(frozen=True)
class Adapter:
    """A data source kind. ``request`` returns None for sources computed without a network."""

    name: str
    title: str
    provider: str
    dataset: str
    license: str
    attribution: str
    info_url: str
    fields: frozenset[str]
    options: type[AdapterOptions]
    request: Callable[[Any, str], Request | None]
    parse: Callable[[bytes, Any, datetime], Sequence[Reading]]


def load_json_object(body: bytes) -> dict[str, Any]:
    """Decode a JSON object or raise ParseError with a short reason (HTML pages, truncation, ...)."""
    head = body.lstrip()[:1]
    if head == b"<":
        raise ParseError("got HTML instead of JSON", kind="not_json")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {str(exc)[:120]}", kind="bad_json") from None
    if not isinstance(data, dict):
        raise ParseError(f"expected a JSON object, got {type(data).__name__}", kind="bad_schema")
    return data


def finite_number(value: object) -> float | None:
    """A float from a JSON number, or None for null, NaN, infinities, booleans and other types."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return number
