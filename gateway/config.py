"""Configuration: topics.yaml and broker settings, validated with pydantic.

Errors are reported as one line naming the file, the line, the field path and what would be
valid, e.g. ``topics.yaml:14: sources.brightsky.every: '10x' is not a duration (e.g. 30s, 10m, 1h)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
from gateway.schedule import cron_trigger
from gateway.topics import KEY_RE, RESERVED_ENTITY_KEYS, RESERVED_SOURCE_KEYS, ROOT_SEGMENT_RE

DEFAULT_CONFIG = "topics.yaml"
ENV_PREFIX = "GATEWAY_"

_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*"
                          r"(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$")
_UNITS_S = (86400.0, 3600.0, 60.0, 1.0)


def parse_duration(value: object, allow_zero: bool = False) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"1h30m"`` or ``"2d"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 10m, 1h)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)) and any(m.groups()):
        seconds = sum(float(g) * u for g, u in zip(m.groups(), _UNITS_S, strict=True) if g)
    else:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 10m, 1h)")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{value!r} must be longer than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
DurationOrZero = Annotated[float, BeforeValidator(lambda v: parse_duration(v, allow_zero=True))]


def check_timezone(value: str) -> str:
    """An IANA time zone name, or ValueError saying what would be valid."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Berlin)") from exc
    return value


def _check_key(value: str) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise ValueError(f"{value!r} is not a valid key (lower-case letters, digits, '_' or '-')")
    return value


def _check_root(value: str) -> str:
    if not isinstance(value, str) or not all(ROOT_SEGMENT_RE.match(s) for s in value.split("/")):
        raise ValueError(f"{value!r} is not a valid topic root (levels of letters, digits, '_' or '-', "
                         "separated by '/'; no '+', '#', '$' or spaces)")
    return value


Key = Annotated[str, BeforeValidator(_check_key)]
WILDCARD = "*"
EntityKey = Annotated[str, BeforeValidator(lambda v: v if v == WILDCARD else _check_key(v))]
TopicRoot = Annotated[str, BeforeValidator(_check_root)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class City(_Model):
    """The place the gateway serves."""

    name: str = Field(min_length=1, max_length=64)
    slug: Key
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    ars: str = Field(pattern=r"^\d{12}$", description="Amtlicher Regionalschlüssel, 12 digits")
    timezone: str = "Europe/Berlin"
    elevation: float = 0.0

    _zone = field_validator("timezone")(classmethod(lambda cls, value: check_timezone(value)))


class Mqtt(_Model):
    """Topic roots and publishing behaviour (broker address comes from the environment)."""

    base_topic: TopicRoot = "soest"
    discovery_prefix: TopicRoot = "homeassistant"
    discovery: bool = True
    qos: Literal[0, 1, 2] = 1
    heartbeat: Duration = 900.0
    birth_delay: Duration = 10.0
    client_id: str | None = Field(default=None, max_length=64)
    keepalive: int = Field(default=60, ge=5, le=3600)
    reconnect_min: Duration = 0.5
    # A local broker is cheap to retry; 4 s keeps "back within 5 s of the broker" true.
    reconnect_max: Duration = 4.0
    message_expiry: bool = True
    # On a city broker residents cannot write, so a button they cannot use is better left out.
    refresh_button: bool = True


class Http(_Model):
    """How politely upstream APIs are fetched."""

    per_host_interval: DurationOrZero = 1.0
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
    every: Duration | None = None
    cron: str | None = None
    jitter: DurationOrZero | None = None
    max_age: Duration | None = None
    failure_threshold: int = Field(default=3, ge=1, le=100)
    timeout: Duration = 20.0
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
                cron_trigger(self.cron, "UTC")
            except ValueError as exc:
                raise ValueError(f"cron {self.cron!r} is not a 5-field crontab expression: {exc}") from exc
        wildcard = self.entities.get(WILDCARD)
        if WILDCARD in self.entities and (wildcard is None or wildcard.measurement is None or wildcard.field):
            raise ValueError("entities: '*' needs a measurement (and no field), e.g. '*': {measurement: pm25}")
        reserved = RESERVED_ENTITY_KEYS.intersection(self.entities)
        if reserved:
            raise ValueError(f"entity key {sorted(reserved)[0]!r} is reserved; choose another key")
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
                raise ValueError(f"source key {name!r} is reserved; choose another key")
            for key, entity in source.entities.items():
                measurement = (entity.measurement if entity else None) or key  # "*" always names one
                if measurement not in self.measurements:
                    raise ValueError(
                        f"sources.{name}.entities.{key}: unknown measurement {measurement!r} "
                        f"(add it under 'measurements' or set 'measurement:' to one of them)")
        return self


class Broker(_Model):
    """Where and how to connect to MQTT; from GATEWAY_MQTT_* variables and CLI flags."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
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
                raise ValueError(f"{name}: file {str(path)!r} does not exist")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self

    @property
    def use_tls(self) -> bool:
        return self.tls or self.tls_ca is not None or self.tls_cert is not None or self.tls_insecure


BROKER_ENV = {
    "host": "GATEWAY_MQTT_HOST",
    "port": "GATEWAY_MQTT_PORT",
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
            origin[field] = "--" + field.replace("_", "-").replace("-file", "-file")
    for flag in ("tls", "tls_insecure"):
        if isinstance(raw.get(flag), str):
            text = raw[flag].strip().lower()
            if text not in _TRUE | _FALSE:
                raise ConfigError(f"{origin[flag]}: {raw[flag]!r} is not a boolean (use true or false)")
            raw[flag] = text in _TRUE
    password_file = raw.pop("password_file", None)
    if password_file is not None:
        try:
            raw["password"] = Path(password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{origin['password_file']}: cannot read {password_file!r}: "
                              f"{exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{origin['password_file']}: {password_file!r} is not UTF-8 text") from None
    try:
        return Broker.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else _field_from_message(err["msg"])
        where = origin.get(field, field)
        raise ConfigError(f"{where}: {_describe(err)}") from None


def _field_from_message(msg: str) -> str:
    for field in sorted(BROKER_ENV, key=len, reverse=True):  # tls_ca before tls
        if msg.startswith(f"Value error, {field}"):
            return field
    return "broker"


# --------------------------------------------------------------------------- loading topics.yaml


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass --config PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return loads(text, path)


def loads(text: str, path: Path) -> Loaded:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None

    def locate(loc: tuple[str | int, ...]) -> str:
        # The node graph (for line numbers) is only built when there is an error to point at:
        # for a big config it costs far more memory than the data itself.
        line = _line_of(yaml.compose(text, Loader=yaml.SafeLoader), loc)
        dotted = ".".join(str(p) for p in loc)
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
        return f"unknown field {str(err['loc'][-1])!r} (check spelling; see docs/topics.md)"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"{given!r} is not allowed: {msg.lower()}"
    if kind == "string_pattern_mismatch":
        return f"{given!r} does not match the expected format {err.get('ctx', {}).get('pattern', '')!r}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return f"{given!r} is out of range: {msg.lower()}"
    if kind in {"float_parsing", "int_parsing", "float_type", "int_type", "bool_parsing", "bool_type",
                "dict_type", "string_type", "tuple_type", "list_type", "model_type"}:
        return f"{given!r} has the wrong type: {msg.lower()}"
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


def env_value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    return (env if env is not None else os.environ).get(ENV_PREFIX + name)
