"""Everything an adapter imports: its types, its error, unit converters and the parsing helpers they share.

Adapters import this module only (plus the standard library and third-party parsers), so that loading one
does not load the core's configuration, scheduler or Home Assistant tables; the core imports adapters, never
the other way round. It imports gateway.records, gateway.errors, gateway.units, gateway.geo,
gateway.csvtext and gateway.odata, all pure.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from gateway import odata
from gateway.csvtext import number as csv_number
from gateway.csvtext import read_table as read_csv
from gateway.csvtext import select as csv_rows
from gateway.errors import ParseError
from gateway.geo import centroid, distance_m
from gateway.records import Reading, Request, Station, Value
from gateway.units import (
    UNIT_CODES,
    in_our_unit,
    kwh_per_m2_per_10min_to_w_per_m2,
    pa_to_hpa,
    trusted_unit,
    uw_per_cm2_to_w_per_m2,
)
from gateway.zones import check_timezone

__all__ = [
    "ERROR_KEYS", "MAX_TEXT", "UNIT_CODES", "Adapter", "AdapterOptions", "Call", "FieldKey", "FieldTable", "Lookup",
    "NonBlank", "Paging", "ParseError", "Push", "Read", "Reading", "Request", "Station", "Subscription",
    "UpstreamMqtt", "Value", "as_dict", "as_list", "aware_datetime", "check_field_key", "check_not_blank",
    "check_timezone", "clip", "converted", "csv_number", "csv_rows", "day_key", "dig", "distance_m", "error_kind",
    "expect_any", "finite_number", "flag", "from_unit_code", "geojson_position", "get", "identifier", "in_our_unit",
    "integer", "iso_date", "kwh_per_m2_per_10min_to_w_per_m2", "latest_per_id", "listed", "load_json",
    "load_json_array", "load_json_object", "local_datetime", "member", "number", "odata_key", "odata_paging",
    "offset_zone", "one_of",
    "pa_to_hpa", "phase", "pick", "point", "position", "read_csv", "read_fields", "readings", "require", "series",
    "station_at", "text", "trusted_unit", "utc_datetime", "uw_per_cm2_to_w_per_m2",
]

T = TypeVar("T")
Read = Callable[[object], Value]
"""How a field table reads one upstream value: e.g. ``finite_number``, ``converted(pa_to_hpa)``, ``one_of(...)``."""
FieldTable = Mapping[str, tuple[str, Read | None]]
"""Our field -> (upstream key, how it is read); None reads a finite number as it is."""


FIELD_KEY = re.compile(r"^[a-z0-9_]{1,64}$")


def check_field_key(value: str) -> str:
    """An option key that becomes (part of) a field name, or ValueError saying what would be valid."""
    if not FIELD_KEY.match(value):
        raise ValueError(f"{value!r} must match ^[a-z0-9_]{{1,64}}$ (it becomes a field name)")
    return value


def check_not_blank(value: str) -> str:
    """Text with at least one non-space character, kept as it is (it may be matched exactly upstream)."""
    if not value.strip():
        raise ValueError("must not be blank")
    return value


FieldKey = Annotated[str, AfterValidator(check_field_key)]
"""An option key the user chooses that becomes a field name, e.g. a SensorThings datastream alias."""
NonBlank = Annotated[str, AfterValidator(check_not_blank)]
"""An option naming something upstream, e.g. a Datastream name: not blank, not stripped."""


class AdapterOptions(BaseModel):
    """Options every adapter gets; the core fills the city's values unless topics.yaml overrides them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    timezone: str = "Europe/Berlin"
    elevation: float = 0.0

    _zone = field_validator("timezone")(classmethod(lambda cls, value: check_timezone(value)))

    @property
    def zone(self) -> ZoneInfo:
        """``timezone`` as a ZoneInfo (validated above, so this cannot fail)."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Lookup:
    """A request made once (and again after repeated failures) whose answer fills in options.

    For ids an API wants that users should not have to know, e.g. UBA's numeric station id for
    the station code DENW068. ``parse`` returns the option updates, or raises ParseError.
    """

    needed: Callable[[Any], bool]
    request: Callable[[Any, str], Request]
    parse: Callable[[bytes, Any], dict[str, Any]]


class UpstreamMqtt(BaseModel):
    """An upstream's own MQTT broker, which pushes what its REST API serves (FROST-Server has one).

    The password is never in topics.yaml: ``password_env`` names the environment variable holding it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9.:-]*$")
    port: int | None = Field(default=None, ge=1, le=65535)  # None: 1883, or 8883 with tls
    tls: bool = False
    ca_file: str | None = Field(default=None, min_length=1, max_length=500)  # None: the system's CAs
    username: str | None = Field(default=None, min_length=1, max_length=200)
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # What comes before the adapter's topics; None: the adapter's API version (FROST: "v1.1").
    topic_prefix: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^#+]+$")
    # FROST's built-in broker (Moquette) speaks 3.1.1; with 5 the broker is also told our packet limit.
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive: int = Field(default=30, ge=5, le=3600)
    max_payload: int = Field(default=16_384, ge=256, le=1_048_576)  # bytes; a FROST Observation is < 2 KB
    timeout: float = Field(default=10.0, gt=0, le=120)  # seconds for connect and subscribe
    reconnect_min: float = Field(default=1.0, gt=0, le=3600)
    reconnect_max: float = Field(default=60.0, gt=0, le=3600)
    # The source goes offline once the link has been down this long (seconds); short outages pass unseen.
    offline_after: float = Field(default=120.0, ge=0, le=86_400)


