"""Entities of a FIWARE context broker, NGSI-LD (Orion-LD, Scorpio, Stellio) or NGSI-v2 (Orion), by Smart Data Model.

Shapes, as read from ETSI GS CIM 009 (NGSI-LD API) and the Smart Data Models' own examples:
- normalized LD: ``{"type": "Property", "value": 3.3, "unitCode": "CEL", "observedAt": "..."}``; several values
  of one attribute are an array told apart by ``datasetId`` (the default one has none);
- simplified LD (``options=keyValues``) and keyValues v2: the bare value;
- normalized v2: ``{"type": "Number", "value": 3.3, "metadata": {"unitCode": {"value": "CEL"}}}``;
- a notification (LD and v2): ``{"subscriptionId": "...", "data": [entities]}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from gateway import adapter_api as api

FREE = "free"  # reads a ParkingSpot's status: 1 when free, 0 when occupied or closed, else unknown
SPOT_STATES = {"free": 1, "occupied": 0, "closed": 0}
# Smart Data Model type -> our field -> (attribute, our unit, the model's unit when unitCode is absent). A unit
# of None reads a plain number (or FREE). Attribute names and default units are the models' own [C].
MODELS: Mapping[str, Mapping[str, tuple[str, str | None, str | None]]] = {
    "WeatherObserved": {
        "temperature": ("temperature", "°C", "CEL"), "dew_point": ("dewPoint", "°C", "CEL"),
        "humidity": ("relativeHumidity", "%", "C62"), "pressure": ("atmosphericPressure", "hPa", "A97"),
        "wind_speed": ("windSpeed", "km/h", "MTS"), "wind_direction": ("windDirection", "°", "DD"),
        "precipitation": ("precipitation", "mm", "MMT"), "illuminance": ("illuminance", "lx", "LUX"),
        "irradiance": ("solarRadiation", "W/m²", "D54"),
    },
    "AirQualityObserved": {
        "pm10": ("pm10", "µg/m³", "GQ"), "pm25": ("pm25", "µg/m³", "GQ"),
        "nitrogen_dioxide": ("NO2", "µg/m³", "GQ"), "ozone": ("O3", "µg/m³", "GQ"),
        "sulphur_dioxide": ("SO2", "µg/m³", "GQ"), "temperature": ("temperature", "°C", "CEL"),
        "humidity": ("relativeHumidity", "%", "C62"),
    },
    "NoiseLevelObserved": {
        "noise_laeq": ("LAeq", "dBA", "2N"), "noise_lamax": ("LAmax", "dBA", "2N"), "noise_las": ("LAS", "dBA", "2N"),
    },
    "ParkingSpot": {"free_spaces": ("status", FREE, None)},
    "OffStreetParking": {"free_spaces": ("availableSpotNumber", None, None),
                         "total_spaces": ("totalSpotNumber", None, None)},
    "WaterQualityObserved": {
        "water_temperature": ("temperature", "°C", "CEL"), "ph": ("pH", None, None),
        "conductivity": ("conductivity", "µS/cm", "D10"), "dissolved_oxygen": ("O2", "mg/L", "M1"),
        "nitrate": ("NO3", "mg/L", "M1"),
    },
}
# When an attribute carries no observedAt: the entity's own time, in this order.
TIME_ATTRIBUTES = ("dateObserved", "dateObservedTo", "TimeInstant", "occupancyModified", "dateModified", "modifiedAt")
COUNT_HEADERS = ("ngsild-results-count", "fiware-total-count")
CONTEXT_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
SUBSCRIPTIONS = {"ld": "/ngsi-ld/v1/subscriptions", "v2": "/v2/subscriptions"}
ERROR_KEYS = {"type", "title", "detail", "error", "description"}  # LD ProblemDetails, v2 {"error", "description"}
Name = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s<>\"'&]+$")]


class Options(api.AdapterOptions):
    version: Literal["ld", "v2"] = "ld"
    entity_type: Name = "WeatherObserved"
    entity_id: Name | None = None  # one entity; else every entity of the type (and q), see ``combine``
    q: str | None = Field(default=None, min_length=1, max_length=500)
    context: str | None = Field(default=None, pattern=r"^https?://[^\s<>\"]{1,500}$")  # the @context, as a Link header
    tenant: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,50}$")  # NGSILD-Tenant / Fiware-Service
    service_path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9_/-]{0,100}$")  # v2 Fiware-ServicePath
    token_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]{0,63}$")  # env var with a bearer token
    key_values: bool = False  # simplified/keyValues: smaller, but without unitCode and observedAt
    combine: Literal["nearest", "sum"] = "nearest"  # sum: e.g. the free spaces of every car park of the city
    limit: int = Field(default=100, ge=1, le=1000)  # per page; Orion-LD serves at most 1000
    # Our field -> attribute, for what the Smart Data Model table does not map (read as a plain number).
    attributes: dict[api.FieldKey, api.NonBlank] = Field(default_factory=dict, max_length=50)
    subscribe: bool = False  # notifications to <notify_url>/notify/<source> (gateway.notify); polling stays
    notify_url: str | None = Field(default=None, pattern=r"^https?://[^\s<>\"]{1,300}$")
    subscription_lifetime: int = Field(default=3600, ge=4, le=30 * 86400)  # seconds; renewed at half of it

    @field_validator("token_env")
    @classmethod
    def _token_is_set(cls, name: str | None) -> str | None:
        if name is not None and not os.environ.get(name):
            raise ValueError(f"environment variable {name} (the bearer token) is not set")
        return name

    @model_validator(mode="after")
    def _fields_known(self) -> Options:
        if not fields(self):
            raise ValueError(f"entity_type {self.entity_type!r} has no Smart Data Model mapping "
                             f"(one of: {', '.join(MODELS)}); map its attributes under 'attributes'")
        if self.subscribe and self.notify_url is None:
            raise ValueError("subscribe needs notify_url: the gateway's HTTP address as the platform reaches it")
        return self


def fields(opts: Options) -> dict[str, tuple[str, str | None, str | None]]:
    return {**MODELS.get(opts.entity_type, {}), **{f: (a, None, None) for f, a in opts.attributes.items()}}


def request(opts: Options, base_url: str) -> api.Request:
    params = {"type": opts.entity_type, "limit": str(opts.limit), "offset": "0"}
    params |= {"q": opts.q} if opts.q else {}
    params |= {"id": opts.entity_id} if opts.entity_id else {}
    if opts.version == "ld":
        params |= {"count": "true"} | ({"options": "keyValues"} if opts.key_values else {})
    else:
        params["options"] = "count,keyValues" if opts.key_values else "count"
    path = "/ngsi-ld/v1/entities" if opts.version == "ld" else "/v2/entities"
    return api.Request(url=base_url.rstrip("/") + path, params=params, headers=headers(opts))


def headers(opts: Options) -> dict[str, str]:
    """Tenant, @context and token headers, for queries and subscriptions alike."""
    out: dict[str, str] = {}
    if opts.tenant:
        out["NGSILD-Tenant" if opts.version == "ld" else "Fiware-Service"] = opts.tenant
    if opts.service_path and opts.version == "v2":
        out["Fiware-ServicePath"] = opts.service_path
    if opts.context and opts.version == "ld":
        out["Link"] = f"<{opts.context}>; {CONTEXT_REL}"
    token = os.environ.get(opts.token_env) if opts.token_env else None
    return out | ({"Authorization": f"Bearer {token}"} if token else {})


def next_page(opts: Options, page: api.Request, body: bytes, head: Mapping[str, str]) -> api.Request | None:
    """The next ``offset`` while the count header (or, without one, a full page) says there is more."""
    try:
        got = len(json.loads(body))
    except (ValueError, TypeError, RecursionError):
        return None  # parse reports what is wrong with it
    offset = int(page.params.get("offset", "0")) + got
    total = next((int(head[h]) for h in COUNT_HEADERS if head.get(h, "").isdigit() and len(head[h]) < 10), None)
    more = got > 0 and (offset < total if total is not None else got >= opts.limit)
    return api.Request(page.url, {**page.params, "offset": str(offset)}, page.headers, page.accept) if more else None


def merge(bodies: Sequence[bytes]) -> bytes:
    if len(bodies) == 1:
        return bodies[0]
    return json.dumps([e for body in bodies for e in api.load_json_array(body, "entities")]).encode()


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    data = api.load_json(body)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]  # a notification
    if not isinstance(data, list):
        raise api.ParseError("expected a JSON array of entities", kind=api.error_kind(data, ERROR_KEYS))
    found = [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)
             and (opts.entity_id is None or e["id"] == opts.entity_id)]
    if data and not any(isinstance(e, dict) and "id" in e for e in data):
        raise api.ParseError("no entry has an 'id'", kind="bad_schema")
    if not found:
        raise api.ParseError(f"no {api.clip(opts.entity_type, 80)} entity matches", kind="not_found")
    if opts.combine == "sum":
        return _summed(found, opts, now)
    entity, station = _nearest(found, opts)
    return [_reading(field, spec, entity, station, now) for field, spec in fields(opts).items()]


def _reading(field: str, spec: tuple[str, str | None, str | None], entity: dict[str, Any],
             station: api.Station, now: datetime) -> api.Reading:
    attribute, unit, default = spec
    raw, code, stamp = _property(entity.get(attribute))
    attributes: dict[str, Any] = {"entity_id": api.clip(entity["id"], 200), "upstream_field": attribute}
    if unit == FREE:
        value: api.Value = SPOT_STATES.get(raw) if isinstance(raw, str) else None
    else:
        value = api.number(raw)
        code = code if isinstance(code, str) else default
        attributes["upstream_unit"] = api.clip(code, 20)
        if value is not None and unit is not None:
            value = api.from_unit_code(value, code, unit) if code else None
            if value is None:
                attributes["note"] = f"unitCode {api.clip(code, 20)!r} is not convertible to {unit}"
    observed = _time(stamp) or next((t for a in TIME_ATTRIBUTES if (t := _time(_property(entity.get(a))[0]))), None)
    if attribute not in entity:
        attributes["note"] = f"the entity has no {attribute!r}"
    elif observed is None:
        attributes.setdefault("note", "no observedAt or dateObserved; fetch time used")
    return api.Reading(field, value, observed or now, station, attributes)


def _summed(entities: list[dict[str, Any]], opts: Options, now: datetime) -> list[api.Reading]:
    """Each field summed over every matching entity (values it cannot read count as missing, not as 0)."""
    station = api.Station(name=f"{len(entities)} {api.clip(opts.entity_type, 80)} entities")
    out = []
    for field, spec in fields(opts).items():
        parts = [_reading(field, spec, e, station, now) for e in entities]
        known = [r for r in parts if isinstance(r.value, int | float)]
        total = round(sum(r.value for r in known), 6) if known else None  # type: ignore[misc]
        newest = max((r.observed_at for r in known), default=now)
        out.append(api.Reading(field, total, newest, station, {"upstream_field": spec[0], "entities": len(entities),
                                                               "entities_with_value": len(known)}))
    return out


def _property(attr: object) -> tuple[object, object, object]:
    """(value, unitCode, observedAt) of an attribute in any of the forms above."""
    if isinstance(attr, list):  # multi-attribute: the default instance, else the first
        attr = next((a for a in attr if isinstance(a, dict) and "datasetId" not in a), attr[0] if attr else None)
    if not isinstance(attr, dict) or "value" not in attr:
        return attr, None, None
    meta = api.as_dict(attr.get("metadata"))
    code = attr.get("unitCode") or api.dig(meta, "unitCode", "value")
    return attr["value"], code, attr.get("observedAt") or api.dig(meta, "TimeInstant", "value")


def _time(value: object) -> datetime | None:
    """An ISO 8601 time with offset, an interval's end, or JSON-LD's {"@type": "DateTime", "@value": ...}."""
    value = api.dig(value, "@value") if isinstance(value, dict) else value
    return api.aware_datetime(value.rsplit("/", 1)[-1].strip().replace("Z", "+00:00")) \
        if isinstance(value, str) else None


def _nearest(entities: list[dict[str, Any]], opts: Options) -> tuple[dict[str, Any], api.Station]:
    """The entity nearest to the city's coordinates (the first when none has a location), as a Station."""
    placed = []
    for entity in entities:
        geo = entity.get("location")
        geo = geo.get("value") if isinstance(geo, dict) and geo.get("type") in ("GeoProperty", "geo:json") else geo
        placed.append((entity, api.station_at(_name(entity), api.geojson_position(geo, api.number), opts,
                                              id=api.clip(entity["id"], 200))))
    return min(placed, key=lambda p: p[1].distance_m if p[1].distance_m is not None else float("inf"))


