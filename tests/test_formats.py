"""Record streams: whatever way a body is cut into chunks, the same records come out."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.formats import (
    CsvReader,
    FormatError,
    NdjsonReader,
    RecordWriter,
    neutralise_formula,
    reader_for,
)

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20
)
records = st.lists(
    st.fixed_dictionaries(
        {"record_id": st.from_regex(r"P[0-9]{8}", fullmatch=True), "name": text, "note": text}
    ),
    max_size=20,
)


def roundtrip(fmt: str, recs: list[dict[str, Any]], cuts: list[int]) -> list[dict[str, Any]]:
    writer = RecordWriter(fmt, "population")
    data = writer.start() + writer.write(recs) + writer.finish()
    reader = reader_for(fmt)
    out: list[dict[str, Any]] = []
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        out.extend(reader.feed(data[last:cut]))
        last = cut
    out.extend(reader.feed(data[last:]))
    out.extend(reader.close())
    return out


@settings(max_examples=150, deadline=None)
@given(recs=records, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_when_a_body_is_cut_anywhere_then_the_same_records_are_read(
    fmt: str, recs: list[dict[str, Any]], cuts: list[int]
) -> None:
    got = roundtrip(fmt, recs, cuts)
    if fmt == "csv":
        # CSV keeps text; a record whose fields are all empty is an empty line, which CSV skips.
        # Cells a spreadsheet would run as formulas come back neutralised.
        expected = [
            {k: neutralise_formula(v) for k, v in r.items()} for r in recs if any(r.values())
        ]
        assert got == expected
    else:
        assert got == recs


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("ndjson", b'{"a": 1}\n[1, 2]\n'),
        ("ndjson", b'{"a": 1}\n{broken\n'),
        ("csv", b"a,b\n1,2,3\n"),
        ("csv", b"a,a\n1,2\n"),
        ("csv", b'a,b\n"unterminated,2\n'),
        ("json", b'{"records": [1, 2]}'),
        ("json", b'{"records": [{"a": 1}'),
    ],
    ids=[
        "ndjson line not an object",
        "ndjson broken line",
        "csv row wider than header",
        "csv repeated header",
        "csv unterminated quote",
        "json records not objects",
        "json cut short",
    ],
)
def test_when_a_body_is_malformed_then_reading_fails_instead_of_guessing(
    fmt: str, body: bytes
) -> None:
    reader = reader_for(fmt)
    with pytest.raises(FormatError):
        list(reader.feed(body))
        list(reader.close())


def test_when_a_line_never_ends_then_the_reader_refuses_to_buffer_it() -> None:
    reader = NdjsonReader(max_record_bytes=1000)
    with pytest.raises(FormatError, match="too long"):
        list(reader.feed(b"x" * 2000))


def test_when_a_csv_field_holds_a_newline_then_the_record_is_kept_whole() -> None:
    reader = CsvReader()
    rows = list(reader.feed(b'a,b\n"line one\nline two",2\n')) + list(reader.close())
    assert rows == [{"a": "line one\nline two", "b": "2"}]


@pytest.mark.parametrize(
    ("body", "required"),
    [
        (b"P00000001,\xe5\xbc\xa0\xe4\xb8\x89,110105198706051230\n", frozenset()),
        (b"record_id,name\nP1,a\n", frozenset({"id_number"})),
        (b"=cmd,name\nP1,a\n", frozenset()),
    ],
    ids=["a first row of data", "a header without the key column", "a formula as a column name"],
)
def test_when_the_first_csv_row_is_not_a_header_of_field_names_then_reading_fails(
    body: bytes, required: frozenset[str]
) -> None:
    reader = CsvReader(required=required)
    with pytest.raises(FormatError, match="header"):
        list(reader.feed(body))
        list(reader.close())


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+86 138", "'+86 138"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-3.5", "-3.5"),
        ("+12", "+12"),
        ("a=b", "a=b"),
    ],
    ids=[
        "equals",
        "plus",
        "minus",
        "at",
        "tab",
        "carriage return",
        "a negative number",
        "a signed number",
        "not at the start",
    ],
)
def test_when_a_csv_cell_would_run_as_a_formula_then_it_is_written_as_text(
    cell: str, written: str
) -> None:
    assert neutralise_formula(cell) == written