@dataclass(frozen=True)
class Push:
    """An upstream that also pushes each new value over MQTT, which the core subscribes to (gateway.push).

    ``link`` reads the broker settings from the options (None: push not configured); ``topic`` names
    the topic that updates one polled reading, or None; ``parse(payload, polled, now)`` is pure and
    returns the pushed value's upstream id (for duplicates, or None) and its reading, built like the
    polled one; it raises ParseError for a payload it cannot use.
    """

    link: Callable[[Any], UpstreamMqtt | None]
    topic: Callable[[Any, Reading], str | None]
    parse: Callable[[bytes, Reading, datetime], tuple[str | None, Reading]]


@dataclass(frozen=True)
class Paging:
    """For APIs that page a query (NGSI-LD's and NGSI-v2's ``limit``/``offset``).

    ``next(options, request, body, headers)`` is the request for the page after the one ``request``
    fetched (``headers`` lower-case), or None after the last; ``merge(bodies)`` joins the pages into the one
    body ``parse`` reads. More than ``max_pages`` pages is an error (``too_large``), not a silent cut.
    """

    next: Callable[[Any, Request, bytes, Mapping[str, str]], Request | None]
    merge: Callable[[Sequence[bytes]], bytes]
    max_pages: int = 20


def odata_paging(collection: str, max_pages: int = 20) -> Paging:
    """Paging for an OData (SensorThings) query that expands ``collection`` inside its first entity: the core
    follows ``<collection>@iot.nextLink`` on the same origin and ``parse`` reads the collection whole (gateway.odata).
    """
    return Paging(partial(odata.next_link, collection), partial(odata.merge, collection), max_pages)


@dataclass(frozen=True)
class Call:
    """An HTTP request other than a GET (a subscription's create, renew, delete), for gateway.notify to make."""

    method: str
    url: str
    json: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Subscription:
    """For platforms that push changes (NGSI-LD and NGSI-v2 subscriptions); gateway.notify runs the lifecycle.

    ``notify_url(options)``: the gateway's HTTP address as the platform reaches it, or None (no subscription).
    ``call(options, base_url, action, id, endpoint, expires)``: the request for ``action`` ("create", "status",
    "renew", "delete") of subscription ``id`` notifying ``endpoint`` until ``expires``.
    ``notified(body)``: (subscription id, entities) of a notification, or ParseError.
    ``merge(last_body, entities)``: the last polled body with the notified entities applied; what ``parse`` reads.
    ``lifetime(options)``: seconds a subscription is created or renewed for.
    """

    notify_url: Callable[[Any], str | None]
    call: Callable[[Any, str, str, str, str, datetime], Call]
    notified: Callable[[bytes], tuple[str, list[Any]]]
    merge: Callable[[bytes | None, list[Any]], bytes]
    lifetime: Callable[[Any], float]


@dataclass(frozen=True)
class Adapter:
    """A data source kind. ``request`` returns None for sources computed without a network.

    Attributes:
        fields: every field ``parse`` can emit; topics.yaml entities must name one of them.
        dynamic_fields: for adapters whose fields come from their options (e.g. SensorThings
            datastream aliases); overrides ``fields`` when set.
        lookup: an optional one-off request that completes the options before the first fetch.
        paging: for queries answered in pages; the core fetches them all and ``parse`` reads them merged.
        subscription: for platforms that notify changes; gateway.notify subscribes and applies notifications.
        reevaluate: parse the last body again on every tick, for values that change with time
            alone (a warning that expires, "pickup tomorrow" after midnight).
        push: for upstreams that also push new values over MQTT (see ``Push``).
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
    push: Push | None = None


    paging: Paging | None = None
    subscription: Subscription | None = None

    def fields_for(self, options: AdapterOptions) -> frozenset[str]:
        return self.dynamic_fields(options) if self.dynamic_fields is not None else self.fields


def get(base_url: str, path: str, params: Mapping[str, str] | None = None,
        accept: str = "application/json") -> Request:
    """A GET of ``path`` (starting with "/") below the source's base_url from topics.yaml."""
    return Request(url=base_url.rstrip("/") + path, params=dict(params or {}), accept=accept)


