"""Time-zone names from config files, checked before zoneinfo opens them as files."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# ZoneInfo opens the name as a file: a directory ("Europe"), "../x" or a huge name is an OSError
# there, not a miss, so the shape is checked first.
ZONE_RE = re.compile(r"^[A-Za-z0-9_+-]{1,32}(?:/[A-Za-z0-9_+-]{1,32}){0,2}$")


def check_timezone(value: str) -> str:
    """An IANA time zone name, or ValueError saying what would be valid."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:79] + "…"
    problem = ValueError(f"unknown time zone {shown} (e.g. Europe/Berlin)")
    if not isinstance(value, str) or not ZONE_RE.match(value):
        raise problem
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise problem from exc
    return value
