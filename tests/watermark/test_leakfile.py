"""Leaked files in every form tracing reads: JSON, NDJSON, CSV, XLSX, text, GBK, a saved response."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest

from bench.leaks import write
from gateway.watermark import leakfile
from gateway.watermark.leakfile import HEAD_SIZE, LeakError, read_leak, read_leak_bytes_stream

RECORDS = [
    {
        "record_id": f"P{i:08d}",
        "name": "王五",
        "address": f"北京市朝阳区望京西路{i}号",
        "cost": 1.5 + i,
    }
    for i in range(1, 6)
]


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv", "xlsx", "txt"])
def test_every_format_reads_into_the_same_rows(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"leak.{fmt}"
    write(RECORDS, path, fmt)
    table = read_leak(path)
    assert table.total_rows == len(RECORDS)
    keys = {str(row[0]) for row in table.rows}
    assert keys == {r["record_id"] for r in RECORDS}
    flat = {str(c) for row in table.rows for c in row}
    assert "北京市朝阳区望京西路3号" in flat


@pytest.mark.parametrize(
    ("content", "rows"),
    [
        (orjson.dumps({"dataset": "population", "records": RECORDS}), 5),
        (orjson.dumps(RECORDS[0]), 1),
        ("record_id;name\nP00000001;王五\nP00000002;李四\n".encode(), 2),
        ("P00000001,王五\nP00000002,李四\n".encode(), 2),
        ("record_id,name\nP00000001,王五\n".encode("gb18030"), 1),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: 01X\r\n\r\n"
            + orjson.dumps({"records": RECORDS}),
            5,
        ),
    ],
    ids=[
        "the export envelope",
        "one record object",
        "semicolons",
        "a CSV without a header row",
        "GBK, as Chinese spreadsheets save it",
        "a saved HTTP response (curl -i)",
    ],
)
def test_leaks_in_the_shapes_leakers_leave_them_are_read(
    tmp_path: Path, content: bytes, rows: int
) -> None:
    path = tmp_path / "leak"
    path.write_bytes(content)
    table = read_leak(path)
    assert table.total_rows == rows
    assert any(str(c) == "P00000001" for row in table.rows for c in row)


def test_a_saved_response_keeps_its_headers_for_the_signature(tmp_path: Path) -> None:
    path = tmp_path / "response.txt"
    path.write_bytes(
        b"HTTP/1.1 200 OK\r\nSignature: x=:AA==:\r\n\r\n" + orjson.dumps({"records": RECORDS})
    )
    [(status, headers, body)] = read_leak(path).responses
    assert status == 200 and headers["Signature"] == "x=:AA==:" and body.startswith(b"{")


def test_a_huge_leak_is_sampled_not_held_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    path.write_bytes(
        b"".join(orjson.dumps({"record_id": f"P{i:08d}"}) + b"\n" for i in range(5000))
    )
    table = read_leak(path, max_rows=100)
    assert table.total_rows == 5000 and len(table.rows) == 100
    assert len({row[0] for row in table.rows}) == 100


@pytest.mark.parametrize(
    "content",
    [b"", b"PK\x03\x04not really a workbook"],
    ids=["an empty file", "a damaged workbook"],
)
def test_an_unreadable_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "leak"
    path.write_bytes(content)
    with pytest.raises(LeakError):
        read_leak(path)


def test_a_csv_field_past_the_csv_field_limit_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "leak.csv"
    path.write_bytes(
        b"record_id,name,notes\nP00000001,a,b\nP00000002,c,b\n"
        + b'P00000003,d,"'
        + b"x" * 200_000
        + b'"\n'
    )
    with pytest.raises(LeakError, match="cannot parse the CSV"):
        read_leak(path)


def test_saved_responses_nested_without_end_are_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "response.txt"
    path.write_bytes(b"HTTP/1.1 200 OK\r\n\r\n" * 5000 + orjson.dumps({"records": RECORDS}))
    with pytest.raises(LeakError, match="nested more than"):
        read_leak(path)
    # One saved response inside another is still read.
    path.write_bytes(b"HTTP/1.1 200 OK\r\n\r\n" * 2 + orjson.dumps({"records": RECORDS}))
    table = read_leak(path)
    assert table.total_rows == len(RECORDS) and len(table.responses) == 2


class _Reads(io.BytesIO):
    """A file that remembers the largest single read asked of it (-1: the whole file)."""

    largest = 0

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            self.largest = -1
        elif self.largest >= 0:
            self.largest = max(self.largest, size)
        return super().read(size)


def test_a_large_ndjson_file_is_never_read_whole_into_memory() -> None:
    data = b"".join(
        orjson.dumps({"record_id": f"P{i:08d}", "notes": "x" * 40}) + b"\n" for i in range(5000)
    )
    assert len(data) > 4 * HEAD_SIZE
    stream = _Reads(data)
    table = read_leak_bytes_stream(stream, data[:HEAD_SIZE], 100)
    assert table.format == "ndjson" and table.total_rows == 5000
    assert 0 <= stream.largest <= HEAD_SIZE + 1
    # A single small JSON record is still read as JSON.
    small = orjson.dumps({"record_id": "P00000001", "name": "张三"})
    one = read_leak_bytes_stream(io.BytesIO(small), small, 100)
    assert one.format == "json" and one.rows == [["P00000001", "张三"]]


# -- workbooks built part by part, to say exactly what their XML declares ----------------------

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_SHEET_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
_STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"


def workbook(
    rows: str,
    strings: Sequence[str] | bytes = (),
    *,
    dimension: str = "A1:D4",
    strings_part: str = "xl/sharedStrings.xml",
    cut_sheet: int | None = None,
) -> bytes:
    """An XLSX whose one sheet holds `rows` (<row> elements) and whose shared strings are `strings`."""
    sheet = (
        f'<worksheet xmlns="{_MAIN}"><dimension ref="{dimension}"/><sheetData>{rows}'
        "</sheetData></worksheet>"
    ).encode()
    if cut_sheet is not None:
        sheet = sheet[:cut_sheet]
    if isinstance(strings, bytes):
        table = strings
    else:
        items = "".join(f"<si><t>{s}</t></si>" for s in strings)
        table = f'<sst xmlns="{_MAIN}" count="{len(strings)}">{items}</sst>'.encode()
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_SHEET_TYPE}"/>'
            f'<Override PartName="/{strings_part}" ContentType="{_STRINGS_TYPE}"/></Types>'
        ).encode(),
        "_rels/.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"
        ).encode(),
        "xl/workbook.xml": (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
        ).encode(),
        "xl/_rels/workbook.xml.rels": (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            "</Relationships>"
        ).encode(),
        "xl/worksheets/sheet1.xml": sheet,
        strings_part: table,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return out.getvalue()


def people(n: int, *, far: str = "") -> str:
    """A header row and `n` records in shared strings 0-3 and numbers; `far` appended to each row."""
    head = '<row r="1">' + "".join(f'<c r="{c}1" t="s"><v>{i}</v></c>' for i, c in enumerate("ABC"))
    body = "".join(
        f'<row r="{i + 2}"><c r="A{i + 2}" t="inlineStr"><is><t>P{i:08d}</t></is></c>'
        f'<c r="B{i + 2}" t="s"><v>3</v></c><c r="C{i + 2}"><v>{i}.5</v></c>{far}</row>'
        for i in range(n)
    )
    return head + far + "</row>" + body


HEADER = ["record_id", "name", "cost", "王五"]


def test_a_workbook_declaring_the_largest_sheet_reads_rows_of_their_real_width(
    tmp_path: Path,
) -> None:
    # A <dimension> of A1:XFD1048576 made every row 16,384 cells wide (392 MB, 10.6 s).
    path = tmp_path / "leak.xlsx"
    path.write_bytes(workbook(people(3000), HEADER, dimension="A1:XFD1048576"))
    assert path.stat().st_size < 64 << 10
    read_leak(path)  # openpyxl imported and warm
    started = time.perf_counter()
    table = read_leak(path)
    assert time.perf_counter() - started < 1.0
    assert table.columns == ["record_id", "name", "cost"] and table.partial is None
    assert table.total_rows == 3000 and {len(row) for row in table.rows} == {3}
    assert table.rows[7] == ["P00000007", "王五", 7.5]


@pytest.mark.parametrize(
    ("rows", "total"),
    [
        (people(20) + '<row r="1048576"><c r="XFD1048576" t="s"><v>3</v></c></row>', 20),
        (people(3000, far='<c r="XFD9" t="s"><v>3</v></c>'), 3000),
    ],
    ids=["one cell at XFD1048576", "a cell at XFD in every row"],
)
def test_cells_at_the_far_end_of_the_sheet_cost_nothing(
    tmp_path: Path, rows: str, total: int
) -> None:
    path = tmp_path / "leak.xlsx"
    path.write_bytes(workbook(rows, HEADER, dimension="A1:XFD1048576"))
    read_leak(path)
    started = time.perf_counter()
    table = read_leak(path)
    assert time.perf_counter() - started < 1.0
    assert table.total_rows == total and {len(row) for row in table.rows} == {3}
    assert table.partial is not None and "past column 256" in table.partial


def test_a_zip_bomb_in_the_shared_strings_is_refused_before_it_is_unpacked(
    tmp_path: Path,
) -> None:
    bomb = f'<sst xmlns="{_MAIN}"><si><t>'.encode() + b"A" * (40 << 20) + b"</t></si></sst>"
    path = tmp_path / "leak.xlsx"
    path.write_bytes(workbook(people(3), bomb))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(LeakError, match="ZIP bomb"):
            read_leak(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("strings_part", ["xl/sharedStrings.xml", "xl/worksheets/strings.xml"])
def test_a_part_read_whole_is_bounded_wherever_it_lies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strings_part: str
) -> None:
    monkeypatch.setattr(leakfile, "MAX_XLSX_PART", 4096)
    path = tmp_path / "leak.xlsx"
    path.write_bytes(
        workbook(people(3), [*HEADER, *(f"地址{i}" for i in range(500))], strings_part=strings_part)
    )
    with pytest.raises(LeakError, match="save it as CSV"):
        read_leak(path)
    # The sheets themselves are streamed: a sheet larger than that is read.
    path.write_bytes(workbook(people(300), HEADER))
    assert read_leak(path).total_rows == 300


def test_shared_strings_are_read_as_excel_shows_them(tmp_path: Path) -> None:
    rich = (
        f'<sst xmlns="{_MAIN}"><si><t>record_id</t></si><si><t>name</t></si><si><t>cost</t></si>'
        "<si><r><rPr><b/></rPr><t>王</t></r><r><t>五</t></r><rPh><t>wang wu</t></rPh></si></sst>"
    ).encode()
    path = tmp_path / "leak.xlsx"
    path.write_bytes(workbook(people(2), rich))
    assert read_leak(path).rows == [["P00000000", "王五", 0.5], ["P00000001", "王五", 1.5]]


def test_a_workbook_cut_off_inside_a_sheet_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "leak.xlsx"
    path.write_bytes(workbook(people(200), HEADER, cut_sheet=9000))
    with pytest.raises(LeakError, match=r"damaged file.*Sheet1"):
        read_leak(path)


@pytest.mark.parametrize("index", ["-1", "99"])
def test_a_shared_string_index_outside_the_table_is_a_clear_error(
    tmp_path: Path, index: str
) -> None:
    # -1 is no string of the workbook: never read as the table's last one.
    rows = f'<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>{index}</v></c></row>'
    path = tmp_path / "leak.xlsx"
    path.write_bytes(workbook(rows, HEADER))
    with pytest.raises(LeakError, match=r"damaged file.*Sheet1"):
        read_leak(path)


# -- JSON cut off, NDJSON with lines past the limit, nesting past the limit --------------------


def export(n: int) -> bytes:
    """The gateway's own JSON export: one line, an envelope around the records."""
    records = [
        {
            "record_id": f"P{i:08d}",
            "name": "王五",
            "address": f"北京市朝阳区望京西路{i}号",
            "notes": "x" * 1000,
        }
        for i in range(n)
    ]
    return orjson.dumps({"dataset": "population", "records": records})


