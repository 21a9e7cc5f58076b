"""The checkpoint log: signed checkpoints copied out of the journal file, one JSON line each.

The journal keeps its own checkpoints, but whoever can rewrite the journal file can also cut
its newest records together with the checkpoints that cover them, or put an older copy of the
file in its place. The log lives in a separate file that is only ever appended to (on Linux it
can be made append-only with `chattr +a`), so a journal that ends before the log's newest
checkpoint, or disagrees with it, is caught by `shareguard audit verify`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gateway.audit.signing import Statement


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


@dataclass
class LogContents:
    statements: list[Statement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    exists: bool = False
    partial_tail: bool = False


def read(path: Path) -> LogContents:
    out = LogContents()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    out.exists = True
    lines = data.split(b"\n")
    # A last line without its newline is a write a crash interrupted: not a statement yet.
    complete, tail = lines[:-1], lines[-1]
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            out.statements.append(Statement.from_json(orjson.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            out.problems.append(
                f"检查点日志第 {number} 行无法解析 (checkpoint log line {number}): {exc}"
            )
    out.partial_tail = bool(tail.strip())
    return out
