"""CSV exports of the access log: one row per event, readable by spreadsheets, never a formula."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from gateway.audit.csvexport import COLUMNS, csv_lines, safe_cell
from tests.factories import access_event


def rows(events: list[dict[str, object]]) -> list[list[str]]:
    text = "".join(csv_lines(events))
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def doc(**kw: object) -> dict[str, object]:
    return dict(orjson.loads(orjson.dumps(access_event(1, **kw).to_document())))


def test_each_event_is_one_row_under_a_bilingual_header() -> None:
    table = rows([doc(fields=("name", "id_number"), records=2), doc(decision="deny")])
    assert table[0] == [header for header, _ in COLUMNS]
    assert len(table) == 3
    row = dict(zip(table[0], table[1], strict=True))
    assert row["字段 fields"] == "name;id_number"
    assert row["记录数 records"] == "2" and row["人员 user"] == "mz_caseworker"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-cmd", "'-cmd"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("a=b", "a=b"),
        ("民政局", "民政局"),
    ],
    ids=[
        "a formula",
        "a plus",
        "a minus",
        "an at sign",
        "a tab",
        "an equals sign inside",
        "Chinese",
    ],
)
def test_when_a_value_would_start_a_formula_then_it_is_quoted(value: str, cell: str) -> None:
    assert safe_cell(value) == cell
    assert rows([doc(user_id=value)])[1][4] == cell