def peak_of(read: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = read()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cut", ["mid-record", "two bytes short"])
def test_an_export_cut_off_keeps_the_records_before_the_cut(cut: str) -> None:
    data = export(3000)
    last = data.rindex(b'{"record_id"')
    data = data[: last + 600] if cut == "mid-record" else data[:-2]
    table, peak = peak_of(lambda: read_leak_bytes_stream(io.BytesIO(data), data[:HEAD_SIZE], 100))
    assert isinstance(table, leakfile.LeakTable)
    assert table.format == "json" and table.total_rows >= 2999 and len(table.rows) == 100
    assert table.partial is not None and f"after record {table.total_rows:,}" in table.partial
    # Read as it streams: never the whole file (3.3 MB) at once.
    assert peak < len(data) // 4


def test_ndjson_lines_past_the_limit_are_skipped_without_being_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leakfile, "MAX_LINE", 1 << 16)
    data = (
        b'{"record_id": "P00000001"}\n'
        + b'{"record_id": "P00000002", "notes": "'
        + b"x" * (8 << 20)
        + b'"}\n'
        + b'{"record_id": "P00000003"}\n{"record_id": \n'
    )
    table, peak = peak_of(lambda: read_leak_bytes_stream(io.BytesIO(data), data[:HEAD_SIZE], 100))
    assert isinstance(table, leakfile.LeakTable)
    assert table.format == "ndjson" and table.rows == [["P00000001"], ["P00000003"]]
    assert table.partial is not None
    assert "skipped 1 lines longer than 65,536 characters" in table.partial
    assert "skipped 1 lines that are not valid JSON" in table.partial
    assert peak < 1 << 20
    # A file with no line short enough says why nothing was read.
    one = b'{"meta": "' + b"x" * (1 << 20)
    with pytest.raises(LeakError, match=r"neither JSON nor NDJSON.*skipped 1 lines longer"):
        read_leak_bytes_stream(io.BytesIO(one), one[:HEAD_SIZE], 100)


