"""The checkpoint log: signed checkpoints copied out of the journal file, one JSON line each.

The journal keeps its own checkpoints, but whoever can rewrite the journal file can also cut
its newest records together with the checkpoints that cover them, or put an older copy of the
file in its place. The log lives in a separate file that is only ever appended to (on Linux it
can be made append-only with `chattr +a`), so a journal that ends before the log's newest
checkpoint, or disagrees with it, is caught by `shareguard audit verify`.

The gateway adds a line about every second and nothing ever removes one, so the log is read
line by line, never whole: `open_log` fixes the log's length when it is opened (lines appended
later are not part of that reading, however often it is read again), `stream` goes through its
lines in file order, and `last` reads the newest statement from the file's end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import orjson

from gateway.audit.signing import Statement

# A statement's line is about 400 bytes; a longer line than this is not one, and is not read
# into memory whole (verify holds up to 1,024 lines ahead: this bounds them too).
MAX_LINE = 4 * 1024
# How much `last` reads from the end of the file at a time.
_BACK_CHUNK = 8 * 1024


def log_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + "-checkpoints.log")


def ensure(path: Path) -> None:
    """Create the log if it is not there yet, so a journal with records always has one."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))


def append(path: Path, statement: Statement) -> None:
    """Append one statement and fsync; one write() per line, so concurrent writers do not interleave."""
    line = orjson.dumps(statement.to_json()) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Line:
    """One complete, non-blank line of the log: its statement, or why it is not one."""

    number: int  # counted from 1, blank lines included
    statement: Statement | None
    problem: str | None = None


class LogReading:
    """The log as long as it was when opened: its complete lines, read as often as needed, one
    at a time. A last line without its newline is a write a crash interrupted (or one still
    under way): not a statement yet; `partial_tail` says whether one was met."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.size = os.fstat(file.fileno()).st_size
        self.partial_tail = False

    def lines(self) -> Iterator[Line]:
        f = self._file
        f.seek(0)
        self.partial_tail = False
        left = self.size
        number = 0
        while left > 0:
            raw = f.readline(min(left, MAX_LINE + 1))
            left -= len(raw)
            # Longer than any statement: read on to the line's end without keeping it.
            overlong = len(raw) > MAX_LINE
            end = raw
            while overlong and end and not end.endswith(b"\n") and left > 0:
                end = f.readline(min(left, MAX_LINE))
                left -= len(end)
            if not end.endswith(b"\n"):
                if left > 0 or not end:
                    # An append-only log never gets shorter: fail rather than read less.
                    yield Line(
                        number + 1,
                        None,
                        _problem(number + 1, "日志在读取时变短 (the log got shorter while read)"),
                    )
                elif overlong:
                    # Not a ~400-byte append a crash cut short: something else wrote there, and
                    # the next append would be glued onto it.
                    why = f"末行不完整且超过 {MAX_LINE} 字节 (an unfinished last line longer than {MAX_LINE} bytes)"
                    yield Line(number + 1, None, _problem(number + 1, why))
                else:
                    self.partial_tail = bool(raw.strip())
                return
            number += 1
            if overlong:
                why = f"行长超过 {MAX_LINE} 字节 (longer than {MAX_LINE} bytes)"
                yield Line(number, None, _problem(number, why))
            elif raw.strip():
                yield _line(number, raw[:-1])  # parsed without its newline, as errors name places

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_log(path: Path) -> LogReading:
    """The log as it is now (FileNotFoundError if there is none)."""
    return LogReading(path.open("rb"))


def stream(path: Path) -> Iterator[Line]:
    """Every complete line of the log as it is now, in file order."""
    with open_log(path) as log:
        yield from log.lines()


def last(path: Path) -> Statement | None:
    """The newest statement in the log (the last complete line that is one), read from the
    file's end; None if there is none, or no log."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return None
    with f:
        pos = f.seek(0, os.SEEK_END)
        # The bytes after the last newline seen so far: the start of a line not read whole yet.
        carry = b""
        # The rightmost piece of the next chunk is no complete line: the file's partial last
        # line (or the empty one after its final newline), or the rest of an overlong line.
        drop_right = True
        while pos > 0:
            step = min(_BACK_CHUNK, pos)
            pos -= step
            f.seek(pos)
            pieces = (f.read(step) + carry).split(b"\n")
            carry = pieces[0]
            for piece in reversed(pieces[1:]):
                if drop_right:
                    drop_right = False
                elif statement := _statement_or_none(piece):
                    return statement
            if len(carry) > MAX_LINE:
                carry, drop_right = b"", True
        return None if drop_right else _statement_or_none(carry)


def _line(number: int, raw: bytes) -> Line:
    try:
        return Line(number, _parse(raw))
    except ValueError as exc:
        return Line(number, None, _problem(number, str(exc)))


def _parse(raw: bytes) -> Statement:
    try:
        return Statement.from_json(orjson.loads(raw))
    except (KeyError, TypeError, AttributeError) as exc:  # valid JSON, but not a statement
        raise ValueError(str(exc) or type(exc).__name__) from exc


def _statement_or_none(raw: bytes) -> Statement | None:
    if not raw.strip():
        return None
    try:
        return _parse(raw)
    except ValueError:
        return None


def _problem(number: int, why: str) -> str:
    return f"检查点日志第 {number} 行无法解析 (checkpoint log line {number}): {why}"
