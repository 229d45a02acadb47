"""How values and attributes are written on the wire."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from gateway.records import Value

MAX_TEXT = 255  # HA drops non-numeric states longer than this
ON, OFF = "ON", "OFF"


def encode_value(value: Value) -> str | None:
    """The plain-text state: decimal numbers, ISO 8601 with offset, ON/OFF; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ON if value else OFF
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = f"{value:.4f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, datetime):
        # A timestamp without an offset would be read as UTC by some consumers and local time by others.
        return value.isoformat(timespec="seconds") if value.tzinfo is not None else None
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)[:MAX_TEXT]
    # An empty retained payload would delete the topic on the broker: treat it as no value.
    return text if text.strip() else None


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def encode_json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def _default(obj: object) -> object:
    if isinstance(obj, datetime):
        return iso(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    raise TypeError(f"cannot encode {type(obj).__name__}")