def test_json_nested_past_the_limit_is_refused_as_soon_as_it_is_met() -> None:
    # ijson.items keeps a path string per level: 100,000 levels took 23 GB before it was killed.
    deep = b'[{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]"
    started = time.perf_counter()
    with pytest.raises(LeakError, match="nested more than 64 levels"):
        peak_of(lambda: read_leak_bytes_stream(io.BytesIO(deep), deep[:HEAD_SIZE], 100))
    assert time.perf_counter() - started < 1.0
    # Nesting within the limit is one cell, as JSON text.
    fine = b'[{"record_id": "P00000001", "a": {"b": [1, {"c": 2}]}}]'
    table = read_leak_bytes_stream(io.BytesIO(fine), fine, 100)
    assert table.rows == [["P00000001", '{"b":[1,{"c":2}]}']]


# -- encodings Windows saves in, arrays as rows, and nothing read is never a clean table --------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_excel_unicode_text_reads_as_the_csv_it_was_saved_from(
    tmp_path: Path, encoding: str
) -> None:
    # Excel's "Unicode Text" (*.txt) is UTF-16 LE with a BOM, tab-separated, CRLF.
    original = tmp_path / "leak.csv"
    write(RECORDS, original, "csv")
    copy = tmp_path / "leak.txt"
    with original.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    out = io.StringIO()
    csv.writer(out, delimiter="\t", lineterminator="\r\n").writerows(rows)
    copy.write_bytes(out.getvalue().encode(encoding))
    expected, table = read_leak(original), read_leak(copy)
    assert table.columns == expected.columns == list(RECORDS[0])
    assert table.rows == expected.rows and table.total_rows == len(RECORDS)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "gb18030"])
