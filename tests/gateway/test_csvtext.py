"""CSV as portals serve it: encodings, delimiters, German and English numbers, statistics' placeholders."""

from __future__ import annotations

import pytest

from gateway.csvtext import number, read_table, sniff
from gateway.errors import ParseError


@pytest.mark.parametrize(("cell", "decimal", "expected"), [
    ("1.234,5", ",", 1234.5), ("48.276", ",", 48276.0), ("22,2", ",", 22.2), ("1.234.567", ",", 1234567.0),
    ("12.5", ",", 12.5),  # a decimal point in a German file: not a thousands group
    ("-3,5", ",", -3.5), ("1 234,5", ",", 1234.5), ("1\u00a0234", ",", 1234.0),
    ("1,234.5", ".", 1234.5), ("48,276", ".", 48276.0), ("12,5", ".", 12.5), ("7", ".", 7.0),
    ("", ",", None), ("-", ",", None), ("–", ",", None), (".", ",", None), ("x", ",", None), ("/", ",", None),
    ("abc", ",", None), ("1,2,3", ",", None), ("1e999", ".", None), ("9" * 60, ".", None),
])
def test_number(cell: str, decimal: str, expected: float | None):
    assert number(cell, decimal) == expected


@pytest.mark.parametrize(("text", "delimiter"), [
    ("a;b;c\n1,5;2,5;3,5\n", ";"),  # decimal commas in every row do not make "," the delimiter
    ("a,b,c\n1.5,2.5,3.5\n", ","), ("a\tb\n1\t2\n", "\t"), ("only\n1\n", ","),
])
def test_sniff(text: str, delimiter: str):
    assert sniff(text) == delimiter


def test_encodings_and_quotes():
    body = '\ufeff"Gebiet";"Einwohner"\r\n"Soest; Stadt";"48.276"\r\n\r\n'.encode()
    assert read_table(body) == (["Gebiet", "Einwohner"], [["Soest; Stadt", "48.276"]], ";")
    header, _, _ = read_table("Gebiet;Größe\nSoest;1\n".encode("cp1252"))
    assert header == ["Gebiet", "Größe"]
    with pytest.raises(ParseError) as info:
        read_table(b"a;b\n" + b"1;2\n" * 11, max_rows=10)
    assert info.value.kind == "too_large"


def test_a_body_cut_off_inside_a_row_is_refused():
    with pytest.raises(ParseError) as info:
        read_table(b"Gebiet;Einwohner;Jahr\r\nSoest;48.276;2024\r\nWerl;31")
    assert info.value.kind == "not_csv"
    # Complete without a final newline: fine.
    assert read_table(b"Gebiet;Einwohner\r\nSoest;48.276")[1] == [["Soest", "48.276"]]
