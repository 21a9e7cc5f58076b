"""Record streams: read JSON, NDJSON and CSV exports incrementally and write them back out.

An export is transformed record by record as it streams, so memory stays flat however large
the export is. A reader takes byte chunks and yields whole records; a writer turns records back
into bytes of the same format. A record or line larger than `max_record_bytes` is an error: the
gateway never buffers without bound.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import ijson
import orjson

Record = dict[str, Any]
MAX_RECORD_BYTES = 1 << 20


class FormatError(Exception):
    """A body that is not what its route and content type say it is."""


CONTENT_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
}


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class NdjsonReader:
    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_record_bytes

    def feed(self, chunk: bytes) -> Iterator[Record]:
        self._buf += chunk
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._buf[start:end]).strip()
            start = end + 1
            if line:
                yield _as_record(line)
        del self._buf[:start]
        if len(self._buf) > self._max:
            raise FormatError("NDJSON 单行过长 (NDJSON line too long)")

    def close(self) -> Iterator[Record]:
        line = bytes(self._buf).strip()
        self._buf.clear()
        if line:
            yield _as_record(line)


def _as_record(raw: bytes) -> Record:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"记录不是合法 JSON (record is not valid JSON): {exc}") from None
    if not isinstance(value, dict):
        raise FormatError("记录不是 JSON 对象 (record is not a JSON object)")
    return value


_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class CsvReader:
    """CSV with a header row; a record ends at a newline outside quotes (RFC 4180).

    The first row must be a header: column names, among them every name in `required` (the
    dataset's key). A first row of data would otherwise turn one person's values into column
    names, and the rows after it into records of unknown fields.
    """

    def __init__(
        self, max_record_bytes: int = MAX_RECORD_BYTES, required: frozenset[str] = frozenset()
    ) -> None:
        self._buf = bytearray()
        self._max = max_record_bytes
        self._header: list[str] | None = None
        self._bom_checked = False
        self._required = required

    @property
    def header(self) -> list[str] | None:
        return self._header

    def feed(self, chunk: bytes) -> Iterator[Record]:
        self._buf += chunk
        if not self._bom_checked and len(self._buf) >= 3:
            if self._buf.startswith(b"\xef\xbb\xbf"):
                del self._buf[:3]
            self._bom_checked = True
        start = 0
        scan = 0
        quotes = 0
        while True:
            end = self._buf.find(b"\n", scan)
            if end < 0:
                break
            quotes += self._buf.count(b'"', scan, end)
            scan = end + 1
            if quotes % 2:
                continue  # the newline is inside a quoted field
            yield from self._row(bytes(self._buf[start:end]))
            start = scan
            quotes = 0
        del self._buf[:start]
        if len(self._buf) > self._max:
            raise FormatError("CSV 单条记录过长 (CSV record too long)")

    def close(self) -> Iterator[Record]:
        rest = bytes(self._buf)
        self._buf.clear()
        if rest.strip():
            if rest.count(b'"') % 2:
                raise FormatError("CSV 引号未闭合 (unterminated quote in CSV)")
            yield from self._row(rest)

    def _row(self, raw: bytes) -> Iterator[Record]:
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise FormatError("CSV 不是 UTF-8 编码 (CSV is not UTF-8)") from None
        if not text:
            return
        try:
            row = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration) as exc:
            raise FormatError(f"CSV 行无法解析 (malformed CSV row): {exc}") from None
        if self._header is None:
            if len(set(row)) != len(row) or not all(row):
                raise FormatError("CSV 表头为空或重复 (empty or repeated CSV header)")
            if not all(_COLUMN_NAME.fullmatch(c) for c in row) or not self._required <= set(row):
                raise FormatError(
                    "CSV 首行不是字段名表头 (the first CSV row is not a header of field names)"
                )
            self._header = row
            return
        if len(row) != len(self._header):
            raise FormatError("CSV 列数与表头不符 (CSV row width differs from its header)")
        yield dict(zip(self._header, row, strict=True))


class JsonExportReader:
    """A JSON export envelope `{"dataset": ..., "records": [ ... ]}`, read incrementally."""

    def __init__(self, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self._items: list[Record] = []
        self._coro = ijson.items_coro(_ListSink(self._items), "records.item", use_float=True)
        self._since_record = 0  # bytes fed since the last whole record came out
        self._max = max_record_bytes

    def feed(self, chunk: bytes) -> Iterator[Record]:
        if not chunk:
            return  # an empty chunk would read as the end of the document
        # Fed in slices, so that one record (or anything else the parser holds while it waits
        # for the end of a value) larger than the limit is refused before it is all buffered.
        for at in range(0, len(chunk), 1 << 16):
            piece = chunk[at : at + (1 << 16)]
            try:
                self._coro.send(piece)
            except ijson.JSONError as exc:
                raise FormatError(f"导出不是合法 JSON (export is not valid JSON): {exc}") from None
            if self._items:
                self._since_record = 0
            else:
                self._since_record += len(piece)
                if self._since_record > self._max:
                    raise FormatError("导出中单条记录过大 (export record too large)")
            yield from self._drain()

    def close(self) -> Iterator[Record]:
        try:
            self._coro.close()
        except ijson.JSONError as exc:
            raise FormatError(f"导出 JSON 不完整 (export JSON incomplete): {exc}") from None
        yield from self._drain()

    def _drain(self) -> Iterator[Record]:
        items, self._items[:] = list(self._items), []
        for item in items:
            if not isinstance(item, dict):
                raise FormatError("导出记录不是 JSON 对象 (export record is not a JSON object)")
            yield item


class _ListSink:
    def __init__(self, items: list[Record]) -> None:
        self.items = items

    def send(self, value: Record) -> None:
        self.items.append(value)


def reader_for(
    fmt: str, required: frozenset[str] = frozenset()
) -> NdjsonReader | CsvReader | JsonExportReader:
    if fmt == "ndjson":
        return NdjsonReader()
    if fmt == "csv":
        return CsvReader(required=required)
    if fmt == "json":
        return JsonExportReader()
    raise FormatError(f"不支持的导出格式 (unsupported export format): {fmt}")


class RecordWriter:
    """Writes records in one format; JSON gets the export envelope around them."""

    def __init__(self, fmt: str, dataset: str) -> None:
        self.fmt = fmt
        self.dataset = dataset
        self._started = False
        self._columns: list[str] | None = None
        self._first = True

    def start(self) -> bytes:
        self._started = True
        if self.fmt == "json":
            return b'{"dataset":' + orjson.dumps(self.dataset) + b',"records":['
        return b""

    def write(self, records: list[Record]) -> bytes:
        if not records:
            return b""
        if self.fmt == "ndjson":
            return b"".join(orjson.dumps(r) + b"\n" for r in records)
        if self.fmt == "json":
            parts = [orjson.dumps(r) for r in records]
            sep = b"" if self._first else b","
            self._first = False
            return sep + b",".join(parts)
        out = io.StringIO()
        # CRLF as RFC 4180 has it; it also makes the writer quote a lone CR inside a field.
        writer = csv.writer(out, lineterminator="\r\n")
        if self._columns is None:
            self._columns = list(records[0])
            writer.writerow([neutralise_formula(c) for c in self._columns])
        for r in records:
            writer.writerow([neutralise_formula(_csv_cell(r.get(c))) for c in self._columns])
        return out.getvalue().encode("utf-8")

    def finish(self) -> bytes:
        if self.fmt == "json":
            return b"]}"
        return b""


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode("utf-8")


# A cell that starts with one of these is read as a formula by spreadsheet programs (CSV
# injection): =HYPERLINK(...) can send the row to a third party when the file is opened.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def neutralise_formula(cell: str) -> str:
    """A cell that a spreadsheet would run as a formula, prefixed with ' (OWASP's advice).

    A plain number (-3.5) is left alone: spreadsheets read it as a number, and the prefix
    would turn weather readings into text.
    """
    if cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell
