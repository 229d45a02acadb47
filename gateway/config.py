"""Configuration: topics.yaml and broker settings, validated with pydantic.

Errors are reported as one line naming the file, the line, the field path and what would be
valid, e.g. ``topics.yaml:14: sources.brightsky.every: '10x' is not a duration (e.g. 30s, 10m, 1h)``.
"""

from __future__ import annotations

import contextlib
import math
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from gateway import ha
from gateway.errors import ConfigError
from gateway.lease import DEFAULT_LEASE, LEASE_MAX, LEASE_MIN
from gateway.schedule import cron_trigger
from gateway.topics import KEY_RE, RESERVED_ENTITY_KEYS, RESERVED_SOURCE_KEYS, ROOT_SEGMENT_RE
from gateway.zones import check_timezone

DEFAULT_CONFIG = "topics.yaml"

_DURATION_RE = re.compile(r"^\s*(?:([0-9]+(?:\.[0-9]+)?)\s*d)?\s*(?:([0-9]+(?:\.[0-9]+)?)\s*h)?\s*"
                          r"(?:([0-9]+(?:\.[0-9]+)?)\s*m)?\s*(?:([0-9]+(?:\.[0-9]+)?)\s*s)?\s*$")
_UNITS_S = (86400.0, 3600.0, 60.0, 1.0)
_UNIT_NAMES = (("d", 86400), ("h", 3600), ("m", 60))
DURATION_HINT = "e.g. 30s, 10m, 1h; a bare number means seconds"
# Durations beyond this are typos (and 1e300 s overflows datetime arithmetic much later).
MAX_DURATION_S = 3660 * 86400.0
ECHO_LIMIT = 100


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters however big the value."""
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, limit, limit
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = short.maxfrozenset = 6
    text = short.repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def format_seconds(seconds: float) -> str:
    """``600`` -> ``10m``: the largest unit that divides evenly."""
    for name, size in _UNIT_NAMES:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{name}"
    return f"{seconds:g}s"


def parse_duration(value: object, allow_zero: bool = False, minimum: float = 0.0,
                   maximum: float = MAX_DURATION_S) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1h30m"`` or ``"2d"``, within [minimum, maximum]."""
    if isinstance(value, bool):
        raise ValueError(f"{echo(value)} is not a duration ({DURATION_HINT})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)) and any(m.groups()):
        seconds = sum(float(g) * u for g, u in zip(m.groups(), _UNITS_S, strict=True) if g)
    else:
        raise ValueError(f"{echo(value)} is not a duration ({DURATION_HINT})")
    if math.isnan(seconds):
        raise ValueError(f"{echo(value)} is not a duration ({DURATION_HINT})")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{echo(value)} must be longer than zero ({DURATION_HINT})")
    if seconds < minimum and not (seconds == 0 and allow_zero):
        raise ValueError(f"{echo(value)} is too short: at least {format_seconds(minimum)} ({DURATION_HINT})")
    if seconds > maximum:
        raise ValueError(f"{echo(value)} is too long: at most {format_seconds(maximum)} ({DURATION_HINT})")
    return seconds


def duration(minimum: float = 0.0, maximum: float = MAX_DURATION_S, allow_zero: bool = False) -> Any:
    """A float field given as a duration, with the bounds a sane schedule or timeout needs."""
    return Annotated[float, BeforeValidator(
        lambda v: parse_duration(v, allow_zero=allow_zero, minimum=minimum, maximum=maximum))]


DAY = 86400.0
Duration = duration()
DurationOrZero = duration(allow_zero=True)
# Per kind of duration: wide enough for any real use, narrow enough to catch a typo or a unit mix-up.
Every = duration(minimum=1.0, maximum=366 * DAY)
Jitter = duration(maximum=DAY, allow_zero=True)
MaxAge = duration(minimum=1.0)
Timeout = duration(minimum=0.1, maximum=600.0)
Heartbeat = duration(minimum=1.0, maximum=DAY)
BirthDelay = duration(maximum=600.0)
ReconnectMin = duration(maximum=600.0)
ReconnectMax = duration(maximum=3600.0)
HostInterval = duration(maximum=3600.0, allow_zero=True)
LeaseTime = duration(minimum=LEASE_MIN, maximum=LEASE_MAX)
# YAML 1.1 reads a bare `off` as false (and `on` as true): both spellings mean the same here.
Align = Annotated[Literal["auto", "off"], BeforeValidator(
    lambda v: {False: "off", True: "auto"}.get(v, v) if isinstance(v, bool) else v)]
def _check_key(value: str) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise ValueError(f"{echo(value)} is not a valid key (lower-case letters, digits, '_' or '-')")
    return value


def _check_root(value: str) -> str:
    if not isinstance(value, str) or not all(ROOT_SEGMENT_RE.match(s) for s in value.split("/")):
        raise ValueError(f"{echo(value)} is not a valid topic root (levels of letters, digits, '_' or '-', "
                         "separated by '/'; no '+', '#', '$' or spaces)")
    return value


Key = Annotated[str, BeforeValidator(_check_key)]
WILDCARD = "*"
EntityKey = Annotated[str, BeforeValidator(lambda v: v if v == WILDCARD else _check_key(v))]
TopicRoot = Annotated[str, BeforeValidator(_check_root)]


class _Model(BaseModel):
    # inf and nan pass every ge/le bound check pydantic makes; no field of ours means them.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class City(_Model):
    """The place the gateway serves."""

    name: str = Field(min_length=1, max_length=64)
    slug: Key
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    ars: str = Field(pattern=r"^\d{12}$", description="Amtlicher Regionalschlüssel, 12 digits")
    timezone: str = "Europe/Berlin"
    elevation: float = Field(default=0.0, ge=-1000, le=10000, description="metres above sea level")

    _zone = field_validator("timezone")(classmethod(lambda cls, value: check_timezone(value)))


class Mqtt(_Model):
    """Topic roots and publishing behaviour (broker address comes from the environment)."""

    base_topic: TopicRoot = "soest"
    discovery_prefix: TopicRoot = "homeassistant"
    discovery: bool = True
    # entity: one config per entity (every HA, and openHAB up to 5.1, which reads no device configs);
    # device: one config per device (HA 2024.11 and later). Switching migrates (gateway.announce).
    discovery_mode: Literal["entity", "device"] = "entity"
    qos: Literal[0, 1, 2] = 1
    heartbeat: Heartbeat = 900.0
    birth_delay: BirthDelay = 10.0
    client_id: str | None = Field(default=None, max_length=64)
    keepalive: int = Field(default=60, ge=5, le=3600)
    reconnect_min: ReconnectMin = 0.5
    # A local broker is cheap to retry; 4 s keeps "back within 5 s of the broker" true.
    reconnect_max: ReconnectMax = 4.0
    message_expiry: bool = True
    # On a city broker residents cannot write, so a button they cannot use is better left out.
    refresh_button: bool = True
    # Only with --standby: the active instance's heartbeat lease (gateway.lease).
    lease: LeaseTime = DEFAULT_LEASE

    @model_validator(mode="after")
    def _backoff(self) -> Mqtt:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(f"reconnect_min ({format_seconds(self.reconnect_min)}) must not exceed "
                             f"reconnect_max ({format_seconds(self.reconnect_max)})")
        return self


class Http(_Model):
    """How politely upstream APIs are fetched."""

    per_host_interval: HostInterval = 1.0
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)


class Measurement(_Model):
    """How one kind of value is presented: HA component, device class, unit, limits."""

    component: Literal["sensor", "binary_sensor"] = "sensor"
    name: str | None = None
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    precision: int | None = Field(default=None, ge=0, le=6)
    options: tuple[str, ...] | None = None
    plausible: tuple[float, float] | None = None
    max_rate: float | None = Field(default=None, gt=0, description="largest believable change per hour")
    icon: str | None = Field(default=None, pattern=r"^mdi:[a-z0-9-]+$")
    entity_category: Literal["diagnostic"] | None = None
    enabled_by_default: bool = True

    @model_validator(mode="after")
    def _ha_rules(self) -> Measurement:
        problems = ha.measurement_problems(
            self.component, self.device_class, self.unit, self.state_class, self.options)
        if problems:
            raise ValueError(problems[0])
        if self.plausible is not None and self.plausible[0] >= self.plausible[1]:
            raise ValueError(f"plausible {list(self.plausible)} must be [low, high] with low < high")
        return self


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Entity:
    """One published entity of a source (a slotted dataclass: there may be 100,000 of them)."""

    measurement: Key | None = None
    field: str | None = None
    name: str | None = Field(default=None, max_length=64)
    enabled_by_default: bool | None = None


class Source(_Model):
    """One configured data source: which adapter, where, how often, and what it publishes."""

    adapter: Key
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    name: str | None = Field(default=None, max_length=64)
    enabled: bool = True
    every: Every | None = None
    cron: str | None = Field(default=None, max_length=100)
    jitter: Jitter | None = None
    # How often upstream has new data (default: the schedule's interval), and whether an `every`
    # schedule moves its fetches to just after upstream's updates (gateway.rhythm).
    cadence: Every | None = None
    align: Align | None = None
    max_age: MaxAge | None = None
    failure_threshold: int = Field(default=3, ge=1, le=100)
    timeout: Timeout = 20.0
    options: dict[str, Any] = Field(default_factory=dict)
    license: str | None = Field(default=None, max_length=300, description="overrides the adapter's licence text")
    attribution: str | None = Field(default=None, max_length=300)
    # "*" stands for every field of the adapter not listed by name (for sources with many
    # stations or sensors); topic levels and unique ids then come from the adapter's field names.
    entities: dict[EntityKey, Entity | None]

    @model_validator(mode="after")
    def _schedule(self) -> Source:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of 'every' (e.g. 10m) or 'cron' (e.g. '5 * * * *')")
        if self.cron is not None:
            try:
                trigger = cron_trigger(self.cron, "UTC")
            except ValueError as exc:
                raise ValueError(f"cron {echo(self.cron)} is not a 5-field crontab expression: {exc}") from exc
            if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
                raise ValueError(f"cron {echo(self.cron)} never fires (a day that no month has?)")
            if self.align == "auto":
                raise ValueError("align: 'auto' works with 'every' only; a cron schedule is timed by hand "
                                 "(leave align out or set it to 'off')")
        wildcard = self.entities.get(WILDCARD)
        if WILDCARD in self.entities and (wildcard is None or wildcard.measurement is None or wildcard.field):
            raise ValueError("entities: '*' needs a measurement (and no field), e.g. '*': {measurement: pm25}")
        reserved = RESERVED_ENTITY_KEYS.intersection(self.entities)
        if reserved:
            raise ValueError(f"entity key {echo(sorted(reserved)[0])} is reserved; choose another key")
        if not self.entities:
            raise ValueError("a source needs at least one entity")
        return self

    def interval(self) -> float:
        """The typical gap between runs, in seconds."""
        if self.every is not None:
            return self.every
        trigger = cron_trigger(str(self.cron), UTC)
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first) if first else None
        if first is None or second is None:
            return 86400.0
        return max((second - first).total_seconds(), 1.0)

    def effective_max_age(self) -> float:
        return self.max_age if self.max_age is not None else 3 * self.interval()

    def effective_cadence(self) -> float:
        return self.cadence if self.cadence is not None else self.interval()

    def aligned(self) -> bool:
        """Whether the schedule follows upstream's learned rhythm (an `every` source, unless align: off)."""
        return self.cron is None and self.align != "off"

    def effective_jitter(self) -> float:
        return self.jitter if self.jitter is not None else min(self.interval() * 0.1, 30.0)


class Settings(_Model):
    """The whole topics.yaml."""

    version: Literal[1] = 1
    city: City
    mqtt: Mqtt = Field(default_factory=Mqtt)
    http: Http = Field(default_factory=Http)
    measurements: dict[Key, Measurement]
    sources: dict[Key, Source]

    @model_validator(mode="after")
    def _references(self) -> Settings:
        for name, source in self.sources.items():
            if name in RESERVED_SOURCE_KEYS:
                raise ValueError(f"source key {echo(name)} is reserved; choose another key")
            for key, entity in source.entities.items():
                measurement = (entity.measurement if entity else None) or key  # "*" always names one
                if measurement not in self.measurements:
                    raise ValueError(
                        f"sources.{name}.entities.{key}: unknown measurement {echo(measurement)} "
                        f"(add it under 'measurements' or set 'measurement:' to one of them)")
        return self


_HOST_RE = re.compile(r"^[^\s/\\\x00-\x1f\x7f-\x9f]{1,253}$")
_DIGITS_RE = re.compile(r"^[0-9]{1,5}$")  # ASCII only: "²".isdigit() is True
MAX_PASSWORD_FILE_BYTES = 64 * 1024


def check_host(value: object) -> str:
    """A host name or IP address to connect to or listen on, or ValueError saying so."""
    if not isinstance(value, str) or not _HOST_RE.match(value):
        raise ValueError(f"{echo(value)} is not a host name or IP address (e.g. 127.0.0.1 or mqtt.example.org)")
    return value


def split_endpoint(item: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port); assumes check_hosts passed."""
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if item.count(":") == 1:
        host, port = item.split(":")
        return host, int(port)
    return item, default_port  # a bare IPv6 address has several colons


def check_hosts(value: object) -> str:
    """One or more ``host[:port]`` separated by commas, or ValueError saying what is wrong."""
    if not isinstance(value, str) or not value.strip() or ("," not in value and ":" not in value):
        return check_host(value)
    items = value.split(",")
    if len(items) > MAX_BROKER_HOSTS:
        raise ValueError(f"{len(items)} hosts given; at most {MAX_BROKER_HOSTS}")
    for raw in items:
        item = raw.strip()
        host, port = item, None
        if item.startswith("["):
            host, close, rest = item[1:].partition("]")
            if not close or (rest and not rest.startswith(":")):
                raise ValueError(f"{echo(item)} is not [IPv6 address] or [IPv6 address]:port")
            port = rest[1:] if rest else None
        elif item.count(":") == 1:
            host, port = item.split(":")
        if port is not None and not (_DIGITS_RE.match(port) and 1 <= int(port) <= 65535):
            raise ValueError(f"{echo(item)}: {echo(port)} is not a port number (1-65535); "
                             "use host or host:port, separated by commas")
        if not host:
            raise ValueError(f"{echo(value)} has an empty host; use host or host:port, separated by commas")
        check_host(host)
    return value


MAX_INFLIGHT_WINDOW = 65_535  # paho numbers messages 1..65535


def check_inflight(value: object) -> int | str:
    """``auto`` or a number of unacknowledged QoS 1 messages, or ValueError saying so."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if _DIGITS_RE.match(text) and 1 <= int(text) <= MAX_INFLIGHT_WINDOW:
        return int(text)
    raise ValueError(f"{echo(value)} is not 'auto' or a number of messages (1-{MAX_INFLIGHT_WINDOW})")


def check_port(value: object, origin: str) -> object:
    """An ASCII port number as text stays text for pydantic; anything else digit-like is refused."""
    if isinstance(value, str) and not _DIGITS_RE.match(value.strip()):
        raise ConfigError(f"{origin}: {echo(value)} is not a port number (1-65535)")
    return value


MQTT_PROTOCOLS = ("auto", "5", "3.1.1")
MAX_BROKER_HOSTS = 16


class Broker(_Model):
    """Where and how to connect to MQTT; from GATEWAY_MQTT_* variables and CLI flags.

    ``host`` may list several nodes of one cluster, ``host[:port]`` separated by commas; a node
    without a port uses ``port``. The gateway moves to the next node when one is lost.
    """

    host: Annotated[str, BeforeValidator(check_hosts)] = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    inflight: Annotated[int | str, BeforeValidator(check_inflight)] = "auto"
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_insecure: bool = False

    @model_validator(mode="after")
    def _tls(self) -> Broker:
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problem = "is a directory" if path.is_dir() else "is not a regular file" if path.exists() \
                    else "does not exist"
                raise ValueError(f"{name}: file {echo(str(path))} {problem}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self

    @property
    def use_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None or self.tls_insecure

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """The nodes to connect to, in the order given."""
        return [split_endpoint(item, self.port) for item in self.host.split(",")]

    @property
    def address(self) -> str:
        """host:port of every node, for messages."""
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.endpoints)


BROKER_ENV = {
    "host": "GATEWAY_MQTT_HOST",
    "port": "GATEWAY_MQTT_PORT",
    "protocol": "GATEWAY_MQTT_PROTOCOL",
    "inflight": "GATEWAY_MQTT_INFLIGHT",
    "username": "GATEWAY_MQTT_USERNAME",
    "password": "GATEWAY_MQTT_PASSWORD",
    "password_file": "GATEWAY_MQTT_PASSWORD_FILE",
    "tls": "GATEWAY_MQTT_TLS",
    "tls_ca": "GATEWAY_MQTT_TLS_CA",
    "tls_cert": "GATEWAY_MQTT_TLS_CERT",
    "tls_key": "GATEWAY_MQTT_TLS_KEY",
    "tls_insecure": "GATEWAY_MQTT_TLS_INSECURE",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_flag(value: str, origin: str) -> bool:
    """A yes/no environment variable, or ConfigError naming ``origin``."""
    text = value.strip().lower()
    if text not in _TRUE | _FALSE:
        raise ConfigError(f"{origin}: {echo(value)} is not a boolean (use true or false)")
    return text in _TRUE


def load_broker(env: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Broker:
    """Broker settings from the environment, with CLI ``overrides`` (None values ignored) on top."""
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field, var in BROKER_ENV.items():
        if var in env:
            raw[field] = env[var]
            origin[field] = var
    for field, value in (overrides or {}).items():
        if value is not None:
            raw[field] = value
            origin[field] = "--mqtt-" + field.replace("_", "-")
    for flag in ("tls", "tls_insecure"):
        if isinstance(raw.get(flag), str):
            text = raw[flag].strip().lower()
            if text not in _TRUE | _FALSE:
                raise ConfigError(f"{origin[flag]}: {echo(raw[flag])} is not a boolean (use true or false)")
            raw[flag] = text in _TRUE
    if "port" in raw:
        check_port(raw["port"], origin["port"])
    password_file = raw.pop("password_file", None)
    if password_file is not None:
        raw["password"] = _read_password(password_file, origin["password_file"])
    try:
        return Broker.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else _field_from_message(err["msg"])
        where = origin.get(field, field)
        raise ConfigError(f"{where}: {_describe(err)}") from None


def _read_password(name: str, origin: str) -> str:
    try:
        with open(name, "rb") as file:
            data = file.read(MAX_PASSWORD_FILE_BYTES + 1)  # bounded: it may be /dev/zero
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read {echo(name)}: {exc.strerror or exc}") from None
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise ConfigError(f"{origin}: {echo(name)} is larger than {MAX_PASSWORD_FILE_BYTES // 1024} KiB; "
                          "it should hold only the password")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: {echo(name)} is not UTF-8 text") from None


def _field_from_message(msg: str) -> str:
    for field in sorted(BROKER_ENV, key=len, reverse=True):  # tls_ca before tls
        if msg.startswith(f"Value error, {field}"):
            return field
    return "broker"


# --------------------------------------------------------------------------- loading topics.yaml

MAX_CONFIG_BYTES = 1024 * 1024
# What YAML may cost beyond the size of the text: anchors and aliases make a 20 KB file expand to
# a billion nodes ("billion laughs"), and deep nesting overflows the recursive composer.
MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 32
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice; PyYAML would keep the last silently."""

    def __init__(self, first: yaml.Node, second: yaml.Node) -> None:
        super().__init__(f"duplicate key {echo(second.value)}")
        self.first, self.second = first, second


class _Loader(yaml.SafeLoader):
    """safe_load with bounded cost and duplicate keys as errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._measured: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (node count, depth)
        self._done: set[int] = set()  # anchored nodes composed completely
        self._expanded = 0
        self._depth = 0
        self._checked: set[int] = set()

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                self._charge_alias(target, event.start_mark)
            return super().compose_node(parent, index)
        start = self.peek_event()
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                  start.start_mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if getattr(start, "anchor", None):
            self._done.add(id(node))
        return node

    def _charge_alias(self, target: yaml.Node, mark: yaml.Mark) -> None:
        if id(target) not in self._done:  # anchors are registered before their children: an ancestor
            raise yaml.composer.ComposerError(None, None, "an alias inside its own anchor (recursive data)", mark)
        size, depth = _measure(target, self._measured, MAX_ALIAS_NODES - self._expanded)
        self._expanded += size
        if self._expanded > MAX_ALIAS_NODES or self._depth + depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"aliases expand to more than {MAX_ALIAS_NODES} nodes or {MAX_DEPTH} levels", mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # int("1" * 5000), a 13th month, ...
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {echo(node.value)}: {echo(str(exc), 60)}", node.start_mark) from None

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # Checked here, before merge keys ("<<") splice other mappings' pairs into node.value.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                with contextlib.suppress(TypeError):  # unhashable: construct_mapping says so
                    first = seen.setdefault(key, key_node)
                    if first is not key_node:
                        raise DuplicateKeyError(first, key_node)
        super().flatten_mapping(node)


def _measure(node: yaml.Node, memo: dict[int, tuple[int, int]], budget: int) -> tuple[int, int]:
    """Node count and depth of ``node`` with aliases expanded; stops counting past ``budget``."""
    total, deepest = 0, 0
    stack = [(node, 1)]
    while stack and total <= budget:
        current, level = stack.pop()
        if (known := memo.get(id(current))) is not None:
            total += known[0]
            deepest = max(deepest, level - 1 + known[1])
            continue
        total += 1
        deepest = max(deepest, level)
        if isinstance(current, yaml.MappingNode):
            stack.extend((child, level + 1) for pair in current.value for child in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((child, level + 1) for child in current.value)
    if total <= budget:
        memo[id(node)] = (total, deepest)
    return total, deepest


def _path_to(root: yaml.Node | None, target: yaml.Node) -> tuple[str | int, ...]:
    """The field path of a key node, searched depth first (document order)."""
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if key.start_mark.index == target.start_mark.index:
                    return (*path, key.value)
            stack.extend((v, (*path, k.value)) for k, v in reversed(node.value) if isinstance(k, yaml.ScalarNode))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(node.value))))
    return ()


