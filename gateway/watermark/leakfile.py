"""Reading a leaked file for tracing: JSON, NDJSON, CSV, XLSX or plain text, into rows of cells.

A leak comes in whatever shape the leaker left it: renamed or missing headers, another
delimiter, GBK instead of UTF-8, a spreadsheet, a saved HTTP response. Everything is read into
one table of cells; column names are kept only for display, since tracing aligns columns by
their content. Memory stays bounded: past `max_rows` a uniform sample of rows is kept
(reservoir sampling), while every cell of every row is still read for zero-width marks.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from gateway.watermark.codes import read_invisible

__all__ = ["LeakError", "LeakTable", "read_leak"]

Progress = Callable[[int], None]  # called with the number of bytes just read
MAX_ROWS = 100_000
HEAD_SIZE = 1 << 16  # read first to tell the format
MAX_HTTP_NESTING = 4  # a saved response inside a saved response, at most this deep
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060]")
_DIGIT_RUN = re.compile(r"\d{3}")  # P00000001 is a record key, not a column name
_HEADER_NAME = re.compile(r"[^\W\d][\w .()（）/-]{0,63}")


class LeakError(Exception):
    """The file cannot be read as any of the formats tracing understands."""


@dataclass
class LeakTable:
    format: str
    columns: list[str]
    rows: list[list[Any]]  # the rows kept (all of them, or a uniform sample)
    total_rows: int = 0
    marks: set[int] = field(default_factory=set)  # zero-width payloads found in any cell
    responses: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)

    def column(self, index: int) -> list[Any]:
        return [row[index] if index < len(row) else None for row in self.rows]


class _Sink:
    """Collects rows with reservoir sampling and reads every cell for invisible marks."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows: list[list[Any]] = []
        self.seen = 0
        self.marks: set[int] = set()
        self._rng = random.Random(0x5EED)  # a fixed seed: the same file traces the same way

    def add(self, row: list[Any]) -> None:
        for cell in row:
            if isinstance(cell, str) and _ZERO_WIDTH.search(cell):
                self.marks.update(read_invisible(cell))
        self.seen += 1
        if len(self.rows) < self.max_rows:
            self.rows.append(row)
            return
        at = self._rng.randrange(self.seen)
        if at < self.max_rows:
            self.rows[at] = row


def read_leak(path: Path, max_rows: int = MAX_ROWS, progress: Progress | None = None) -> LeakTable:
    """Read `path` in whichever supported format its content shows."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD_SIZE)
    except OSError as exc:
        raise LeakError(f"无法读取文件 (cannot read the file): {exc}") from None
    if not head:
        raise LeakError("文件为空 (the file is empty)")
    if head.startswith(b"PK\x03\x04"):
        return _xlsx(path, max_rows, progress)
    with _counting(path, progress) as stream:
        return read_leak_bytes_stream(stream, head, max_rows)


def read_leak_bytes(data: bytes, max_rows: int = MAX_ROWS, *, nesting: int = 0) -> LeakTable:
    """The same, for an uploaded file held in memory (the admin API and the console)."""
    if data.startswith(b"PK\x03\x04"):
        return _xlsx(io.BytesIO(data), max_rows, None)
    if not data:
        raise LeakError("文件为空 (the file is empty)")
    return read_leak_bytes_stream(io.BytesIO(data), data[:HEAD_SIZE], max_rows, nesting=nesting)


def read_leak_bytes_stream(
    stream: IO[bytes], head: bytes, max_rows: int, *, nesting: int = 0
) -> LeakTable:
    encoding = _encoding(head)
    text_head = head.decode(encoding, errors="replace").lstrip("\ufeff").lstrip()
    if text_head.startswith("HTTP/"):
        return read_http_response(stream.read(), max_rows, nesting=nesting)
    if text_head[:1] in ("[", "{"):
        try:
            return _json(stream, text_head, max_rows)
        except LeakError:
            stream.seek(0)
            return _ndjson(stream, encoding, max_rows)
    return _delimited(stream, encoding, text_head, max_rows)


def _encoding(head: bytes) -> str:
    """UTF-8 (with or without a BOM), else GB18030, which Chinese spreadsheet exports use."""
    try:
        head.decode("utf-8")
        return "utf-8-sig"
    except UnicodeDecodeError as exc:
        if exc.start > len(head) - 4:
            return "utf-8-sig"  # a character cut by the 64 KiB window
    try:
        head.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        return "utf-8-sig"


# -- JSON and NDJSON ---------------------------------------------------------------------------


class _Columns:
    """Column names in order of first appearance, for records that are JSON objects."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def row(self, record: dict[str, Any]) -> list[Any]:
        for name in record:
            if name not in self.names:
                self.names[name] = len(self.names)
        out: list[Any] = [None] * len(self.names)
        for name, value in record.items():
            out[self.names[name]] = _cell(value)
        return out


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return orjson.dumps(value, default=str).decode()


