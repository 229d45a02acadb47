"""OData nested paging as pure functions: which link is followed, and what the merged body holds (gateway.odata)."""

from __future__ import annotations

import json

import pytest

from gateway.errors import ParseError
from gateway.odata import merge, next_link
from gateway.records import Request

FIRST = Request("https://frost.example/v1.1/Things", {"$top": "1"}, {"Accept": "application/json"})


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


def thing(**extra: object) -> bytes:
    return body({"@iot.nextLink": "https://frost.example/v1.1/Things?$skip=1",  # the next Thing: never followed
                 "value": [{"name": "Box", "Datastreams": [{"name": "a"}], **extra}]})


def test_the_entity_s_link_is_followed_and_the_top_level_one_is_not():
    assert next_link("Datastreams", None, FIRST, thing(), {}) is None
    page = next_link("Datastreams", None, FIRST, thing(**{"Datastreams@iot.nextLink": "Things(1)/Datastreams?$skip=1"}),
                     {})
    assert page == Request("https://frost.example/v1.1/Things(1)/Datastreams?$skip=1", {}, FIRST.headers, FIRST.accept)
    assert page is not None
    after = next_link("Datastreams", None, page, body({"value": [{"name": "b"}], "@iot.nextLink": "?$skip=2"}), {})
    assert after is not None
    assert after.url == "https://frost.example/v1.1/Things(1)/Datastreams?$skip=2"
    assert next_link("Datastreams", None, page, body({"value": [{"name": "c"}]}), {}) is None


@pytest.mark.parametrize("link", ["http://frost.example/v1.1/x", "https://frost.example:8443/x", "https://evil.example/x",
                                  "//evil.example/x"])
def test_a_link_to_another_origin_is_not_followed(link: str):
    assert next_link("Datastreams", None, FIRST, thing(**{"Datastreams@iot.nextLink": link}), {}) is None


@pytest.mark.parametrize("link", [42, "", "x" * 5000, ["a"]])
def test_a_link_that_is_no_link_is_an_error(link: object):
    with pytest.raises(ParseError):
        next_link("Datastreams", None, FIRST, thing(**{"Datastreams@iot.nextLink": link}), {})


def test_pages_are_merged_into_the_entity_and_an_unfollowed_link_is_kept():
    first = thing(**{"Datastreams@iot.nextLink": "x"})
    merged = json.loads(merge("Datastreams", [first, body({"value": [{"name": "b"}]})]))
    entity = merged["value"][0]
    assert [d["name"] for d in entity["Datastreams"]] == ["a", "b"]
    assert "Datastreams@iot.nextLink" not in entity
    rest = json.loads(merge("Datastreams", [first, body({"value": [], "@iot.nextLink": "https://other/x"})]))
    assert rest["value"][0]["Datastreams@iot.nextLink"] == "https://other/x"
    assert merge("Datastreams", [first]) == first  # one page: untouched


def test_a_first_page_without_the_collection_does_not_follow_the_next_thing():
    """A server that ignored $expand: its top-level link is the next Thing, not more Datastreams."""
    unexpanded = body({"@iot.nextLink": "https://frost.example/v1.1/Things?$skip=1", "value": [{"name": "Box"}]})
    assert next_link("Datastreams", None, FIRST, unexpanded, {}) is None