def _part(part: str | int) -> str:
    text = str(part)
    return text if re.fullmatch(r"[\w*\[\]-]{1,64}", text, re.ASCII) else echo(text)


@dataclass(frozen=True)
class Loaded:
    """A validated config and a way to point at its lines."""

    settings: Settings
    path: Path
    locate: Callable[[tuple[str | int, ...]], str]

    def error(self, loc: tuple[str | int, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.locate(loc)}: {message}")


def load(path: str | Path) -> Loaded:
    """Read and validate topics.yaml; raise ConfigError with one readable line on any problem."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)  # bounded: the path may be /dev/zero
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass --config PATH)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, the most a config may be")
    return loads(text, path)


def parse_yaml(text: str, path: Path) -> Any:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, the most a config may be")
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except DuplicateKeyError as exc:
        dotted = ".".join(_part(p) for p in _path_to(yaml.compose(text, Loader=_Loader), exc.second))
        raise ConfigError(f"{path}:{exc.second.start_mark.line + 1}: {dotted or echo(exc.second.value)}: "
                          f"duplicate key (first defined on line {exc.first.start_mark.line + 1})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {echo(str(exc).splitlines()[0], 200)}") from None


def loads(text: str, path: Path) -> Loaded:
    data = parse_yaml(text, path)

    def locate(loc: tuple[str | int, ...]) -> str:
        # The node graph (for line numbers) is only built when there is an error to point at:
        # for a big config it costs far more memory than the data itself.
        line = _line_of(yaml.compose(text, Loader=_Loader), loc)
        dotted = ".".join(_part(p) for p in loc)
        return f"{path}:{line}: {dotted}" if line else f"{path}: {dotted}"

    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'city', 'measurements' and 'sources' at the top")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        message = _describe(err)
        if (m := re.match(r"^(sources\.[\w-]+\.entities\.[\w-]+): (.*)$", message)):
            loc = tuple(m.group(1).split("."))
            message = m.group(2)
        where = locate(loc) if loc else f"{path}"
        raise ConfigError(f"{where}: {message}{more}") from None
    return Loaded(settings, path, locate)


def _describe(err: Mapping[str, Any]) -> str:
    """Turn one pydantic error into a short sentence saying what would be valid."""
    kind = err["type"]
    msg = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown field {echo(str(err['loc'][-1]))} (check spelling; see docs/topics.md)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{echo(given)} is not allowed: {msg.lower()}"
    if kind == "string_pattern_mismatch":
        return f"{echo(given)} does not match the expected format {err.get('ctx', {}).get('pattern', '')!r}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return f"{echo(given)} is out of range: {msg.lower()}"
    if kind in {"float_parsing", "int_parsing", "float_type", "int_type", "bool_parsing", "bool_type",
                "dict_type", "string_type", "tuple_type", "list_type", "model_type"}:
        return f"{echo(given)} has the wrong type: {msg.lower()}"
    return msg


def _line_of(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """Best line number for a field path: the deepest node of the path that exists."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    best = key.start_mark.line + 1
                    node = value
                    break
            else:
                return best
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best
