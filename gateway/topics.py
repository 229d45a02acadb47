"""Topic layout of the gateway and the checks every topic segment must pass."""

from __future__ import annotations

import re

# Config keys become topic levels and HA object ids, so they must satisfy both:
# HA's discovery matcher allows [a-zA-Z0-9_-]; lower case keeps entity ids predictable.
KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ROOT_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FORBIDDEN_TOPIC_CHARS = ("+", "#", "\x00")

GATEWAY = "gateway"
STATUS = "status"
ATTRIBUTES = "attributes"
# Per-source diagnostic topics live next to the entities, so these keys are taken.
LAST_FETCH = "last_fetch"
FETCH_ERRORS = "fetch_errors"
RESERVED_ENTITY_KEYS = frozenset({STATUS, ATTRIBUTES, LAST_FETCH, FETCH_ERRORS})
RESERVED_SOURCE_KEYS = frozenset({GATEWAY})

ONLINE = "online"
OFFLINE = "offline"


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is safe to publish to, else raise ValueError."""
    if not topic or topic.startswith("$"):
        raise ValueError(f"topic {topic!r} is empty or starts with '$'")
    if any(ch in topic for ch in FORBIDDEN_TOPIC_CHARS):
        raise ValueError(f"topic {topic!r} contains '+', '#' or NUL")
    if any(level == "" for level in topic.split("/")):
        raise ValueError(f"topic {topic!r} has an empty level")
    if len(topic.encode()) > 65535:
        raise ValueError("topic is longer than 65535 bytes")
    return topic


def gateway_topic(base: str, leaf: str) -> str:
    return check_topic(f"{base}/{GATEWAY}/{leaf}")


def source_topic(base: str, source: str, leaf: str) -> str:
    return check_topic(f"{base}/{source}/{leaf}")


def state_topic(base: str, source: str, entity: str) -> str:
    return check_topic(f"{base}/{source}/{entity}")


def attributes_topic_of(state: str) -> str:
    return f"{state}/{ATTRIBUTES}"


def discovery_topic(prefix: str, component: str, node_id: str, object_id: str) -> str:
    return check_topic(f"{prefix}/{component}/{node_id}/{object_id}/config")


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT subscription ``topic_filter`` (``+`` one level, ``#`` the rest).

    As the broker decides (MQTT 5, 4.7): ``a/#`` matches ``a`` too, and wildcards at the first
    level do not match topics that start with ``$``.
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    levels = topic.split("/")
    wanted = topic_filter.split("/")
    for i, part in enumerate(wanted):
        if part == "#":
            return i == len(wanted) - 1
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(levels) == len(wanted)
