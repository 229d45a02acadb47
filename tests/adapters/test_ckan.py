"""CKAN: package_show picks the resource, the CSV gives one row's columns; against a local portal too.

Fixtures: tests/fixtures/ckan/README.md (package_show's shape, a German statistics office's CSV quirks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from adapters import ADAPTERS, ckan
from gateway import catalog
from gateway.config import loads
from gateway.errors import ParseError
from gateway.fetch import make_session
from gateway.pipeline import collect
from gateway.records import Reading
from tests.helpers import FIXTURES, ROOT, FixtureServer

COLUMNS = {"population": "Einwohner", "population_65": "Einwohner 65 und älter", "share_65": "Anteil 65+ in %",
           "households": "Haushalte"}
BASE = ckan.Options(latitude=51.571, longitude=8.106, columns=COLUMNS)
OPTS = BASE.model_copy(update=ckan.lookup((FIXTURES / "ckan" / "lookup.json").read_bytes(), BASE))
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CSV = (FIXTURES / "ckan" / "normal.csv").read_bytes()
RESOURCE = "https://ckan.example.org/dataset/3f1c2b8e/resource/7c41/download/bevoelkerung_gemeinden.csv"


def parse(body: bytes = CSV, **options: Any) -> dict[str, Reading]:
    return {r.field: r for r in ckan.parse(body, OPTS.model_copy(update=options), NOW)}


def test_lookup_picks_the_csv_resource_and_keeps_title_and_licence():
    assert OPTS.resource_url == RESOURCE
    assert OPTS.title == "Bevölkerung nach Gemeinden, Kreis Soest"
    assert OPTS.license == "Datenlizenz Deutschland – Namensnennung – Version 2.0"
    assert OPTS.modified == "2025-06-30T14:02:19.550071"  # the resource's last_modified, not the package's
    by_name = ckan.lookup((FIXTURES / "ckan" / "lookup.json").read_bytes(),
                          BASE.model_copy(update={"resource": "beschreibung"}))
    assert by_name["resource_url"].endswith("beschreibung.pdf")


@pytest.mark.parametrize(("update", "kind"), [({"format": "XLSX"}, "not_found"), ({"resource": "Karte"}, "not_found")])
def test_lookup_without_the_resource(update: dict[str, str], kind: str):
    with pytest.raises(ParseError) as info:
        ckan.lookup((FIXTURES / "ckan" / "lookup.json").read_bytes(), BASE.model_copy(update=update))
    assert info.value.kind == kind


def test_lookup_of_an_unknown_dataset_is_an_upstream_error():
    with pytest.raises(ParseError) as info:
        ckan.lookup((FIXTURES / "ckan" / "not_found.json").read_bytes(), BASE)
    assert info.value.kind == "upstream_error"


def test_the_newest_row_of_the_district_with_german_numbers():
    readings = parse()
    # BOM, `;`, thousands dots ("48.276") and a decimal comma ("22,2"); 2024 is the last "Soest" row.
    assert {k: r.value for k, r in readings.items()} == {"population": 48276.0, "population_65": 10702.0,
                                                          "share_65": 22.2, "households": 24010.0}
    reading = readings["population"]
    assert reading.observed_at == datetime(2025, 6, 30, 14, 2, 19, 550071, tzinfo=UTC)
    assert reading.station is not None
    assert reading.station.name == "Soest"
    assert reading.attributes == {
        "dataset": "Bevölkerung nach Gemeinden, Kreis Soest", "license": OPTS.license,
        "modified": "2025-06-30T14:02:19.550071", "rows_matched": 2, "column": "Einwohner", "upstream_value": "48.276"}
    assert parse(row="first")["population"].value == 48011.0


def test_empty_cells_and_placeholders_are_unknown_not_zero():
    assert parse(match={"Gebiet": "Lippstadt"})["households"].value is None  # empty cell
    assert parse(match={"Gebiet": "Anröchte"})["households"].value is None  # "-"
    # The summary row is only used when asked for by its own name.
    assert parse(match={"Gebiet": "Kreis Soest insgesamt"})["population"].value == 305119.0


def test_windows_1252_and_comma_separated_english_numbers():
    latin = CSV.decode("utf-8-sig").encode("cp1252")
    assert parse(latin, match={"Gebiet": "Anröchte"})["population"].value == 10241.0
    english = (b'Gebiet,Jahr,Einwohner,"Anteil 65+ in %"\r\n"Soest, Stadt",2024,"48,276",22.2\r\n')
    readings = parse(english, match={"Gebiet": "Soest, Stadt"}, columns={"population": "Einwohner",
                                                                          "share_65": "anteil 65+ in %"})
    assert {k: r.value for k, r in readings.items()} == {"population": 48276.0, "share_65": 22.2}


@pytest.mark.parametrize(("body", "kind"), [
    (b"<!DOCTYPE html><html><body>Wartungsarbeiten</body></html>", "not_csv"),
    (b"", "not_csv"),
    (b"Gebiet;Jahr;Bevoelkerung\r\nSoest;2024;48.276\r\n", "bad_schema"),
    (b"Gebiet;Einwohner;Einwohner 65 und \xe4lter;Anteil 65+ in %;Haushalte\r\nWerl;1;2;3;4\r\n", "not_found"),
    (b'{"success": true, "result": {}}', "bad_schema"),
])
def test_unusable_files(body: bytes, kind: str):
    with pytest.raises(ParseError) as info:
        parse(body)
    assert info.value.kind == kind


def test_a_short_row_gives_unknown_values():
    body = b"Gebiet;Einwohner;Einwohner 65 und \xc3\xa4lter;Anteil 65+ in %;Haushalte\r\nSoest;48.276\r\n"
    readings = parse(body)
    assert (readings["population"].value, readings["households"].value) == (48276.0, None)


@pytest.mark.parametrize("bad", [{"columns": {}}, {"match": {}}, {"columns": {"Pop": "x"}}, {"decimal": ";"},
                                 {"resource_url": "file:///etc/passwd"}])
def test_invalid_options_are_refused(bad: dict[str, object]):
    with pytest.raises(ValidationError):
        ckan.Options(latitude=51.571, longitude=8.106, **bad)


# --------------------------------------------------------------------------- against a local portal


def spec_for(base_url: str) -> catalog.SourceSpec:
    data = yaml.safe_load((ROOT / "topics.yaml").read_text())
    source = {**data["sources"]["district_statistics"], "enabled": True, "base_url": base_url}
    data["sources"] = {"district_statistics": source}
    return catalog.build(loads(yaml.safe_dump(data, allow_unicode=True), ROOT / "topics.yaml"),
                         ADAPTERS).sources["district_statistics"]


def test_package_show_then_the_csv_then_not_modified(upstream: FixtureServer):
    lookup = (FIXTURES / "ckan" / "lookup.json").read_bytes().replace(b"https://ckan.example.org",
                                                                       upstream.url.encode())
    upstream.serve("/api/3/action/package_show", lookup, headers={"Content-Type": "application/json"})
    upstream.serve("/dataset/3f1c2b8e/resource/7c41/download/bevoelkerung_gemeinden.csv", CSV, etag='"v1"',
                   headers={"Content-Type": "text/csv"})
    spec = spec_for(upstream.url)
    session = make_session()
    first = collect(spec, session, None, None, NOW)
    assert {r.field: r.value for r in first.readings or []} == {
        "population": 48276.0, "population_65": 10702.0, "share_65": 22.2, "households": 24010.0}
    assert [p.split("?")[0] for p, _ in upstream.requests] == [
        "/api/3/action/package_show", "/dataset/3f1c2b8e/resource/7c41/download/bevoelkerung_gemeinden.csv"]
    assert upstream.requests[0][0] == "/api/3/action/package_show?id=bevoelkerung-kreis-soest"
    # The next day: no second package_show, and the unchanged file is not downloaded again.
    again = collect(spec, session, first.options, first.validators, NOW)
    assert again.readings is None
    assert len(upstream.requests) == 3
    assert upstream.requests[2][1]["If-None-Match"] == '"v1"'


def test_an_image_instead_of_the_csv_is_refused(upstream: FixtureServer):
    from gateway.errors import FetchError

    lookup = (FIXTURES / "ckan" / "lookup.json").read_bytes().replace(b"https://ckan.example.org",
                                                                       upstream.url.encode())
    upstream.serve("/api/3/action/package_show", lookup, headers={"Content-Type": "application/json"})
    upstream.serve("/dataset/3f1c2b8e/resource/7c41/download/bevoelkerung_gemeinden.csv", b"\x89PNG\r\n",
                   headers={"Content-Type": "image/png"})
    with pytest.raises(FetchError) as info:
        collect(spec_for(upstream.url), make_session(), None, None, NOW)
    assert info.value.kind == "content_type"