def _name(entity: dict[str, Any]) -> str:
    for key in ("name", "stationName", "address"):
        value = _property(entity.get(key))[0]
        text = api.text(value if isinstance(value, str) else api.dig(value, "streetAddress"), 80)
        if text:
            return text
    return api.clip(entity["id"], 80) or "entity"


def subscription_call(opts: Options, base_url: str, action: str, ident: str, endpoint: str,
                      expires: datetime) -> api.Call:
    """POST (create), GET (status), PATCH (renew) or DELETE one subscription (ETSI GS CIM 009 5.8, Orion v2)."""
    root = base_url.rstrip("/") + SUBSCRIPTIONS[opts.version]
    one = f"{root}/{quote(ident, safe=':')}"
    stamp = expires.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    sending = headers(opts) | {"Content-Type": "application/json"}
    if action == "create":
        return api.Call("POST", root, _subscription(opts, ident, endpoint, stamp), sending)
    if action == "renew":
        return api.Call("PATCH", one, {"expiresAt" if opts.version == "ld" else "expires": stamp}, sending)
    return api.Call("GET" if action == "status" else "DELETE", one, None, headers(opts))


def _subscription(opts: Options, ident: str, endpoint: str, stamp: str) -> dict[str, Any]:
    form = "keyValues" if opts.key_values else "normalized"
    if opts.version == "v2":  # Orion chooses the id (Location header) and takes the query as a condition
        subject: dict[str, Any] = {"entities": [{"type": opts.entity_type} | (
            {"id": opts.entity_id} if opts.entity_id else {"idPattern": ".*"})]}
        subject |= {"condition": {"expression": {"q": opts.q}}} if opts.q else {}
        return {"description": ident, "subject": subject, "expires": stamp,
                "notification": {"http": {"url": endpoint}, "attrsFormat": form}}
    entity = {"type": opts.entity_type} | ({"id": opts.entity_id} if opts.entity_id else {})
    return {"id": ident, "type": "Subscription", "entities": [entity], "expiresAt": stamp,
            "notification": {"format": form, "endpoint": {"uri": endpoint, "accept": "application/json"}}} | (
        {"q": opts.q} if opts.q else {})


