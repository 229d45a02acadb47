"""Statistics (e.g. population by district) from a CSV resource of a CKAN open-data portal (Open.NRW, GovData)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from gateway import adapter_api as api

CKAN_ERRORS = {"error", "success"}  # {"success": false, "error": {"__type": "Not Found Error", "message": ...}}


class Options(api.AdapterOptions):
    dataset: api.NonBlank = Field(default="bevoelkerung-kreis-soest", max_length=200)  # package id or name
    resource: str | None = Field(default=None, min_length=1, max_length=200)  # its name; else the first of `format`
    format: str = Field(default="CSV", min_length=1, max_length=20)
    match: dict[str, api.NonBlank] = Field(default_factory=lambda: {"Gebiet": "Soest"}, min_length=1, max_length=10)
    columns: dict[api.FieldKey, api.NonBlank] = Field(  # our field -> column header, matched without case
        default_factory=lambda: {"population": "Einwohner"}, min_length=1, max_length=50)
    decimal: Literal["auto", ",", "."] = "auto"  # auto: "," in `;` files (German), else "."
    row: Literal["first", "last"] = "last"  # of several matching rows; tables by year append the newest
    # Filled by package_show (or set to skip it):
    resource_url: str | None = Field(default=None, pattern=r"^https?://\S{1,1000}$")
    title: str | None = None
    license: str | None = None
    modified: str | None = None


def lookup_request(opts: Options, base_url: str) -> api.Request:
    return api.get(base_url, "/api/3/action/package_show", {"id": opts.dataset})


def lookup(body: bytes, opts: Options) -> dict[str, Any]:
    """The resource (by name, else by format) of the package, and the package's title and licence."""
    data = api.load_json_object(body)
    package = api.member(data, "result", dict, "package_show's answer", errors=CKAN_ERRORS)
    resources = api.member(package, "resources", list, "the package")
    wanted = (opts.resource or opts.format).casefold()
    key = "name" if opts.resource else "format"
    found = api.pick(resources, key, lambda r: str(r[key]).strip().casefold() == wanted,
                     f"a resource with {key} {wanted!r}")
    url = api.text(api.dig(found, "url"), 1000)
    if found is None or url is None or not url.startswith(("http://", "https://")):
        raise api.ParseError(f"no downloadable resource with {key} {wanted!r}", kind="not_found")
    return {"resource_url": url, "title": api.text(package.get("title"), 200),
            "license": api.text(package.get("license_title") or package.get("license_id"), 200),
            "modified": api.text(found.get("last_modified") or package.get("metadata_modified"), 40)}


def request(opts: Options, base_url: str) -> api.Request:
    url = api.require(opts.resource_url, "no resource URL (package_show did not run)", kind="not_found")
    return api.Request(url=url, accept="text/csv, text/plain;q=0.8, */*;q=0.5")


def parse(body: bytes, opts: Options, now: datetime) -> list[api.Reading]:
    header, rows, delimiter = api.read_csv(body)
    matching = api.csv_rows(header, rows, opts.match, opts.columns.values())
    if not matching:
        raise api.ParseError(f"no row matches {api.clip(opts.match, 120)}", kind="not_found")
    row = matching[-1 if opts.row == "last" else 0]
    decimal = opts.decimal if opts.decimal != "auto" else "," if delimiter == ";" else "."
    station = api.Station(name=" / ".join(opts.match.values()))
    attributes = {"dataset": api.clip(opts.title or opts.dataset, 200), "license": opts.license,
                  "modified": opts.modified, "rows_matched": len(matching)}
    return [api.Reading(field, api.csv_number(cell := row[column.strip().casefold()], decimal),
                        api.utc_datetime(opts.modified) or now, station,
                        {**attributes, "column": api.clip(column, 80), "upstream_value": api.clip(cell, 40)})
            for field, column in opts.columns.items()]


ADAPTER = api.Adapter(
    name="ckan", title="Open-data statistics", provider="CKAN open-data portal (e.g. Open.NRW, GovData)",
    dataset="One row of a CSV resource of a CKAN dataset (package_show)",
    license="the dataset's own licence (see the attributes)", attribution="Publisher of the configured dataset",
    info_url="https://docs.ckan.org/en/latest/api/", fields=frozenset({"population"}), options=Options,
    request=request, parse=parse, dynamic_fields=lambda opts: frozenset(opts.columns),
    lookup=api.Lookup(needed=lambda opts: opts.resource_url is None, request=lookup_request, parse=lookup),
)
