"""OData's server-driven paging of a collection expanded inside an entity, as SensorThings servers do it. Pure.

A query for one Thing with ``$expand=Datastreams(...)`` gets at most the server's page size of
Datastreams (FROST: its defaultTop, 100) and a ``Datastreams@iot.nextLink`` in the Thing. That link
answers ``{"value": [more Datastreams], "@iot.nextLink": ...}`` with the same nested expansion. The
first page's top-level ``@iot.nextLink`` (the next *Thing*) is never followed.

A link to another origin (scheme, host and port) is not followed: a server behind a proxy often
writes its internal address (FROST's ``serviceRootUrl`` unset), and the gateway sends its requests
to no host the config did not name. The merged body then keeps that link in the Thing, so the adapter
can still say that some Datastreams were not seen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit

from gateway.errors import ParseError
from gateway.records import Request

MAX_LINK = 4096  # characters; a nextLink longer than this is not a paging link


def next_link(collection: str, opts: object, request: Request, body: bytes,
              headers: Mapping[str, str]) -> Request | None:
    """The request for the page after ``body`` (which ``request`` fetched), or None after the last."""
    data = _object(body)
    entity = _first_entity(data, collection)
    if entity is not None:
        link = entity.get(f"{collection}@iot.nextLink")
    elif urlsplit(request.url).path.endswith(f"/{collection}"):  # a page of the collection, fetched by its link
        link = data.get("@iot.nextLink")
    else:  # a first page without the collection (not expanded): its own link is the next *Thing*
        return None
    if link is None:
        return None
    if not isinstance(link, str) or not link or len(link) > MAX_LINK:
        raise ParseError(f"{collection}@iot.nextLink is not a link", kind="bad_schema")
    url = urljoin(request.url, link)
    here, there = urlsplit(request.url), urlsplit(url)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
        return None
    return Request(url, {}, request.headers, request.accept)


def merge(collection: str, bodies: Sequence[bytes]) -> bytes:
    """The first page with every further page's items appended to the entity's ``collection``."""
    if len(bodies) == 1:
        return bodies[0]
    data = _object(bodies[0])
    entity = _first_entity(data, collection)
    if entity is None or not isinstance(entity[collection], list):
        raise ParseError(f"the first page has no {collection} to continue", kind="bad_schema")
    last: dict[str, Any] = {}
    for body in bodies[1:]:
        last = _object(body)
        items = last.get("value")
        if not isinstance(items, list):
            raise ParseError(f"a page of {collection} has no value list", kind="bad_schema")
        entity[collection].extend(items)
    key = f"{collection}@iot.nextLink"
    entity.pop(key, None)
    if last.get("@iot.nextLink"):  # a link we did not follow: there is more than we read
        entity[key] = last["@iot.nextLink"]
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ParseError("a page is not JSON", kind="bad_schema") from None
    if not isinstance(data, dict):
        raise ParseError("a page is not a JSON object", kind="bad_schema")
    return data


def _first_entity(data: dict[str, Any], collection: str) -> dict[str, Any] | None:
    """The first page's entity (it holds the expanded ``collection``); None on a page of the collection itself."""
    value = data.get("value")
    first = value[0] if isinstance(value, list) and value else None
    return first if isinstance(first, dict) and collection in first else None
