"""CSV tables as open-data portals publish them: three encodings, `;` or `,`, German decimal commas.

Pure: bytes in, header and rows out. The standard library's csv module reads the rows (quotes,
embedded delimiters and line breaks are its job); csv.Sniffer guesses the dialect from the first
lines, and the header line decides when it cannot.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable

from gateway.errors import ParseError

DELIMITERS = ";,\t|"
SNIFF_CHARS = 8192
MAX_ROWS = 100_000
# After thousands separators are gone: what a number may look like.
GROUPED = re.compile(r"\d{1,3}(?:[.,]\d{3})+")  # "1.234.567": only thousands separators
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Placeholders of German official statistics: "-" nothing, "." unknown or secret, "x" not meaningful,
# "/" too uncertain; empty cells are missing too. None of them is a zero.
PLACEHOLDERS = frozenset({"", "-", "–", "—", ".", "x", "X", "/", "...", "…"})
SPACES = str.maketrans("", "", " \u00a0\u202f\u2009'")


def decode(body: bytes) -> str:
    """UTF-8 (with or without a BOM), else Windows-1252: the encodings German portals serve."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


def read_table(body: bytes, max_rows: int = MAX_ROWS) -> tuple[list[str], list[list[str]], str]:
    """(header, rows, delimiter) of a CSV body; ParseError ``not_csv`` for HTML pages and empty or broken files."""
    text = decode(body)
    if text.lstrip()[:1] == "<":
        raise ParseError("got an HTML page instead of CSV", kind="not_csv")
    delimiter = sniff(text)
    try:
        rows = list(itertools.islice(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), max_rows + 1))
    except csv.Error as exc:
        raise ParseError(f"unreadable CSV: {str(exc)[:100]}", kind="not_csv") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) > max_rows:
        raise ParseError(f"more than {max_rows} rows", kind="too_large")
    if not rows:
        raise ParseError("the CSV file is empty", kind="not_csv")
    # A body cut off in transfer ends inside a row; a complete file without a final newline ends with a full one.
    if len(rows) > 1 and not text.endswith(("\n", "\r")) and len(rows[-1]) != len(rows[0]):
        raise ParseError("the CSV file ends inside a row (truncated?)", kind="not_csv")
    return [cell.strip() for cell in rows[0]], rows[1:], delimiter


def sniff(text: str) -> str:
    """The delimiter: csv.Sniffer's guess from the first lines, else the candidate most frequent in the header."""
    sample = text[:SNIFF_CHARS]
    try:
        found = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        found = ""
    header = sample.split("\n", 1)[0]
    counted = max(DELIMITERS, key=header.count)
    # The Sniffer is fooled by a decimal comma that appears in every row of a `;` file: the header decides.
    if found and header.count(found) >= header.count(counted):
        return found
    return counted if header.count(counted) else ","


def number(cell: str, decimal: str) -> float | None:
    """A cell as a number: ``decimal`` is "," (German: "1.234,5") or "." ("1,234.5"); None for placeholders."""
    text = cell.strip().translate(SPACES)
    if text in PLACEHOLDERS or len(text) > 40:
        return None
    thousands = "." if decimal == "," else ","
    if decimal not in text and thousands in text and not GROUPED.fullmatch(text.lstrip("+-")):
        thousands, decimal = decimal, thousands  # "12.5" in a German file, "12,5" in an English one
    text = text.replace(thousands, "").replace(decimal, ".")
    if not PLAIN_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if value == value and abs(value) != float("inf") else None


def select(header: list[str], rows: list[list[str]], match: dict[str, str],
           columns: Iterable[str]) -> list[dict[str, str]]:
    """The rows whose ``match`` columns hold the given values, as {column: cell} with casefolded names.

    Names and values compare without case and surrounding spaces; a missing cell is "". ParseError
    ``bad_schema`` names the first of ``match`` and ``columns`` the header lacks.
    """
    names = [name.casefold() for name in header]
    missing = [c for c in [*match, *columns] if c.strip().casefold() not in names]
    if missing:
        raise ParseError(f"no column {missing[0][:80]!r} in the CSV header", kind="bad_schema")
    records = [dict(zip(names, [*row, *[""] * (len(names) - len(row))], strict=False)) for row in rows]
    wanted = {c.strip().casefold(): v.strip().casefold() for c, v in match.items()}
    return [r for r in records if all(r[c].strip().casefold() == v for c, v in wanted.items())]