def point(opts: AdapterOptions, latitude: str = "lat", longitude: str = "lon") -> dict[str, str]:
    """The configured coordinates as query parameters with 4 decimals (about 10 m), under the API's names."""
    return {latitude: f"{opts.latitude:.4f}", longitude: f"{opts.longitude:.4f}"}


# --- JSON bodies -------------------------------------------------------------------------------

ERROR_KEYS = frozenset({"error", "errors", "message", "detail", "statusCode"})


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


def error_kind(data: object, keys: Iterable[str] = ERROR_KEYS) -> str:
    """``upstream_error`` for an object that looks like an API's error document, else ``bad_schema``."""
    return "upstream_error" if isinstance(data, dict) and not set(keys).isdisjoint(data) else "bad_schema"


def load_json_array(body: bytes, what: str = "items") -> list[Any]:
    """A JSON array, or ParseError; an object that looks like an error document is ``upstream_error``."""
    data = load_json(body)
    if isinstance(data, list):
        return data
    raise ParseError(f"expected a JSON array of {what}, got {type(data).__name__}", kind=error_kind(data))


def member(data: dict[str, Any], key: str, kind: type, where: str, errors: Iterable[str] = ERROR_KEYS) -> Any:
    """``data[key]`` if it is a ``kind`` (list, dict); else ParseError, ``upstream_error`` for an error document."""
    value = data.get(key)
    if isinstance(value, kind):
        return value
    name = "list" if kind is list else "object"
    raise ParseError(f"no {key!r} {name} in {where}", kind=error_kind(data, errors))


def pick(items: list[Any], key: str, match: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any] | None:
    """The first entry with ``key`` that matches; None for an empty list (valid, nothing published).

    Raises ParseError ``bad_schema`` when no entry has ``key`` (renamed upstream), ``not_found``
    when entries exist but none matches the configured one.
    """
    entries = [item for item in items if isinstance(item, dict) and key in item]
    if items and not entries:
        raise ParseError(f"no entry has a {key!r}", kind="bad_schema")
    found = next((item for item in entries if match(item)), None)
    if found is None and entries:
        raise ParseError(f"{clip(what, 80)} is not in the response", kind="not_found")
    return found


def dig(value: object, *path: str) -> object:
    """``value[path[0]][path[1]]...``, or None where a level is missing or not an object."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def as_dict(value: object) -> dict[Any, Any]:
    """``value`` if it is a JSON object, else an empty one: for optional parts of a response."""
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[Any]:
    """``value`` if it is a JSON array, else an empty one: for optional parts of a response."""
    return value if isinstance(value, list) else []


def require(value: T | None, problem: str, kind: str = "bad_schema") -> T:
    """``value``, or ParseError ``problem`` when it is None: for what a response cannot do without."""
    if value is None:
        raise ParseError(problem, kind=kind)
    return value


def expect_any(record: Mapping[str, Any], keys: Iterable[str], problem: str) -> None:
    """ParseError ``bad_schema`` unless ``record`` has one of ``keys``: the source renamed all of its fields."""
    if set(keys).isdisjoint(record):
        raise ParseError(problem, kind="bad_schema")


# --- values ------------------------------------------------------------------------------------

MAX_TEXT = 500
MAX_NUMBER_TEXT = 50  # longer numeric strings are garbage, and float() of huge text is slow


def clip(value: object, limit: int = MAX_TEXT) -> str | None:
    """Upstream text for attributes: a string, cut to ``limit`` characters, or None."""
    if value is None:
        return None
    text = str(value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text(value: object, limit: int = MAX_TEXT) -> str | None:
    """Upstream text that must be a string: clipped, None for other types and for blank text."""
    return clip(value, limit) or None if isinstance(value, str) else None


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


def number(value: object) -> float | None:
    """A finite float from a JSON number or a numeric string ("11.40"); None for anything else."""
    if isinstance(value, str):
        try:
            value = float(value) if len(value) < MAX_NUMBER_TEXT else None
        except ValueError:
            return None
    return finite_number(value)


def identifier(value: object, limit: int = 40) -> str | None:
    """An id that upstream sends as text or as an integer, as clipped text; None for other types and booleans."""
    return clip(value, limit) if isinstance(value, str | int) and not isinstance(value, bool) else None


def odata_key(value: object) -> str | None:
    """An id as an OData URL writes it: digits bare, text in single quotes (doubled inside); None for None."""
    if value is None:
        return None
    text = str(value)
    return text if text.isdigit() else "'" + text.replace("'", "''") + "'"


def integer(value: object) -> int | None:
    """A JSON integer (not a bool, not a float), or None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def flag(value: object) -> bool | None:
    """A JSON number 1 or 0 (e.g. Open-Meteo's ``is_day``) as True or False; None for anything else, booleans too."""
    amount = finite_number(value)
    return bool(amount) if amount in (0.0, 1.0) else None