def notified(body: bytes) -> tuple[str, list[Any]]:
    """(subscriptionId, data) of an NGSI-LD or NGSI-v2 notification."""
    doc = api.load_json_object(body)
    ident, data = api.text(doc.get("subscriptionId"), 300), doc.get("data")
    if ident is None or not isinstance(data, list):
        raise api.ParseError("not a notification (no subscriptionId and data)", kind="bad_schema")
    return ident, data


def apply_notified(last: bytes | None, entities: list[Any]) -> bytes:
    """The last polled entities with the notified ones applied, attribute by attribute (new ones appended)."""
    try:
        known = json.loads(last) if last else []
    except (ValueError, RecursionError):
        known = []
    by_id = {e["id"]: e for e in api.as_list(known) if isinstance(e, dict) and isinstance(e.get("id"), str)}
    for entity in entities:
        if isinstance(entity, dict) and isinstance(entity.get("id"), str):
            by_id[entity["id"]] = {**by_id.get(entity["id"], {}), **entity}
    return json.dumps(list(by_id.values())).encode()


ADAPTER = api.Adapter(
    name="ngsi_ld", title="City data platform", provider="FIWARE context broker (NGSI-LD or NGSI-v2)",
    dataset="Entities of one Smart Data Model type (or custom attributes), by id or by type and query",
    license="set by the platform's operator", attribution="Operator of the configured context broker",
    info_url="https://www.etsi.org/deliver/etsi_gs/CIM/001_099/009/",
    fields=frozenset(MODELS["WeatherObserved"]), options=Options, request=request, parse=parse,
    dynamic_fields=lambda opts: frozenset(fields(opts)), paging=api.Paging(next_page, merge),
    subscription=api.Subscription(notify_url=lambda opts: opts.notify_url if opts.subscribe else None,
                                  call=subscription_call, notified=notified, merge=apply_notified,
                                  lifetime=lambda opts: float(opts.subscription_lifetime)),
)