def _json(stream: IO[bytes], head: str, max_rows: int) -> LeakTable:
    sink, columns = _Sink(max_rows), _Columns()
    start = stream.tell()
    found = False
    # Each prefix tried is a pass over the file: an array is read once, an object at most
    # once per envelope name.
    prefixes = ("item",) if head.startswith("[") else ("records.item", "data.item", "rows.item")
    for prefix in prefixes:
        stream.seek(start)
        try:
            for item in ijson.items(stream, prefix, use_float=True):
                found = True
                if isinstance(item, dict):
                    sink.add(columns.row(item))
        except ijson.JSONError as exc:
            if found:
                raise LeakError(f"JSON 不完整 (JSON incomplete): {exc}") from None
            break
        if found:
            break
    if not found:
        stream.seek(start)
        # One record as a whole document: only when the file is no bigger than the head
        # already read. A larger file is not read whole into memory here; it is most likely
        # NDJSON, which the caller reads line by line when this fails.
        data = stream.read(HEAD_SIZE + 1)
        if len(data) > HEAD_SIZE:
            raise LeakError("不是单个 JSON 文档 (not a single JSON document)")
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise LeakError(f"不是合法 JSON (not valid JSON): {exc}") from None
        if not isinstance(document, dict):
            raise LeakError("JSON 中没有记录 (no records in the JSON)")
        sink.add(columns.row(document))
    return _table("json", list(columns.names), sink)


def _ndjson(stream: IO[bytes], encoding: str, max_rows: int) -> LeakTable:
    sink, columns = _Sink(max_rows), _Columns()
    bad = 0
    for line in io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline=None):
        line = line.strip()
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            sink.add(columns.row(record))
    if sink.seen == 0:
        raise LeakError("不是 JSON 或 NDJSON (neither JSON nor NDJSON)")
    return _table("ndjson", list(columns.names), sink)


# -- CSV and plain text ------------------------------------------------------------------------


def _delimited(stream: IO[bytes], encoding: str, head: str, max_rows: int) -> LeakTable:
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline="")
    sample = head[: 1 << 15]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;|")
        fmt = "csv"
    except csv.Error:
        dialect = None
        fmt = "text"
    rows: Iterable[list[str]]
    if dialect is not None:
        rows = csv.reader(text, dialect)
    else:
        rows = (_split_text(line) for line in text)
    sink = _Sink(max_rows)
    columns: list[str] = []
    first = True
    try:
        for row in rows:
            row = [c.strip("\ufeff") for c in row]
            if not any(c.strip() for c in row):
                continue
            if first:
                first = False
                if _looks_like_header(row):
                    columns = row
                    continue
            sink.add([_neutral(c) for c in row])
    except csv.Error as exc:
        # A field past the csv module's limit (an unclosed quote swallowing the rest of the
        # file, or one enormous cell): not a table tracing can read.
        raise LeakError(
            f"CSV 第 {sink.seen + 1} 行附近无法解析 (cannot parse the CSV near row "
            f"{sink.seen + 1}): {exc}"
        ) from None
    if sink.seen == 0:
        raise LeakError("文件中没有数据行 (no rows of data in the file)")
    if not columns:
        width = max(len(r) for r in sink.rows)
        columns = [f"column{i + 1}" for i in range(width)]
    return _table(fmt, columns, sink)