def converted(convert: Callable[[float], float], read: Callable[[object], float | None] = finite_number) -> Read:
    """A field-table reader: the number ``read`` finds, in our unit (``convert``s it), or None."""
    def read_converted(value: object) -> float | None:
        amount = read(value)
        return convert(amount) if amount is not None else None
    return read_converted


def from_unit_code(amount: float, code: str, unit: str) -> float | None:
    """``amount``, given in the UN/CEFACT unit ``code`` (NGSI-LD's ``unitCode``), in our ``unit``; None when the
    code is unknown or measures something else."""
    convert = UNIT_CODES.get(code, {}).get(unit)
    return finite_number(convert(amount)) if convert is not None else None


def one_of(allowed: Iterable[str]) -> Read:
    """A field-table reader for enums: the text if it is one of ``allowed`` (the options Home Assistant was
    told about), else None."""
    options = frozenset(allowed)
    return lambda value: value if isinstance(value, str) and value in options else None


def read_fields(record: Mapping[str, Any], table: FieldTable, observed_at: datetime,
                station: Station | Callable[[str], Station | None] | None) -> list[Reading]:
    """One Reading per field of ``table`` from ``record``, with its upstream key as the attribute ``upstream_field``.

    ``station`` is a Station, or a function of the upstream key for sources that mix stations per field.
    """
    readings: list[Reading] = []
    for field, (key, read) in table.items():
        value = (read or finite_number)(record.get(key))
        where = station(key) if callable(station) else station
        readings.append(Reading(field, value, observed_at, where, {"upstream_field": key}))
    return readings


def readings(values: Mapping[str, tuple[Value, Mapping[str, Any]]], observed_at: datetime,
             station: Station | None) -> list[Reading]:
    """Readings from a table of field -> (value, attributes), all observed at one time at one station."""
    return [Reading(field, value, observed_at, station, attrs) for field, (value, attrs) in values.items()]


def latest_per_id(items: Iterable[T], id_of: Callable[[T], object], order: Callable[[T], Any]) -> list[T]:
    """The newest item of each id, by ``order`` (the later item on a tie), in the order the ids first appear.

    For message feeds where an Update or a Cancel supersedes the earlier message with the same id.
    Items without an id (None) are each kept on their own.
    """
    latest: dict[tuple[bool, object], T] = {}
    for index, item in enumerate(items):
        ident = id_of(item)
        key = (True, ident) if ident is not None else (False, index)
        if key not in latest or order(item) >= order(latest[key]):
            latest[key] = item
    return list(latest.values())


def listed(items: Sequence[Mapping[str, Any]], keys: Iterable[str], limit: int) -> list[dict[str, Any]]:
    """Attribute entries, at most ``limit``; times as ISO strings so attributes stay plain JSON."""
    return [{k: v.isoformat() if isinstance(v := item[k], datetime) else v for k in keys} for item in items[:limit]]


# --- times -------------------------------------------------------------------------------------

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


def aware_datetime(value: object) -> datetime | None:
    """ISO 8601 text with a UTC offset as a datetime; None for other text, no offset or other types."""
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return stamp if stamp is not None and stamp.tzinfo is not None else None


def utc_datetime(value: object) -> datetime | None:
    """ISO 8601 text, in UTC when it has no offset (CKAN's ``last_modified``); None for other text and types."""
    try:
        stamp = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
        return stamp.replace(tzinfo=stamp.tzinfo or UTC).astimezone(UTC) if stamp is not None else None
    except (ValueError, OverflowError):
        return None


def offset_zone(seconds: object) -> tzinfo | None:
    """A fixed time zone from a UTC offset in seconds (``utc_offset_seconds``); None unless a number under a day."""
    amount = finite_number(seconds)
    return timezone(timedelta(seconds=amount)) if amount is not None and abs(amount) < 86_400 else None