def test_json_in_the_encodings_windows_saves_it_in(tmp_path: Path, encoding: str) -> None:
    # PowerShell 5's Out-File writes UTF-16 with a BOM.
    path = tmp_path / "leak.json"
    path.write_bytes(orjson.dumps({"records": RECORDS}).decode().encode(encoding))
    table = read_leak(path)
    assert table.format == "json" and table.total_rows == len(RECORDS)
    assert table.rows[2] == ["P00000003", "王五", "北京市朝阳区望京西路3号", 4.5]


@pytest.mark.parametrize(
    ("content", "columns"),
    [
        (
            b'[["record_id", "name"], ["P00000001", "\xe7\x8e\x8b"], ["P00000002", "x"]]',
            ["record_id", "name"],
        ),
        (b'[["P00000001", "\xe7\x8e\x8b"], ["P00000002", "x"]]', ["column1", "column2"]),
        (b'{"rows": [["P00000001", "\xe7\x8e\x8b"], ["P00000002", "x"]]}', ["column1", "column2"]),
        (
            b'["record_id", "name"]\n["P00000001", "\xe7\x8e\x8b"]\n["P00000002", "x"]\n',
            ["record_id", "name"],
        ),
    ],
    ids=["with a header row", "without one", "in an envelope", "JSON Lines"],
)
def test_arrays_of_arrays_are_rows(tmp_path: Path, content: bytes, columns: list[str]) -> None:
    path = tmp_path / "leak.json"
    path.write_bytes(content)
    table = read_leak(path)
    assert table.columns == columns
    assert table.rows == [["P00000001", "王"], ["P00000002", "x"]]