def _split_text(line: str) -> list[str]:
    line = line.rstrip("\r\n")
    for sep in ("\t", "|", "，", ","):
        if sep in line:
            return [c.strip() for c in line.split(sep)]
    return re.split(r"\s{2,}|\s", line.strip())


def _neutral(cell: str) -> str:
    # A CSV written for spreadsheets may carry the formula guard: '-3.5 is the value -3.5.
    return cell[1:] if cell.startswith("'") and len(cell) > 1 else cell


def _looks_like_header(row: list[str]) -> bool:
    """Names, not values: every cell a short word, none a number, an identifier or a date."""
    return all(
        c and _HEADER_NAME.fullmatch(c.strip()) and not _DIGIT_RUN.search(c) for c in row
    ) and len(set(row)) == len(row)


def read_http_response(data: bytes, max_rows: int, *, nesting: int = 0) -> LeakTable:
    """A saved HTTP response (`curl -i`): its body is read, its headers kept for the signature.

    A body that is itself a saved response is read too, up to MAX_HTTP_NESTING deep."""
    if nesting >= MAX_HTTP_NESTING:
        raise LeakError(
            f"HTTP 响应嵌套超过 {MAX_HTTP_NESTING} 层 (saved HTTP responses nested more than "
            f"{MAX_HTTP_NESTING} deep)"
        )
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise LeakError("HTTP 响应首行无法解析 (cannot read the HTTP status line)") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip():
            key = name.strip()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    inner = (
        read_leak_bytes(body, max_rows, nesting=nesting + 1)
        if body.strip()
        else LeakTable("http", [], [])
    )
    inner.responses.append((status, headers, body))
    return inner


# -- XLSX --------------------------------------------------------------------------------------


def _xlsx(source: Path | IO[bytes], max_rows: int, progress: Progress | None) -> LeakTable:
    from openpyxl import load_workbook

    # A file object, not a path: openpyxl judges a path by its extension, and an upload has none.
    handle = source.open("rb") if isinstance(source, Path) else source
    try:
        book = load_workbook(handle, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged workbook
        handle.close()
        raise LeakError(f"无法读取 XLSX (cannot read the workbook): {exc}") from None
    sink = _Sink(max_rows)
    columns: list[str] = []
    try:
        for sheet in book.worksheets:
            first = True
            for values in sheet.iter_rows(values_only=True):
                row = [_cell(v) for v in values]
                if not any(v not in (None, "") for v in row):
                    continue
                if first:
                    first = False
                    texts = [str(v) if v is not None else "" for v in row]
                    if all(isinstance(v, str) for v in row if v is not None) and _looks_like_header(
                        texts
                    ):
                        columns = columns or texts
                        continue
                sink.add(row)
                if progress is not None and sink.seen % 1000 == 0:
                    progress(0)
    finally:
        book.close()
        handle.close()
    if sink.seen == 0:
        raise LeakError("工作簿中没有数据行 (no rows of data in the workbook)")
    if not columns:
        columns = [f"column{i + 1}" for i in range(max(len(r) for r in sink.rows))]
    return _table("xlsx", columns, sink)


def _table(fmt: str, columns: list[str], sink: _Sink) -> LeakTable:
    return LeakTable(
        format=fmt, columns=columns, rows=sink.rows, total_rows=sink.seen, marks=sink.marks
    )


class _Counting(io.RawIOBase):
    """A file read through, reporting progress in bytes."""

    def __init__(self, path: Path, progress: Progress | None) -> None:
        self._f = path.open("rb")
        self._progress = progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer: Any) -> int:
        n = self._f.readinto(buffer)
        if n and self._progress is not None:
            self._progress(n)
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


@contextlib.contextmanager
def _counting(path: Path, progress: Progress | None) -> Iterator[IO[bytes]]:
    raw = _Counting(path, progress)
    try:
        yield io.BufferedReader(raw, 1 << 16)
    finally:
        raw.close()
