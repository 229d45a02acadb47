"""What an adapter is: a description plus two pure functions, ``request`` and ``parse``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.config import check_timezone
from gateway.errors import ParseError
from gateway.records import Reading, Request


class AdapterOptions(BaseModel):
    """Options every adapter gets; the core fills the city's values unless topics.yaml overrides them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timezone: str = "Europe/Berlin"
    elevation: float = 0.0

    _zone = field_validator("timezone")(classmethod(lambda cls, value: check_timezone(value)))


@dataclass(frozen=True)
class Lookup:
    """A request made once (and again after repeated failures) whose answer fills in options.

    For ids an API wants that users should not have to know, e.g. UBA's numeric station id for
    the station code DENW068. ``parse`` returns the option updates, or raises ParseError.
    """

    needed: Callable[[Any], bool]
    request: Callable[[Any, str], Request]
    parse: Callable[[bytes, Any], dict[str, Any]]


@dataclass(frozen=True)
class Adapter:
    """A data source kind. ``request`` returns None for sources computed without a network.

    Attributes:
        fields: every field ``parse`` can emit; topics.yaml entities must name one of them.
        dynamic_fields: for adapters whose fields come from their options (e.g. SensorThings
            datastream aliases); overrides ``fields`` when set.
        lookup: an optional one-off request that completes the options before the first fetch.
        reevaluate: parse the last body again on every tick, for values that change with time
            alone (a warning that expires, "pickup tomorrow" after midnight).
    """

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
    dynamic_fields: Callable[[Any], frozenset[str]] | None = None
    lookup: Lookup | None = None
    reevaluate: bool = False

    def fields_for(self, options: AdapterOptions) -> frozenset[str]:
        return self.dynamic_fields(options) if self.dynamic_fields is not None else self.fields


def load_json(body: bytes) -> Any:
    """Decode JSON or raise ParseError with a short reason (HTML pages, truncation, ...)."""
    head = body.lstrip()[:1]
    if head == b"<":
        raise ParseError("got HTML instead of JSON", kind="not_json")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON: {str(exc)[:120]}", kind="bad_json") from None


def load_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object, or ParseError."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise ParseError(f"expected a JSON object, got {type(data).__name__}", kind="bad_schema")
    return data


ERROR_KEYS = frozenset({"error", "errors", "message", "detail", "statusCode"})


def load_json_array(body: bytes, what: str = "items") -> list[Any]:
    """A JSON array, or ParseError; an object that looks like an error document is ``upstream_error``."""
    data = load_json(body)
    if isinstance(data, list):
        return data
    kind = "upstream_error" if isinstance(data, dict) and ERROR_KEYS & data.keys() else "bad_schema"
    raise ParseError(f"expected a JSON array of {what}, got {type(data).__name__}", kind=kind)


def number(value: object) -> float | None:
    """A finite float from a JSON number or a numeric string ("11.40"); None for anything else."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return finite_number(value)


def local_datetime(value: object, zone: tzinfo) -> datetime | None:
    """ISO 8601 text (DWD also writes "2026-04-11 11:00 Uhr"); without an offset it is ``zone``'s time."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.strip().removesuffix("Uhr").strip())
        stamp = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=zone)
        stamp.astimezone(UTC)  # rejects year-1/9999 times the core could not compare
    except (ValueError, OverflowError):
        return None
    return stamp


MAX_TEXT = 500


def clip(value: object, limit: int = MAX_TEXT) -> str | None:
    """Upstream text for attributes: a string, cut to ``limit`` characters, or None."""
    if value is None:
        return None
    text = str(value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def finite_number(value: object) -> float | None:
    """A float from a JSON number, or None for null, NaN, infinities, booleans and other types."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return number