def series(times: Iterable[datetime | None], values: object) -> list[tuple[datetime, float]]:
    """(time, value) pairs from parallel arrays of times and numbers, without pairs whose time or value is missing.

    ``values`` is the upstream array as it came (anything but a list gives no pairs); extra times or values are
    ignored.
    """
    return [(t, n) for t, v in zip(times, as_list(values), strict=False)
            if t is not None and (n := finite_number(v)) is not None]


def iso_date(value: object) -> date | None:
    """A "YYYY-MM-DD" date, or None."""
    try:
        return date.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None


def day_key(days: Sequence[str], issued: date, now: datetime, zone: tzinfo, offset: int) -> str | None:
    """The key in a DWD file's ``days`` ("today", "tomorrow", ... counted from ``issued``) that holds the
    day ``offset`` days after ``now``'s local date; None when the file does not cover that day.

    DWD keeps serving a file until the next issue, so a file a day old has our today as its "tomorrow".
    """
    index = (now.astimezone(zone).date() - issued).days + offset
    return days[index] if 0 <= index < len(days) else None


def phase(onset: datetime | None, expires: datetime | None, now: datetime) -> str:
    """Where a warning stands at ``now``: "expired" once ``expires`` has passed, "upcoming" before ``onset``,
    else "active" (an unknown onset or expiry does not hide a warning)."""
    if expires is not None and expires <= now:
        return "expired"
    return "upcoming" if onset is not None and onset > now else "active"


# --- places ------------------------------------------------------------------------------------

def position(latitude: object, longitude: object,
             read: Callable[[object], float | None] = finite_number) -> tuple[float, float] | None:
    """(latitude, longitude) from upstream values, or None unless both are finite and on the globe."""
    lat, lon = read(latitude), read(longitude)
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    return lat, lon


# GeoJSON geometry type -> how to reach its polygons' outer rings, or its positions, from "coordinates".
POLYGONS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "Polygon": lambda c: c[:1], "MultiPolygon": lambda c: [p[0] for p in c if isinstance(p, list) and p]}
POSITIONS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "LineString": lambda c: c, "MultiPoint": lambda c: c,
    "MultiLineString": lambda c: [p for line in c if isinstance(line, list) for p in line]}


def geojson_position(geometry: object,
                     read: Callable[[object], float | None] = finite_number) -> tuple[float, float] | None:
    """(latitude, longitude) of a GeoJSON geometry, bare or as a Feature's geometry.

    A Point as it is; a Polygon or MultiPolygon by the centroid of its outer rings, a LineString, MultiPoint or
    MultiLineString by the centroid of its positions: a representative point for distances and attributes, where
    SensorThings Locations carry a building's or a district's shape. None for other types (GeometryCollection
    too) and when any position is not a [lon, lat] pair on the globe.
    """
    if dig(geometry, "type") == "Feature":
        geometry = dig(geometry, "geometry")
    kind, coordinates = dig(geometry, "type"), dig(geometry, "coordinates")
    if not isinstance(kind, str) or not isinstance(coordinates, list):
        return None
    if kind == "Point":
        found = _lon_lat(coordinates, read)
        return (found[1], found[0]) if found else None
    if kind in POLYGONS:
        rings = [r if isinstance(r, list) else [None] for r in POLYGONS[kind](coordinates)]
    elif kind in POSITIONS:
        rings = [[p] for p in POSITIONS[kind](coordinates)]  # one-vertex "rings": the mean of the positions
    else:
        return None
    read_rings = [[_lon_lat(p, read) for p in ring] for ring in rings]
    if any(p is None for ring in read_rings for p in ring):
        return None
    middle = centroid([[p for p in ring if p is not None] for ring in read_rings])
    return (middle[1], middle[0]) if middle else None


def _lon_lat(coordinates: object, read: Callable[[object], float | None]) -> tuple[float, float] | None:
    """A GeoJSON position [lon, lat, (alt)] as (lon, lat) when it is on the globe."""
    if not isinstance(coordinates, list) or len(coordinates) < 2:
        return None
    found = position(coordinates[1], coordinates[0], read)  # GeoJSON order is [lon, lat]
    return (found[1], found[0]) if found else None


def station_at(name: str, where: tuple[float, float] | None, opts: AdapterOptions, id: str | None = None) -> Station:
    """A Station at ``where`` (if known) with its distance from the configured coordinates."""
    if where is None:
        return Station(name=name, id=id)
    lat, lon = where
    return Station(name=name, id=id, latitude=lat, longitude=lon,
                   distance_m=distance_m(opts.latitude, opts.longitude, lat, lon))
