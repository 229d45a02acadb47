"""One run of one source: (lookup) → request → fetch → parse. No broker, no state of its own."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import requests

from gateway.adapter_api import AdapterOptions
from gateway.catalog import SourceSpec
from gateway.fetch import DEFAULT_MAX_BYTES, HostPolicy, Validators, fetch
from gateway.records import Reading


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
        opts = opts.model_copy(update=lookup.parse(found.body or b"", opts))
        validators = None
    request = adapter.request(opts, base_url)
    if request is None:
        return Collected(adapter.info_url, list(adapter.parse(b"", opts, now)), b"", opts, Validators())
    response = fetch(session, request, timeout=timeout, validators=validators, max_bytes=max_bytes, policy=policy)
    if response.body is None:
        return Collected(response.url, None, None, opts, validators or Validators())
    readings = list(adapter.parse(response.body, opts, now))
    return Collected(response.url, readings, response.body, opts, response.validators)
