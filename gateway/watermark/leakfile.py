"""Reading a leaked file for tracing: JSON, NDJSON, CSV, XLSX or plain text, into rows of cells.

A leak comes in whatever shape the leaker left it: renamed or missing headers, another
delimiter, GBK or UTF-16 instead of UTF-8, a spreadsheet, a saved HTTP response, a download cut
off. Everything is read into one table of cells; column names are kept only for display, since
tracing aligns columns by their content. Memory stays bounded: past `max_rows` a uniform sample
of rows is kept (reservoir sampling), while every cell of every row is still read for zero-width
marks; NDJSON lines, JSON nesting, workbook parts and columns have limits of their own. What is
left unread (the rest of a JSON document that breaks off, lines or columns past a limit) is said
in `LeakTable.partial`; a file of which nothing can be read, or that is damaged, is a LeakError.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import functools
import io
import logging
import random
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.parsers import expat

import ijson
import orjson

from gateway.watermark.codes import MARK_CHARS, read_invisible

__all__ = ["LeakError", "LeakTable", "read_leak"]

log = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of bytes just read
MAX_ROWS = 100_000
MAX_COLUMNS = 256  # cells past this column are not kept (their invisible marks are still read)
HEAD_SIZE = 1 << 16  # read first to tell the format
_CHUNK = 1 << 16  # read at a time where the reading is done here
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
    partial: str | None = None  # why not all of the file was read, when it was not

    def column(self, index: int) -> list[Any]:
        return [row[index] if index < len(row) else None for row in self.rows]


class _Sink:
    """Collects rows with reservoir sampling and reads every cell for invisible marks."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.rows: list[list[Any]] = []
        self.seen = 0
        self.marks: set[int] = set()
        self.notes: list[str] = []  # what was left unread, for LeakTable.partial
        self._rng = random.Random(0x5EED)  # a fixed seed: the same file traces the same way

    def add(self, row: list[Any]) -> None:
        for cell in row:
            self.read_marks(cell)
        if len(row) > MAX_COLUMNS:  # a CSV line of commas: not held 100,000 times over
            self.note(_columns_past(MAX_COLUMNS))
            row = row[:MAX_COLUMNS]
        self.seen += 1
        if len(self.rows) < self.max_rows:
            self.rows.append(row)
            return
        at = self._rng.randrange(self.seen)
        if at < self.max_rows:
            self.rows[at] = row

    def read_marks(self, cell: Any) -> None:
        """The invisible marks in a cell, kept or not (a mark past the columns kept is still
        evidence of where the file came from)."""
        if isinstance(cell, str) and _ZERO_WIDTH.search(cell):
            self.marks.update(read_invisible(cell))

    def read_marks_of(self, value: Any) -> None:
        """The invisible marks in a value not kept (a JSON value past the columns kept): one too
        deeply nested to serialize is passed over, as the value itself is."""
        with contextlib.suppress(_BadValue):
            self.read_marks(_cell(value))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def _reported[**P, R](read: Callable[P, R]) -> Callable[P, R]:
    """Whatever else goes wrong while a file is read is a LeakError too: a damaged file."""

    @functools.wraps(read)
    def reading(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return read(*args, **kwargs)
        except LeakError:
            raise
        except MemoryError:
            log.warning("leaked file: out of memory while reading it", exc_info=True)
            raise LeakError(
                "文件过大或已损坏，内存不足 (the file is too large or damaged: out of memory)"
            ) from None
        except Exception as exc:
            log.warning("leaked file unreadable (%s)", type(exc).__name__, exc_info=True)
            raise LeakError(f"文件已损坏 (damaged file): {type(exc).__name__}: {exc}") from None

    return reading


@_reported
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


@_reported
def read_leak_bytes(data: bytes, max_rows: int = MAX_ROWS, *, nesting: int = 0) -> LeakTable:
    """The same, for an uploaded file held in memory (the admin API and the console)."""
    if data.startswith(b"PK\x03\x04"):
        return _xlsx(io.BytesIO(data), max_rows, None)
    if not data:
        raise LeakError("文件为空 (the file is empty)")
    return read_leak_bytes_stream(io.BytesIO(data), data[:HEAD_SIZE], max_rows, nesting=nesting)


@_reported
def read_leak_bytes_stream(
    stream: IO[bytes], head: bytes, max_rows: int, *, nesting: int = 0
) -> LeakTable:
    encoding = _encoding(head)
    text_head = head.decode(encoding, errors="replace").lstrip("\ufeff").lstrip()
    if text_head.startswith("HTTP/"):
        data = stream.read()
        if encoding in _WIDE:
            data = data.decode(encoding, errors="replace").encode()
        return read_http_response(data, max_rows, nesting=nesting)
    if text_head[:1] in ("[", "{"):
        # ijson reads UTF-8 only: any other encoding, or a BOM, is read through a transcoder.
        plain = encoding == "utf-8-sig" and not head.startswith(codecs.BOM_UTF8)
        table = _json(
            stream if plain else io.BufferedReader(_Utf8(stream, encoding)), text_head, max_rows
        )
        if table is not None:
            return table
        stream.seek(0)
        return _ndjson(stream, encoding, max_rows)
    return _delimited(stream, encoding, text_head, max_rows)


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16's, which it begins with
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_WIDE = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")


def _encoding(head: bytes) -> str:
    """The BOM's encoding; UTF-16 or UTF-32 without one, told by where the NULs fall (Excel's
    "Unicode Text" is UTF-16); UTF-8; else GB18030, which Chinese spreadsheet exports use."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    wide = _wide(head)
    if wide is not None:
        return wide
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


def _wide(head: bytes) -> str | None:
    """UTF-16 or UTF-32 without a BOM: NULs in the high bytes of ASCII characters, never (or
    hardly ever) in the low ones. Text in UTF-8 or GB18030 has no NULs at all."""
    n = min(len(head), 4096) // 4 * 4
    if n < 16 or b"\0" not in head[:n]:
        return None
    quarter = n // 4
    at = [head[i:n:4].count(0) for i in range(4)]  # NULs at each position modulo 4
    if at[2] >= 0.95 * quarter and at[3] >= 0.95 * quarter and at[0] < quarter / 2:
        return "utf-32-le"
    if at[0] >= 0.95 * quarter and at[1] >= 0.95 * quarter and at[3] < quarter / 2:
        return "utf-32-be"
    even, odd = at[0] + at[2], at[1] + at[3]
    if odd >= 0.1 * 2 * quarter and even * 10 <= odd:
        return "utf-16-le"
    if even >= 0.1 * 2 * quarter and odd * 10 <= even:
        return "utf-16-be"
    return None


class _Utf8(io.RawIOBase):
    """Text in another encoding read as UTF-8 bytes, for ijson; it rewinds but does not seek."""

    def __init__(self, raw: IO[bytes], encoding: str) -> None:
        self._raw = raw
        self._start = raw.tell()
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending = b""
        self._at = 0  # how much of _pending has been read
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1 and offset == 0:
            return self._pos
        if whence != 0 or offset != 0:
            raise io.UnsupportedOperation("only a rewind")
        self._raw.seek(self._start)
        self._decoder.reset()
        self._pending = b""
        self._at = self._pos = 0
        self._eof = False
        return 0

    def readinto(self, buffer: Any) -> int:
        while self._at == len(self._pending) and not self._eof:
            chunk = self._raw.read(_CHUNK)
            self._eof = not chunk
            self._pending = self._decoder.decode(chunk, final=self._eof).encode()
            self._at = 0
        n = min(len(buffer), len(self._pending) - self._at)
        buffer[:n] = self._pending[self._at : self._at + n]
        self._at += n
        self._pos += n
        return n


# -- JSON and NDJSON ---------------------------------------------------------------------------

MAX_JSON_DEPTH = 64  # containers inside one another, envelope included
MAX_LINE = 4 << 20  # characters in an NDJSON line; a longer line is skipped, not held
_ARRAY = object()  # in a JSON trail: an array (an object's place holds its current key)


class _BadValue(LeakError):
    """A value tracing cannot hold as a cell (nested past orjson's limit)."""


class _Records:
    """Rows from JSON values. An object is a record, its cells placed by field name in order of
    first appearance; an array is a row, its cells in order, and the first array is the header
    when it is all names (as the first row of a CSV is). Other values are not records."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.names: dict[str, int] = {}
        self.header: list[str] = []
        self.arrays = 0

    def add(self, value: Any) -> bool:
        """Read `value` if it is an object or an array (an empty one has no cells to read)."""
        if isinstance(value, dict):
            if value:
                self.sink.add(self._record(value))
        elif isinstance(value, list):
            if value:
                self._row(value)
        else:
            return False
        return True

    def columns(self) -> list[str]:
        if self.names:
            return list(self.names)
        if self.header:
            return self.header
        return [f"column{i + 1}" for i in range(max((len(r) for r in self.sink.rows), default=0))]

    def _record(self, record: dict[str, Any]) -> list[Any]:
        for name in record:
            if name not in self.names:
                if len(self.names) >= MAX_COLUMNS:
                    self.sink.note(
                        f"第 {MAX_COLUMNS} 个字段之后的字段未保留，仅读取其中的隐形标记 (fields"
                        f" past the first {MAX_COLUMNS} names were not kept; only their invisible"
                        " marks were read)"
                    )
                    self.sink.read_marks_of(record[name])
                    continue
                self.names[name] = len(self.names)
        out: list[Any] = [None] * len(self.names)
        for name, value in record.items():
            at = self.names.get(name)
            if at is not None:
                out[at] = _cell(value)
        return out

    def _row(self, values: list[Any]) -> None:
        if len(values) > MAX_COLUMNS:
            self.sink.note(_columns_past(MAX_COLUMNS))
            for value in values[MAX_COLUMNS:]:
                self.sink.read_marks_of(value)
            values = values[:MAX_COLUMNS]
        cells = [_cell(v) for v in values]
        self.arrays += 1
        if (
            self.arrays == 1
            and all(isinstance(c, str) for c in cells)
            and _looks_like_header(cells)
        ):
            self.header = cells
            return
        self.sink.add(cells)


def _columns_past(limit: int) -> str:
    return (
        f"第 {limit} 列之后的单元格未保留，仅读取其中的隐形标记 (cells past column {limit} were"
        " not kept; only their invisible marks were read)"
    )


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError as exc:  # orjson: "Recursion limit reached"
        raise _BadValue(
            f"文件已损坏 (damaged file): 值嵌套过深 (a value nested too deeply): {exc}"
        ) from None


def _json(stream: IO[bytes], head: str, max_rows: int) -> LeakTable | None:
    """The records of one JSON document: an array, or an export's envelope around one.

    None when the content is not one JSON document, or its items are not records: the caller
    reads it as NDJSON (JSON Lines). A document that breaks off after some records keeps them,
    and the table says it is partial."""
    sink = _Sink(max_rows)
    records = _Records(sink)
    start = stream.tell()
    # Each path tried is a pass over the file: an array is read once, an object at most once per
    # envelope name. Concatenated arrays are read as one; concatenated objects are NDJSON.
    array = head.startswith("[")
    paths = ((),) if array else tuple((name,) for name in _ENVELOPES)
    found = accepted = False
    for path in paths:
        stream.seek(start)
        try:
            for item in _json_items(stream, path, multiple=array):
                found = True
                if records.add(item):
                    accepted = True
                elif not accepted:
                    return None  # an array of values, or JSON Lines of arrays
        except ijson.JSONError as exc:
            if sink.seen == 0:
                if found:
                    return None
                break
            sink.note(_broken_off(exc, sink.seen))
        if found:
            break
    if found:
        if sink.seen == 0:
            raise LeakError("JSON 中没有记录 (no records in the JSON)")
        return _table("json", records.columns(), sink)
    stream.seek(start)
    # One record as a whole document: only when the file is no bigger than the head already
    # read. A larger file is not read whole into memory here; it is most likely NDJSON, which
    # the caller reads line by line.
    data = stream.read(HEAD_SIZE + 1)
    if len(data) > HEAD_SIZE:
        return None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or any(
        isinstance(document.get(name), list) for name in _ENVELOPES
    ):
        raise LeakError("JSON 中没有记录 (no records in the JSON)")
    records.add(document)
    return _table("json", records.columns(), sink)


_ENVELOPES = ("records", "data", "rows")


def _broken_off(exc: ijson.JSONError, records: int) -> str:
    if "premature EOF" in str(exc):
        return (
            f"JSON 在第 {records:,} 条记录之后中断，已读取这 {records:,} 条 (the JSON breaks off"
            f" after record {records:,}; those {records:,} were read)"
        )
    return (
        f"JSON 在第 {records:,} 条记录之后无效，已读取此前的 {records:,} 条 (the JSON is not"
        f" valid after record {records:,}; the {records:,} before it were read)"
    )


def _json_items(stream: IO[bytes], path: tuple[str, ...], *, multiple: bool) -> Iterator[Any]:
    """The values in the array at `path` (keys of the objects around it; () for the top level).

    Built here from ijson's events rather than by ijson.items, which keeps a path string for
    every level and so needs memory quadratic in the nesting (23 GB for 100,000 levels): nesting
    past MAX_JSON_DEPTH is refused as soon as it is met."""
    target: list[object] = [*path, _ARRAY]
    trail: list[object] = []  # the containers above the items
    at_items = False
    # The item being built: the innermost open container, whether it is a list, the key being
    # filled when it is an object; the outer ones wait on `stack`.
    top: Any = None
    is_list = False
    key: Any = None
    stack: list[tuple[Any, bool, Any]] = []
    room = MAX_JSON_DEPTH
    for event, value in ijson.basic_parse(stream, use_float=True, multiple_values=multiple):
        if top is not None:
            if event == "map_key":
                key = value
            elif event in _SCALAR_EVENTS:
                if is_list:
                    top.append(value)
                else:
                    top[key] = value
            elif event == "start_map" or event == "start_array":
                child: Any = {} if event == "start_map" else []
                if is_list:
                    top.append(child)
                else:
                    top[key] = child
                if len(stack) >= room:
                    raise _too_deep()
                stack.append((top, is_list, key))
                top, is_list, key = child, event == "start_array", None
            elif stack:  # the end of a container inside the item
                top, is_list, key = stack.pop()
            else:  # the end of the item
                yield top
                top = None
            continue
        if at_items:
            if event == "start_map" or event == "start_array":
                top, is_list, key = (
                    ({} if event == "start_map" else []),
                    event == "start_array",
                    None,
                )
                room = MAX_JSON_DEPTH - len(trail) - 1
                if room < 0:
                    raise _too_deep()
                continue
            if event != "end_array":
                yield value
                continue
        if event == "map_key":
            trail[-1] = value
        elif event == "start_map":
            trail.append(None)
        elif event == "start_array":
            trail.append(_ARRAY)
        elif event == "end_map" or event == "end_array":
            trail.pop()
        if len(trail) > MAX_JSON_DEPTH:
            raise _too_deep()
        at_items = trail == target


_SCALAR_EVENTS = frozenset(("null", "boolean", "integer", "double", "number", "string"))


def _too_deep() -> LeakError:
    return LeakError(
        f"文件已损坏 (damaged file): JSON 嵌套超过 {MAX_JSON_DEPTH} 层 (JSON nested more than"
        f" {MAX_JSON_DEPTH} levels deep)"
    )


def _ndjson(stream: IO[bytes], encoding: str, max_rows: int) -> LeakTable:
    """One JSON value a line: objects are records, arrays rows (JSON Lines); others are skipped."""
    sink = _Sink(max_rows)
    records = _Records(sink)
    bad = long = 0
    for line in _lines(stream, encoding, sink.marks):
        if line is None:
            long += 1
            continue
        line = line.strip()
        if not line:
            continue
        try:
            records.add(orjson.loads(line))
        except (orjson.JSONDecodeError, _BadValue):
            bad += 1
    skipped = _long_lines(long)
    if skipped:
        sink.note(skipped)
    if bad:
        sink.note(f"跳过了 {bad:,} 行无效 JSON (skipped {bad:,} lines that are not valid JSON)")
    if sink.seen == 0:
        raise LeakError(
            "不是 JSON 或 NDJSON (neither JSON nor NDJSON)" + (f"；{skipped}" if skipped else "")
        )
    return _table("ndjson", records.columns(), sink)


def _lines(
    stream: IO[bytes], encoding: str, marks: set[int], newline: str | None = None
) -> Iterator[str | None]:
    """Lines of text shorter than MAX_LINE characters; None for a longer one, skipped unheld
    (its invisible marks still go into `marks`). `newline` as for open(): None translates line
    ends to "\n", "" keeps them (for csv)."""
    text = io.TextIOWrapper(stream, encoding=encoding, errors="replace", newline=newline)
    ends = ("\n", "\r")
    while line := text.readline(MAX_LINE):
        if len(line) < MAX_LINE or line.endswith(ends):
            yield line
            continue
        # Read on in chunks, each with the end of the one before it: a mark cut in two by
        # a chunk's end is whole in the next.
        tail = ""
        while line:
            window = tail + line
            if _ZERO_WIDTH.search(window):
                marks.update(read_invisible(window))
            if line.endswith(ends):
                break
            tail = window[-(MARK_CHARS - 1) :]
            line = text.readline(_CHUNK)
        yield None


def _long_lines(count: int) -> str:
    """What a reader says of the lines it skipped for their length ("" for none)."""
    if not count:
        return ""
    return (
        f"跳过了 {count:,} 个超过 {MAX_LINE:,} 字符的行 (skipped {count:,} lines longer than"
        f" {MAX_LINE:,} characters)"
    )


# -- CSV and plain text ------------------------------------------------------------------------


def _delimited(stream: IO[bytes], encoding: str, head: str, max_rows: int) -> LeakTable:
    long = 0
    sink = _Sink(max_rows)

    def text() -> Iterator[str]:
        # A line with no end in sight (a file of one enormous line) is skipped, not held whole.
        nonlocal long
        for line in _lines(stream, encoding, sink.marks, newline=""):
            if line is None:
                long += 1
            else:
                yield line

    sample = head[: 1 << 15]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;|")
        fmt = "csv"
    except csv.Error:
        dialect = None
        fmt = "text"
    rows: Iterable[list[str]]
    if dialect is not None:
        rows = csv.reader(text(), dialect)
    else:
        rows = (_split_text(line) for line in text())
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
    skipped = _long_lines(long)
    if skipped:
        sink.note(skipped)
    if sink.seen == 0:
        raise LeakError(
            "文件中没有数据行 (no rows of data in the file)" + (f"；{skipped}" if skipped else "")
        )
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


@_reported
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
#
# openpyxl finds the sheets, the date styles and the 1904 flag; the shared strings and the sheets
# themselves are read here with expat, a chunk at a time, so that what a workbook declares (its
# <dimension>, its row numbers, its column letters) never decides how much is held in memory.
# Before anything is unpacked the archive's own directory is checked: every part's unpacked size
# is bounded there (zipfile stops reading a part at the size its directory gives).

MAX_XLSX_ROWS = 1_048_576  # rows read from one workbook at most: a full Excel sheet
MAX_XLSX_EXPANDED = 1 << 30  # all parts of a workbook together, unpacked
MAX_XLSX_PART = 64 << 20  # a part read whole (the shared strings, styles, the workbook), unpacked
MAX_XLSX_RATIO = 100  # a part over XLSX_RATIO_FLOOR unpacks to at most this many times its size
XLSX_RATIO_FLOOR = 16 << 20
MAX_CELL_CHARS = 32_767  # Excel's own limit for the text of a cell
_SHEET_PART = re.compile(r"xl/worksheets/[^/]+\.xml")


def _xlsx(source: Path | IO[bytes], max_rows: int, progress: Progress | None) -> LeakTable:
    # A file object, not a path: openpyxl judges a path by its extension, and an upload has none.
    handle = source.open("rb") if isinstance(source, Path) else source
    try:
        try:
            book = _Workbook(handle)
        except LeakError:
            raise
        except Exception as exc:  # zipfile and openpyxl raise many kinds for a damaged workbook
            raise LeakError(f"无法读取 XLSX (cannot read the workbook): {exc}") from None
        with contextlib.closing(book.archive):
            return _xlsx_table(book, max_rows, progress)
    finally:
        handle.close()


def _xlsx_table(book: _Workbook, max_rows: int, progress: Progress | None) -> LeakTable:
    sink = _Sink(max_rows)
    columns: list[str] = []
    read = 0
    for name, part in book.sheets:
        first = True
        rows = _SheetRows(book, part, progress)
        try:
            for row in rows:
                read += 1
                if read > MAX_XLSX_ROWS:
                    sink.note(
                        f"只读取了前 {MAX_XLSX_ROWS:,} 行 (only the first {MAX_XLSX_ROWS:,} rows "
                        "were read)"
                    )
                    break
                if first:
                    first = False
                    texts = [str(v) if v is not None else "" for v in row]
                    if all(isinstance(v, str) for v in row if v is not None) and _looks_like_header(
                        texts
                    ):
                        columns = columns or texts
                        continue
                sink.add(row)
        except LeakError:
            raise
        except Exception as exc:  # expat, a shared string index out of range, ...
            raise LeakError(
                f"文件已损坏 (damaged file): 工作表 (sheet) {name} 第 {rows.at} 行附近"
                f" (near row {rows.at}): {exc}"
            ) from None
        sink.marks |= rows.marks
        if rows.wide:
            sink.note(_columns_past(MAX_COLUMNS))
        if read > MAX_XLSX_ROWS:
            break
    if sink.seen == 0:
        raise LeakError("工作簿中没有数据行 (no rows of data in the workbook)")
    if not columns:
        columns = [f"column{i + 1}" for i in range(max(len(r) for r in sink.rows))]
    return _table("xlsx", columns, sink)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MiB"


class _Workbook:
    """The parts of a workbook tracing needs: its sheets, shared strings and date styles."""

    def __init__(self, handle: IO[bytes]) -> None:
        from openpyxl.reader.excel import ExcelReader
        from openpyxl.styles.stylesheet import apply_stylesheet
        from openpyxl.xml.constants import SHARED_STRINGS

        # ExcelReader is what load_workbook uses; its steps are called one by one here so that
        # the parts it reads whole are checked first and the shared strings are not read by it.
        reader = ExcelReader(handle, read_only=True, data_only=True, keep_links=False)
        self.archive: zipfile.ZipFile = reader.archive
        try:
            _check_archive(self.archive)
            reader.read_manifest()
            _check_roles(self.archive, reader.package)
            reader.read_workbook()
            apply_stylesheet(self.archive, reader.wb)
            self.epoch: datetime.datetime = reader.wb.epoch
            self.date_styles: set[int] = set(reader.wb._date_formats)
            self.timedelta_styles: set[int] = set(reader.wb._timedelta_formats)
            strings = reader.package.find(SHARED_STRINGS)
            self.strings = _shared_strings(self.archive, strings.PartName[1:]) if strings else []
            self.sheets: list[tuple[str, str]] = [
                (sheet.name, rel.target)
                for sheet, rel in reader.parser.find_sheets()
                if rel.target in reader.valid_files and "chartsheet" not in rel.Type
            ]
        except BaseException:
            self.archive.close()
            raise


def _check_archive(archive: zipfile.ZipFile) -> None:
    """Refuse a workbook whose parts unpack to more than tracing will hold or spend time on."""
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > MAX_XLSX_EXPANDED:
        raise LeakError(
            f"XLSX 解压后共 {_mib(total)}，超过 {_mib(MAX_XLSX_EXPANDED)} 上限；请另存为 CSV 再溯源"
            f" (the workbook unpacks to {_mib(total)}, over the {_mib(MAX_XLSX_EXPANDED)} limit;"
            " save it as CSV and trace that)"
        )
    for info in infos:
        size = info.file_size
        if size > XLSX_RATIO_FLOOR and size > MAX_XLSX_RATIO * max(info.compress_size, 1):
            ratio = size // max(info.compress_size, 1)
            raise LeakError(
                f"XLSX 部件 {info.filename} 解压后 {_mib(size)}，是压缩大小的 {ratio:,} 倍，"
                f"疑似压缩炸弹，拒绝读取 (the workbook part {info.filename} unpacks to"
                f" {_mib(size)}, {ratio:,} times its packed size: refused as a likely ZIP bomb)"
            )
        if not _SHEET_PART.fullmatch(info.filename):
            _check_part_size(info)


def _check_roles(archive: zipfile.ZipFile, package: Any) -> None:
    """A part the manifest gives another role than worksheet is read whole, wherever it is."""
    for override in package.Override:
        name = override.PartName.lstrip("/")
        if override.ContentType.endswith(".worksheet+xml"):
            continue
        with contextlib.suppress(KeyError):  # a part the manifest names but the archive lacks
            _check_part_size(archive.getinfo(name))


def _check_part_size(info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_XLSX_PART:
        raise LeakError(
            f"XLSX 部件 {info.filename} 解压后 {_mib(info.file_size)}，超过整体读取的"
            f" {_mib(MAX_XLSX_PART)} 上限；请另存为 CSV 再溯源 (the workbook part"
            f" {info.filename} unpacks to {_mib(info.file_size)}, over the"
            f" {_mib(MAX_XLSX_PART)} limit for a part read whole; save it as CSV and trace that)"
        )


def _expat(
    start: Callable[[str, dict[str, str]], None],
    end: Callable[[str], None],
    text: Callable[[str], None],
) -> Any:
    """An expat parser reporting local names (no namespaces), refusing DTDs and entities."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartElementHandler = lambda name, attrs: start(name[name.rfind(" ") + 1 :], attrs)
    parser.EndElementHandler = lambda name: end(name[name.rfind(" ") + 1 :])
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = _no_doctype
    parser.EntityDeclHandler = _no_doctype
    return parser


def _no_doctype(*_: Any) -> None:
    raise LeakError("文件已损坏 (damaged file): XLSX 部件含 DTD (a workbook part declares a DTD)")


def _shared_strings(archive: zipfile.ZipFile, name: str) -> list[str]:
    """The shared strings table: the text of each <si>, its phonetic runs left out."""
    strings: list[str] = []
    parts: list[str] = []
    state = {"si": False, "t": False, "rph": 0, "chars": 0}

    def start(tag: str, attrs: dict[str, str]) -> None:
        if tag == "si":
            state.update(si=True, chars=0)
            parts.clear()
        elif tag == "rPh":
            state["rph"] += 1
        elif tag == "t" and state["si"] and not state["rph"]:
            state["t"] = True

    def end(tag: str) -> None:
        if tag == "si":
            strings.append("".join(parts).replace("x005F_", ""))  # as openpyxl does
            state["si"] = False
        elif tag == "rPh":
            state["rph"] -= 1
        elif tag == "t":
            state["t"] = False

    def text(data: str) -> None:
        if state["t"] and state["chars"] < MAX_CELL_CHARS:
            parts.append(data[: MAX_CELL_CHARS - state["chars"]])
            state["chars"] += len(data)

    parser = _expat(start, end, text)
    with archive.open(name) as src:
        while chunk := src.read(_CHUNK):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    return strings


class _SheetRows:
    """The rows of one worksheet that hold a value, cells placed by their column letters.

    Rows are read as they come, so a gap in row numbers costs nothing; a row is only as wide as
    its last cell with a value, and cells past MAX_COLUMNS are left out (`wide` says so)."""

    def __init__(self, book: _Workbook, part: str, progress: Progress | None) -> None:
        self.book = book
        self.part = part
        self.progress = progress
        self.at = 0  # the number of the row being read, for messages
        self.wide = False
        self.marks: set[int] = set()  # invisible marks in cells past MAX_COLUMNS, not kept
        self._done: list[list[Any]] = []
        self._cells: dict[int, Any] | None = None
        self._col = 0
        self._kind = ""
        self._style = ""
        self._in_cell = False
        self._in_data = False
        self._text: list[str] = []
        self._chars = 0
        self._collect = False
        self._inline = False
        self._rph = 0

    def __iter__(self) -> Iterator[list[Any]]:
        info = self.book.archive.getinfo(self.part)
        parser = _expat(self._start, self._end, self._chars_of)
        with self.book.archive.open(self.part) as src:
            while chunk := src.read(_CHUNK):
                parser.Parse(chunk, False)
                if self.progress is not None and info.file_size:
                    self.progress(len(chunk) * info.compress_size // info.file_size)
                yield from self._take()
            parser.Parse(b"", True)
        yield from self._take()

    def _take(self) -> list[list[Any]]:
        done, self._done = self._done, []
        return done

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "sheetData":
            self._in_data = True
        elif not self._in_data:
            return
        elif tag == "row":
            number = attrs.get("r", "")
            self.at = int(number) if number.isdigit() else self.at + 1
            self._cells = {}
            self._col = 0
        elif tag == "c" and self._cells is not None:
            ref = attrs.get("r")
            col = _column(ref) if ref else 0
            self._col = col if col > 0 else self._col + 1
            self._kind = attrs.get("t", "n")
            self._style = attrs.get("s", "")
            self._in_cell = True
            self._inline = False
            self._rph = 0
            self._text = []
            self._chars = 0
        elif not self._in_cell:
            return
        elif tag == "v":
            self._collect = True
        elif tag == "is":
            self._inline = True
        elif tag == "rPh":
            self._rph += 1
        elif tag == "t" and self._inline and not self._rph:
            self._collect = True

    def _end(self, tag: str) -> None:
        if tag in ("v", "t"):
            self._collect = False
        elif tag == "rPh":
            self._rph -= 1
        elif tag == "c" and self._in_cell:
            self._in_cell = False
            self._collect = False
            if self._cells is None:
                return
            value = self._value()
            if value is None or value == "":
                return
            if self._col > MAX_COLUMNS:
                self.wide = True
                if isinstance(value, str) and _ZERO_WIDTH.search(value):
                    self.marks.update(read_invisible(value))
                return
            self._cells[self._col] = _cell(value)
        elif tag == "row" and self._cells is not None:
            cells, self._cells = self._cells, None
            if cells:
                row: list[Any] = [None] * max(cells)
                for col, value in cells.items():
                    row[col - 1] = value
                self._done.append(row)
        elif tag == "sheetData":
            self._in_data = False

    def _chars_of(self, data: str) -> None:
        if self._collect and self._chars < MAX_CELL_CHARS:
            self._text.append(data[: MAX_CELL_CHARS - self._chars])
            self._chars += len(data)

    def _value(self) -> Any:
        """The cell's value as openpyxl gives it with data_only: the cached result of a formula."""
        from openpyxl.utils.datetime import from_excel, from_ISO8601

        text = "".join(self._text)
        kind = self._kind
        if kind == "inlineStr":
            return text
        if not text:
            return None
        if kind == "s":
            index = int(text)
            if index < 0:  # Python would read it from the end of the table
                raise IndexError(f"shared string index {index}")
            return self.book.strings[index]
        if kind == "b":
            return text.strip() not in ("0", "false", "")
        if kind in ("str", "e"):
            return text
        if kind == "d":
            try:
                return from_ISO8601(text)
            except ValueError:
                return text
        try:
            number: int | float = (
                float(text) if "." in text or "e" in text or "E" in text else int(text)
            )
        except ValueError:
            return text
        style = int(self._style) if self._style.isdigit() else -1
        if style in self.book.date_styles:
            try:
                return from_excel(
                    number, self.book.epoch, timedelta=style in self.book.timedelta_styles
                )
            except (OverflowError, ValueError):
                return number
        return number


def _column(ref: str) -> int:
    """The column number of a cell reference (A1 → 1, XFD1 → 16384); 0 when it names none."""
    n = 0
    for ch in ref:
        code = ord(ch) | 0x20  # lower case
        if not 0x61 <= code <= 0x7A:
            break
        n = n * 26 + code - 0x60
        if n > MAX_COLUMNS:
            return MAX_COLUMNS + 1  # past the columns read, however far
    return n


def _table(fmt: str, columns: list[str], sink: _Sink) -> LeakTable:
    if sink.seen == 0:  # each reader says why first; this is the last word
        raise LeakError("文件中没有数据行 (no rows of data in the file)")
    return LeakTable(
        format=fmt,
        columns=columns,
        rows=sink.rows,
        total_rows=sink.seen,
        marks=sink.marks,
        partial="；".join(sink.notes) or None,
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
