"""Leaked files in every form tracing reads: JSON, NDJSON, CSV, XLSX, text, GBK, a saved response."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from bench.leaks import write
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