@pytest.mark.parametrize(
    "content",
    [b'[["record_id", "name"]]', b"[[], []]", b"[{}]", b"[]", b'{"records": []}'],
)
def test_json_without_records_is_an_error_not_an_empty_table(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "leak.json"
    path.write_bytes(content)
    with pytest.raises(LeakError, match="no records"):
        read_leak(path)


# -- a damaged file is a LeakError saying so, whatever broke inside -----------------------------


def deep_json(levels: int) -> bytes:
    return b'{"records": [{"record_id": "P00000001", "a": ' + b"[" * levels + b"]" * levels + b"}]}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (workbook(people(200), HEADER, cut_sheet=9000), r"damaged file.*Sheet1.*near row"),
        (
            workbook(people(3) + '<row r="9"><c r="A9" t="s"><v>99</v></c></row>', HEADER),
            r"damaged file.*near row 9",
        ),
        (deep_json(300), "damaged file.*nested more than 64 levels"),
        (b"PK\x03\x04not really a workbook", "cannot read the workbook"),
    ],
    ids=[
        "a sheet cut off",
        "a shared string that is not there",
        "JSON nested 300 levels",
        "not a ZIP",
    ],
)
def test_a_damaged_file_is_a_leak_error_saying_so(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "leak"
    path.write_bytes(content)
    with pytest.raises(LeakError, match=message):
        read_leak(path)
    with pytest.raises(LeakError, match=message):
        leakfile.read_leak_bytes(content)


def test_anything_unforeseen_while_reading_is_a_damaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise KeyError("sheet")

    monkeypatch.setattr(leakfile, "_delimited", broken)
    path = tmp_path / "leak.csv"
    write(RECORDS, path, "csv")
    with pytest.raises(LeakError, match=r"^文件已损坏 \(damaged file\): KeyError: 'sheet'$"):
        read_leak(path)
    assert "KeyError" in caplog.text  # the details are logged


def test_cells_past_column_256_are_not_held_in_any_format(tmp_path: Path) -> None:
    path = tmp_path / "leak.csv"
    path.write_text(
        "".join(f"P{i:08d},王五" + "," * 5000 + "x\n" for i in range(200)), encoding="utf-8"
    )
    table = read_leak(path)
    assert table.total_rows == 200 and {len(row) for row in table.rows} == {256}
    assert table.partial is not None and "past column 256" in table.partial


def _mark(payload: int) -> str:
    """An invisible mark carrying `payload` (as the marker writes one; not checked here)."""
    chars = ("\u200b", "\u200c", "\u200d", "\u2060")
    return "".join(chars[(payload >> (2 * i)) & 3] for i in reversed(range(48)))


@pytest.mark.parametrize("fmt", ["xlsx", "json records", "json arrays", "csv"])
def test_an_invisible_mark_past_column_256_is_still_read(tmp_path: Path, fmt: str) -> None:
    payload = (0xABCDEF << 32) | 0x1234
    hidden = f"备注{_mark(payload)}"
    path = tmp_path / f"leak.{fmt.split()[0]}"
    if fmt == "xlsx":
        far = f'<c r="XFD2" t="inlineStr"><is><t>{hidden}</t></is></c>'
        rows = people(5).replace("</row>", far + "</row>", 2)  # the header's and the first row's
        path.write_bytes(workbook(rows, HEADER, dimension="A1:XFD6"))
    elif fmt == "json records":
        wide = [{**{f"f{n}": n for n in range(300)}, "note": hidden} for _ in range(3)]
        path.write_bytes(orjson.dumps(wide))
    elif fmt == "json arrays":
        path.write_bytes(orjson.dumps([[*range(300), hidden] for _ in range(3)]))
    else:
        path.write_text("".join("P1,王五" + "," * 300 + hidden + "\n" for _ in range(3)))
    table = read_leak(path)
    assert table.partial is not None and "256" in table.partial  # the cells are not kept ...
    assert payload in table.marks  # ... but their marks are read


@pytest.mark.parametrize("fmt", ["csv", "text"])
def test_a_line_without_end_is_skipped_without_being_held(tmp_path: Path, fmt: str) -> None:
    sep = "," if fmt == "csv" else "  "
    rows = [f"P{i:08d}{sep}王五{sep}{i}.5" for i in range(50)]
    # 48 Mi characters with no line end, two invisible marks in it: one at a place where a
    # reader's chunk of it may end, one at its very end.
    payloads = [(0xFEED << 32) | 7, (0xBEEF << 32) | 9]
    endless = "x" * ((4 << 20) + (64 << 10) - 20) + _mark(payloads[0])
    endless += "x" * ((48 << 20) - len(endless) - 48) + _mark(payloads[1])
    path = tmp_path / "leak.txt"
    path.write_text("\n".join(rows[:25]) + "\n" + endless + "\n" + "\n".join(rows[25:]) + "\n")
    del endless
    tracemalloc.start()
    try:
        table = read_leak(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.format == fmt and table.total_rows == 50
    assert table.partial is not None and "skipped 1 lines longer than" in table.partial
    assert peak < 24 << 20, f"{peak / (1 << 20):.0f} MiB held"  # the line alone would be 48
    assert set(payloads) <= table.marks  # the line is skipped, its marks are read
