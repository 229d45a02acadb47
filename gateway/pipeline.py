"""One run of one source: (lookup) → request → fetch → parse. No broker, no state of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import requests

from gateway.adapter_api import Adapter, AdapterOptions, Lookup, Paging
from gateway.catalog import SourceSpec
from gateway.errors import ParseError
from gateway.fetch import DEFAULT_MAX_BYTES, HostPolicy, Response, Validators, clean, fetch
from gateway.records import Reading, Request

# What an adapter raises when a body has the right shape but unexpected types in it (an object
# where a string was expected, a list for a dict, a number too large for a float).
SCHEMA_ERRORS = (TypeError, AttributeError, KeyError, IndexError, ValueError, OverflowError, RecursionError,
                 UnicodeError)
MAX_DETAIL = 160


@dataclass(frozen=True, slots=True)
class Collected:
    """What a run produced. ``readings`` is None when upstream answered 304 Not Modified."""

    url: str
    readings: list[Reading] | None
    body: bytes | None
    options: AdapterOptions
    validators: Validators


def collect(spec: SourceSpec, session: requests.Session, options: AdapterOptions | None,
            validators: Validators | None, now: datetime, policy: HostPolicy | None = None,
            max_bytes: int = DEFAULT_MAX_BYTES) -> Collected:
    """Fetch and parse ``spec`` once. Raises SourceError (FetchError or ParseError)."""
    adapter = spec.adapter
    opts = options or spec.options
    timeout = spec.config.timeout
    base_url = spec.config.base_url
    lookup = adapter.lookup
    if lookup is not None and lookup.needed(opts):
        found = fetch(session, lookup.request(opts, base_url), timeout=timeout, max_bytes=max_bytes, policy=policy)
        opts = parse_lookup(lookup, found.body or b"", opts)
        validators = None
    request = adapter.request(opts, base_url)
    if request is None:
        return Collected(adapter.info_url, parse(adapter, b"", opts, now), b"", opts, Validators())
    response = fetch(session, request, timeout=timeout, validators=validators, max_bytes=max_bytes, policy=policy)
    if response.body is None:
        return Collected(response.url, None, None, opts, validators or Validators())
    body = response.body
    if adapter.paging is not None:
        fetch_page = partial(fetch, session, timeout=timeout, max_bytes=max_bytes, policy=policy)
        body = all_pages(adapter.paging, opts, request, response, fetch_page, max_bytes)
    readings = parse(adapter, body, opts, now)
    return Collected(response.url, readings, body, opts, response.validators)


def all_pages(paging: Paging, opts: AdapterOptions, request: Request, first: Response,
              fetch_page: Callable[[Request], Response], max_bytes: int) -> bytes:
    """The first page and every further one ``paging.next`` asks for, merged; at most ``max_bytes`` in all."""
    bodies = [first.body or b""]
    response = first
    with _classified():
        while (page := paging.next(opts, request, bodies[-1], response.headers)) is not None:
            if len(bodies) == paging.max_pages:
                raise ParseError(f"more than {paging.max_pages} pages; narrow the query", kind="too_large")
            response = fetch_page(page)
            bodies.append(response.body or b"")
            request = page
            if sum(map(len, bodies)) > max_bytes:
                raise ParseError(f"the pages exceed the {max_bytes}-byte cap together", kind="too_large")
        return paging.merge(bodies)


@contextmanager
def _classified() -> Iterator[None]:
    """Turn an adapter tripping over an unexpected type into a ParseError instead of a crash."""
    try:
        yield
    except SCHEMA_ERRORS as exc:
        # The message may quote upstream text: one clipped line without control characters.
        raise ParseError(clean(f"{type(exc).__name__}: {exc}", MAX_DETAIL), kind="bad_schema") from None


def parse(adapter: Adapter, body: bytes, options: AdapterOptions, now: datetime) -> list[Reading]:
    """``adapter.parse``, with unexpected types in the body classified as ``bad_schema``."""
    with _classified():
        return list(adapter.parse(body, options, now))


def parse_lookup(lookup: Lookup, body: bytes, options: AdapterOptions) -> AdapterOptions:
    """The options completed by a lookup's answer, with unexpected types classified as ``bad_schema``."""
    with _classified():
        return options.model_copy(update=lookup.parse(body, options))
