"""Verifying the audit log: the hash chain, the signed seal and checkpoints, across archived segments.

What each check catches:

- the chain (each hash covers the previous one): a record removed, altered, reordered or
  inserted, unless the whole rest of the chain was recomputed;
- signed checkpoints (in the journal, in archived segments and in the checkpoint log): a chain
  that was recomputed after a change, since it no longer matches what the key signed;
- the seal (a signature over the head): records cut off the end, and records added at the end
  by anyone without the key after the gateway stopped cleanly (a closed seal). While the gateway
  runs, or after it crashed, the seal is open and its newest commits may follow it unsigned:
  those are checked by the chain only and reported as not sealed yet (`unsealed_from`);
- the checkpoint log outside the journal file: the end cut off together with the journal's own
  seal and checkpoints, or the whole file replaced by an older or a different one.

The result names the first bad record: exactly where the chain breaks, or the first record not
vouched for by a signature when the chain was recomputed.

Memory does not grow with the history. Records and the journal's own checkpoints are read in
order from SQLite as the walk goes; the checkpoint log (a line a second, never trimmed) is read
twice, line by line: once only to parse it, so an unparseable line is reported before any record
is walked, wherever it is; then merged with the walk, each statement met when the walk reaches
its record. Its length is fixed when verify opens it, before the live journal's snapshot: a line
appended later may be for a record that snapshot does not hold.

The order of the checkpoint log's lines. Each writer appends its checkpoints in record order: a
`Journal` commits and appends them under its own lock, one after the other (a checkpoint already
at the head is appended again, so one record may have several lines). But several processes
append to one log (the gateway, and a command that writes an event), and each appends after its
commit, outside SQLite's write lock: a writer that committed the checkpoint at record 100 may
append it after another one appended 105. And `audit archive` appends its statement for the
archive's last record once the archive is done, often far behind the head. So the log is only
nearly in order. Verify reads up to LOG_WINDOW lines ahead of the record it has reached, and
meets them lowest record first: a line displaced by less than that is met at its record, as if
the log were sorted. A line read after the walk passed its record is checked all the same,
against that record's hash looked up again where the walk found it (the live journal's snapshot,
or the segment, opened again): a statement that disagrees, is not genuine, or is for a record
no part of the journal holds fails verify. The order decides only which record a failure names
(a late line names its own record, or the first one not vouched for when it was read, where a
sorted log might have named an earlier one), never whether verify passes.

The search index (subjects.py) is derived from the journal, but searches and reports trust it
for the records up to its mark (`upto`), so verify checks it against the live journal's
records after the archived ones up to that mark, and the mark itself:

- every entry's filter columns equal the journal's, and there is an entry for every record;
- the (data subject, record) pairs are exactly those the records name, as a multiset: each pair
  is hashed with BLAKE2b under a key drawn at random for this run, and the hashes summed modulo
  2^256, on each side, streamed (memory does not grow with the index). The key is not known
  when the index is edited, so any change to the pairs moves the sum, except with probability
  about 2^-256; sums of a public hash could be matched by a forger who adds many chosen pairs;
- the mark: the indexer writes rows and moves the mark in one transaction, so a genuine index
  holds no entry and no pair beyond its mark, and its mark is no further than the journal's
  end. An index behind the journal is normal (its indexer runs after the commits; searches read
  the records beyond the mark from the journal). A mark lowered with the rows beyond it deleted
  too looks the same and hides nothing: those records are indexed again from the journal. But a
  mark lowered below rows that remain fails, as does a mark beyond the journal's end (records
  written there later would be looked up in an index that does not have them). The journal
  records nothing about the index, which a process of its own writes: these rules are all
  there is to hold it to. The mark is read in the index's snapshot, taken before the journal's,
  so an indexer running meanwhile cannot make a genuine index look ahead of the journal.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import sqlite3
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import checkpoint_log
from gateway.audit.journal import OPEN_SEAL, base_of, chain_hash, connect, read_meta, read_seal
from gateway.audit.signing import Statement, StatementVerifier
from gateway.audit.subjects import COLUMNS, index_path, subject_key

SEGMENT_GLOB = "journal-*.db"
# How many lines of the checkpoint log verify reads ahead of the record it has reached (about
# 0.6 KB each): lines this close to their place are met at their record (see the notes above).
LOG_WINDOW = 1024
# Unparseable lines of the checkpoint log named one by one; any more are counted.
PROBLEMS_NAMED = 20
_NOTHING_AHEAD = sys.maxsize


def archive_dir(journal_path: Path) -> Path:
    return journal_path.parent / "archive"


def segments(journal_path: Path) -> list[Path]:
    """Archived segments, oldest first (their names carry zero-padded sequence numbers)."""
    folder = archive_dir(journal_path)
    return sorted(folder.glob(SEGMENT_GLOB)) if folder.exists() else []


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    records: int  # records checked and found good before the first bad one
    first_bad_seq: int | None = None
    problem: str | None = None
    segments: int = 0
    signatures: int = 0  # checkpoints, seals and archive statements that were checked
    last_seq: int = 0
    notes: tuple[str, ...] = ()
    # The first of the newest records not under a signature yet (after an open seal): written
    # by a running gateway a moment ago, or by one that stopped before sealing them.
    unsealed_from: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "segments": self.segments,
            "signatures": self.signatures,
            "last_seq": self.last_seq,
            "notes": list(self.notes),
            "unsealed_from": self.unsealed_from,
        }


class _Bad(Exception):
    def __init__(self, seq: int | None, problem: str) -> None:
        super().__init__(problem)
        self.seq = seq
        self.problem = problem


@dataclass(slots=True)
class _Expectation:
    hash: bytes
    origin: str
    error: str | None = None


_PAIR = struct.Struct(">qq")  # a (subject key, record) pair, as hashed for the multiset sum
_SUM_MASK = (1 << 256) - 1


@dataclass
class _SubjectTally:
    """What the search index should hold for the live records it covers (after < seq <= upto):
    how many (subject, record) pairs, and their multiset hash (see the module's notes)."""

    after: int = 0
    upto: int = 0
    pairs: int = 0
    digest: int = 0
    key: bytes = field(default_factory=lambda: os.urandom(32))

    def add(self, seq: int, keys: set[int]) -> None:
        if self.after < seq <= self.upto and keys:
            self.pairs += len(keys)
            for subject in keys:
                self.digest += self.hash(subject, seq)

    def hash(self, subject: int, seq: int) -> int:
        data = _PAIR.pack(subject, seq)
        return int.from_bytes(hashlib.blake2b(data, digest_size=32, key=self.key).digest())


@dataclass
class _Walk:
    verifier: StatementVerifier
    journal_id: str | None = None
    next_seq: int = 1
    prev: bytes = bytes(32)
    records: int = 0
    signatures: int = 0
    vouched_upto: int = 0  # the newest record a genuine signature was found to match
    unsealed_from: int | None = None
    notes: list[str] = field(default_factory=list)
    subjects: _SubjectTally = field(default_factory=lambda: _SubjectTally())
    log: _LogFeed | None = None
    beyond: _Beyond = field(default_factory=lambda: _Beyond())
    # The sources walked so far, as (first record walked there, last, file); and the one being
    # walked, as (first record walked there, its snapshot): where a late log line's record is.
    walked: list[tuple[int, int, Path]] = field(default_factory=list)
    current: tuple[int, sqlite3.Connection] | None = None
    _looked_up: tuple[Path, sqlite3.Connection] | None = None

    def expectation(self, statement: Statement, origin: str) -> _Expectation:
        error = self.verifier.check(statement)
        if statement.journal_id != self.journal_id:
            error = (
                f"属于另一份日志 {statement.journal_id}，日志文件可能被整体替换"
                f" (belongs to journal {statement.journal_id}: the journal file was replaced)"
            )
        return _Expectation(statement.hash, origin, error)

    def unvouched_from(self) -> int:
        return self.vouched_upto + 1

    def stored_hash(self, seq: int) -> bytes | None:
        """The hash of a record the walk has passed, read again where the walk found it."""
        if self.current is not None and self.current[0] <= seq < self.next_seq:
            conn = self.current[1]
        else:
            path = next((p for first, last, p in self.walked if first <= seq <= last), None)
            if path is None:
                return None
            if self._looked_up is None or self._looked_up[0] != path:
                self._close_looked_up()
                self._looked_up = (path, connect(path, readonly=True))
            conn = self._looked_up[1]
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return bytes(row[0]) if row else None

    def close(self) -> None:
        self._close_looked_up()
        if self.log is not None:
            self.log.close()

    def _close_looked_up(self) -> None:
        if self._looked_up is not None:
            self._looked_up[1].close()
            self._looked_up = None


class _LogFeed:
    """The checkpoint log's statements as the walk reaches their records: up to `window` lines
    read ahead, handed out lowest record first (the lines for one record in file order)."""

    def __init__(self, reading: checkpoint_log.LogReading, window: int) -> None:
        self._reading = reading
        self._lines = reading.lines()
        self._window = window
        self._ahead: list[tuple[int, int, Statement]] = []
        self._more = True
        # The lowest record a statement read ahead is for; 0 until the first lines are read.
        self.lowest = 0

    def take(self, seq: int) -> Iterator[tuple[int, Statement]]:
        """(line number, statement) for records up to `seq`, including lines read meanwhile."""
        self._fill()
        while self._ahead and self._ahead[0][0] <= seq:
            _, number, statement = heapq.heappop(self._ahead)
            self._fill()
            yield number, statement

    def rest(self) -> Iterator[tuple[int, Statement]]:
        """Every statement not handed out yet, to the log's end (whatever record it names)."""
        self._fill()
        while self._ahead:
            _, number, statement = heapq.heappop(self._ahead)
            self._fill()
            yield number, statement

    def close(self) -> None:
        self._reading.close()

    def _fill(self) -> None:
        while self._more and len(self._ahead) < self._window:
            line = next(self._lines, None)
            if line is None:
                self._more = False
            elif line.statement is None:
                # Every line parsed when the log was first read: the file changed since.
                raise _Bad(None, line.problem or "")
            else:
                heapq.heappush(self._ahead, (line.statement.seq, line.number, line.statement))
        self.lowest = self._ahead[0][0] if self._ahead else _NOTHING_AHEAD


class _OwnCheckpoints:
    """The checkpoints a journal file or segment holds itself, read in record order as the walk
    reaches them."""

    def __init__(self, rows: sqlite3.Cursor, journal_id: str, origin: str) -> None:
        self._rows = rows
        self._journal_id = journal_id
        self.origin = origin
        self._next: Statement | None = None
        self.lowest = _NOTHING_AHEAD
        self._advance()

    def take(self, seq: int) -> Iterator[Statement]:
        while self._next is not None and self._next.seq <= seq:
            statement = self._next
            self._advance()
            yield statement

    def rest(self) -> Iterator[Statement]:
        while self._next is not None:
            statement = self._next
            self._advance()
            yield statement

    def _advance(self) -> None:
        row = self._rows.fetchone()
        if row is None:
            self._next, self.lowest = None, _NOTHING_AHEAD
            return
        self._next = Statement(
            "checkpoint", self._journal_id, row[0], bytes(row[1]), row[2], row[3], bytes(row[4])
        )
        self.lowest = row[0]


# Where a statement stands among those for one record, as the walk meets them: the checkpoint
# log's lines (in file order) first, then the journal's own checkpoint.
_FROM_LOG = 0
_FROM_JOURNAL = 1


@dataclass
class _Beyond:
    """Statements for records after the journal's end, kept in bounded memory: the first that is
    not genuine and the newest (the first met for the newest record), each with its order key
    (record, where from, line number)."""

    first_error: tuple[tuple[int, int, int], _Expectation] | None = None
    newest: tuple[tuple[int, int, int], _Expectation] | None = None

    def add(self, key: tuple[int, int, int], expectation: _Expectation) -> None:
        if expectation.error is not None and (
            self.first_error is None or key < self.first_error[0]
        ):
            self.first_error = (key, expectation)
        if (
            self.newest is None
            or key[0] > self.newest[0][0]
            or (key[0] == self.newest[0][0] and key < self.newest[0])
        ):
            self.newest = (key, expectation)


def _line_origin(number: int) -> str:
    return f"检查点日志第 {number} 行 (checkpoint log line {number})"


def verify(
    journal_path: Path,
    verifier: StatementVerifier,
    *,
    log_path: Path | None = None,
    archived: Iterable[Path] | None = None,
) -> VerifyResult:
    """Verify the whole history: archived segments (oldest first), then the live journal."""
    sources = list(segments(journal_path) if archived is None else archived)
    log_path = checkpoint_log.log_path(journal_path) if log_path is None else log_path
    walk = _Walk(verifier)
    try:
        if not journal_path.exists():
            raise _Bad(None, f"审计日志不存在 (no journal at {journal_path})")
        live_conn = connect(journal_path, readonly=True)
        try:
            walk.journal_id = read_meta(live_conn).get("journal_id")
        finally:
            live_conn.close()
        if walk.journal_id is None:
            raise _Bad(1, "日志缺少标识，无法核验 (journal has no id: not a ShareGuard journal)")
        walk.log = _LogFeed(_read_log(walk, log_path), LOG_WINDOW)
        for segment in sources:
            _walk_source(walk, segment, live=False)
        _walk_source(walk, journal_path, live=True)
        _check_beyond_end(walk)
    except _Bad as bad:
        return VerifyResult(
            False,
            walk.records,
            bad.seq,
            bad.problem,
            len(sources),
            walk.signatures,
            walk.next_seq - 1,
            tuple(walk.notes),
        )
    finally:
        walk.close()
    return VerifyResult(
        True,
        walk.records,
        segments=len(sources),
        signatures=walk.signatures,
        last_seq=walk.next_seq - 1,
        notes=tuple(walk.notes),
        unsealed_from=walk.unsealed_from,
    )


def verify_segment(path: Path, verifier: StatementVerifier) -> VerifyResult:
    """Verify one archived segment on its own, wherever it is kept, with the public key."""
    walk = _Walk(verifier)
    try:
        conn = connect(path, readonly=True)
        try:
            meta = read_meta(conn)
        finally:
            conn.close()
        if meta.get("kind") != "segment":
            raise _Bad(None, f"不是归档分段 (not an archived segment): {path}")
        walk.journal_id = meta["journal_id"]
        walk.next_seq, walk.prev = base_of(meta)
        walk.next_seq += 1
        walk.vouched_upto = walk.next_seq - 1
        _walk_source(walk, path, live=False)
    except _Bad as bad:
        return VerifyResult(
            False, walk.records, bad.seq, bad.problem, 1, walk.signatures, walk.next_seq - 1
        )
    finally:
        walk.close()
    return VerifyResult(
        True, walk.records, segments=1, signatures=walk.signatures, last_seq=walk.next_seq - 1
    )


def _read_log(walk: _Walk, path: Path) -> checkpoint_log.LogReading:
    """Open the checkpoint log and parse it through once, keeping nothing but what is wrong."""
    try:
        reading = checkpoint_log.open_log(path)
    except FileNotFoundError:
        raise _Bad(
            None,
            f"检查点日志不存在，无法确认末尾记录未被截去 (checkpoint log missing: {path})",
        ) from None
    try:
        problems: list[str] = []
        unnamed = 0
        for line in reading.lines():
            if line.problem is None:
                continue
            if len(problems) < PROBLEMS_NAMED:
                problems.append(line.problem)
            else:
                unnamed += 1
        if unnamed:
            problems.append(
                f"另有 {unnamed} 行无法解析 ({unnamed} more lines of the checkpoint log cannot be parsed)"
            )
        if problems:
            raise _Bad(None, "; ".join(problems))
    except BaseException:
        reading.close()
        raise
    if reading.partial_tail:
        walk.notes.append("检查点日志末行不完整，已忽略 (partial last line ignored)")
    return reading


def _walk_source(walk: _Walk, path: Path, *, live: bool) -> None:
    conn = connect(path, readonly=True)
    indexed = live and _attach_index(walk, conn, index_path(path))
    try:
        # One snapshot for checkpoints, records and seal: the gateway may be writing meanwhile,
        # and a seal newer than the records read would look like records cut off. The index's
        # snapshot is taken first (by reading its mark), so it indexes nothing the journal's lacks.
        conn.execute("BEGIN")
        if indexed:
            indexed = _read_index_mark(walk, conn)
        meta = read_meta(conn)
        name = "当前日志 (live journal)" if live else f"归档分段 {path.name} (segment)"
        if meta.get("journal_id") != walk.journal_id:
            raise _Bad(
                walk.next_seq,
                f"{name} 属于另一份日志 (belongs to another journal {meta.get('journal_id')})",
            )
        base_seq, base_hash = base_of(meta)
        if base_seq > walk.next_seq - 1:
            raise _Bad(
                walk.next_seq,
                f"记录 {walk.next_seq}–{base_seq} 缺失：归档分段不在 {archive_dir(path)}"
                f" (records {walk.next_seq}-{base_seq} missing: archived segment absent)",
            )
        skip_upto = walk.next_seq - 1
        if base_seq == skip_upto and base_hash != walk.prev:
            raise _Bad(
                base_seq + 1,
                f"{name} 与前一段的哈希链不衔接 (does not continue the chain at {base_seq})",
            )
        if base_seq < skip_upto:
            # The live journal after an archival that stopped before removing what it copied:
            # the segment is the authoritative copy; the two must agree where they meet.
            row = conn.execute("SELECT hash FROM events WHERE seq = ?", (skip_upto,)).fetchone()
            if row is None or bytes(row[0]) != walk.prev:
                raise _Bad(
                    skip_upto,
                    f"{name} 与归档分段在记录 {skip_upto} 处不一致 (disagrees with the archive)",
                )
            walk.notes.append(
                f"记录 {base_seq + 1}–{skip_upto} 已归档但仍在当前日志中，可再次运行 audit archive 清理"
                f" (records already archived are still in the live journal)"
            )
        # Those before `skip_upto` are vouched for by the archived segment that holds the record.
        own = _OwnCheckpoints(
            conn.execute(
                "SELECT seq, hash, signed_at, key_id, signature FROM checkpoints"
                " WHERE seq >= ? ORDER BY seq",
                (skip_upto,),
            ),
            walk.journal_id or "",
            f"{name} 中的检查点 (checkpoint in {name})",
        )
        for statement in own.take(skip_upto):
            # The checkpoint an archival leaves where the live journal takes over.
            error = walk.verifier.check(statement)
            _meet(walk, statement.seq, walk.prev, _Expectation(statement.hash, own.origin, error))
        if indexed:
            walk.subjects.after = skip_upto
        walk.current = (skip_upto + 1, conn)
        _walk_records(walk, conn, skip_upto, own)
        if live:
            _finish_log(walk, own)
            _check_seal(walk, conn, base_seq, base_hash)
            if indexed:
                _check_index(walk, conn, index_path(path))
        else:
            _check_segment_end(walk, meta, name)
            stray = next(own.rest(), None)
            if stray is not None:
                raise _Bad(
                    None,
                    f"{name} 含有超出其末尾的检查点（记录 {stray.seq}），不是归档写出的分段"
                    f" (the segment holds a checkpoint for record {stray.seq}, beyond its"
                    " end: not as archiving writes it)",
                )
        walk.walked.append((skip_upto + 1, walk.next_seq - 1, path))
    except sqlite3.DatabaseError as exc:
        raise _Bad(walk.next_seq, f"无法读取 {path} (cannot read): {exc}") from exc
    finally:
        walk.current = None
        conn.close()


def _attach_index(walk: _Walk, conn: sqlite3.Connection, path: Path) -> bool:
    """Attach the search index (before the snapshot begins: SQLite attaches outside transactions);
    False if there is none to check."""
    if not path.exists():
        return False
    try:
        conn.execute("ATTACH DATABASE ? AS ix", (f"file:{path}?mode=ro",))
    except sqlite3.DatabaseError as exc:
        walk.notes.append(f"检索索引无法读取，未核对 (search index unreadable, not checked): {exc}")
        return False
    return True


def _read_index_mark(walk: _Walk, conn: sqlite3.Connection) -> bool:
    """Note how far the index says it reaches (0: nowhere, so it must hold nothing), in the
    transaction, which this read pins to the index's current snapshot; False if unreadable."""
    try:
        row = conn.execute("SELECT value FROM ix.index_meta WHERE name = 'upto'").fetchone()
        walk.subjects.upto = int(row[0]) if row else 0
    except (sqlite3.DatabaseError, TypeError, ValueError) as exc:
        walk.notes.append(f"检索索引无法读取，未核对 (search index unreadable, not checked): {exc}")
        return False
    return True


def _check_index(walk: _Walk, conn: sqlite3.Connection, index: Path) -> None:
    """The search index is derived from the journal; searches and reports trust it for the
    records up to its mark, so a row changed, removed or added there, or a mark moved, would hide
    events from them (the rules are in the module's notes)."""
    try:
        found = _index_problem(walk, conn)
    except sqlite3.DatabaseError as exc:
        found = (walk.subjects.after + 1, f"无法读取 (unreadable: {exc})")
    if found is not None:
        bad, what = found
        raise _Bad(
            bad,
            f"检索索引与日志不符（自记录 {bad} 起）：{what}；检索和报表可能漏掉事件；日志本身完好，"
            f"删除 {index} 后由日志重建"
            f" (the search index disagrees with the journal from record {bad}: searches and"
            " reports could miss events; the journal itself is intact — delete the index file"
            " and it is rebuilt from the journal)",
        )


def _index_problem(walk: _Walk, conn: sqlite3.Connection) -> tuple[int, str] | None:
    """The first record the index is wrong about, and how (Chinese with English), or None."""
    tally = walk.subjects
    last = walk.next_seq - 1
    if tally.upto > last:
        return last + 1, (
            f"索引标记为记录 {tally.upto}，日志止于记录 {last}"
            f" (its mark says it reaches record {tally.upto}; the journal ends at {last})"
        )
    # Entries beyond the mark (cheap: their primary key), then pairs, in one pass over them all.
    row = conn.execute("SELECT min(seq) FROM ix.entries WHERE seq > ?", (tally.upto,)).fetchone()
    beyond: int | None = row[0]
    pairs, digest, pairs_beyond = _index_pairs(conn, tally)
    if pairs_beyond is not None:
        beyond = pairs_beyond if beyond is None else min(beyond, pairs_beyond)
    if beyond is not None:
        return beyond, (
            f"含有其标记（记录 {tally.upto}）之后的条目，标记被调低"
            f" (it holds rows beyond its mark, record {tally.upto}: the mark was lowered)"
        )
    span = (tally.after, tally.upto)
    differs = " OR ".join(f"e.{c} IS NOT j.{c}" for c in COLUMNS)
    row = conn.execute(
        "SELECT min(seq) FROM ("
        f" SELECT e.seq FROM ix.entries e LEFT JOIN main.events j USING (seq)"
        f"  WHERE e.seq > ? AND e.seq <= ? AND (j.seq IS NULL OR {differs})"
        " UNION ALL SELECT j.seq FROM main.events j LEFT JOIN ix.entries e USING (seq)"
        "  WHERE j.seq > ? AND j.seq <= ? AND e.seq IS NULL)",
        (*span, *span),
    ).fetchone()
    if row[0] is not None:
        return row[0], (
            f"记录 {row[0]} 的检索条目被改动或删除"
            f" (the entry for record {row[0]} was changed, removed or added)"
        )
    if (pairs, digest & _SUM_MASK) != (tally.pairs, tally.digest & _SUM_MASK):
        return tally.after + 1, (
            f"记录 {tally.after + 1}–{tally.upto} 的数据主体条目被改动"
            f" (the data-subject pairs (subject, record) of records {tally.after + 1}-"
            f"{tally.upto} differ from those the records name: a search for a person could miss"
            " them)"
        )
    return None


def _index_pairs(conn: sqlite3.Connection, tally: _SubjectTally) -> tuple[int, int, int | None]:
    """The index's pairs for the records it should cover: how many, their multiset hash (as
    `_SubjectTally`), and the first record a pair beyond the mark names (None if none), read
    in one streamed pass (the pairs' table has no index by record)."""
    count = digest = 0
    beyond: int | None = None
    lowest = min(tally.after, tally.upto)
    for subject, seq in conn.execute(
        "SELECT subject, seq FROM ix.subject_index WHERE seq > ?", (lowest,)
    ):
        if type(seq) is not int or seq > tally.upto:
            first = seq if type(seq) is int else tally.upto + 1
            beyond = first if beyond is None else min(beyond, first)
        elif seq > tally.after:
            if type(subject) is not int:
                return -1, 0, beyond  # not a key the indexer writes: matches no record's pair
            count += 1
            digest += tally.hash(subject, seq)
    return count, digest, beyond


def _walk_records(
    walk: _Walk, conn: sqlite3.Connection, skip_upto: int, own: _OwnCheckpoints
) -> None:
    log = walk.log
    cur = conn.execute(
        f"SELECT seq, doc, hash, {', '.join(COLUMNS)} FROM events WHERE seq > ? ORDER BY seq",
        (skip_upto,),
    )
    for row in cur:
        seq, doc, stored = row[0], row[1], bytes(row[2])
        if seq != walk.next_seq:
            raise _Bad(
                walk.next_seq,
                f"记录 {walk.next_seq} 缺失 (record {walk.next_seq} missing; next is {seq})",
            )
        if chain_hash(walk.prev, seq, doc.encode("utf-8")) != stored:
            raise _Bad(seq, f"记录 {seq} 的哈希链不符 (hash chain broken at record {seq})")
        mismatch, subjects = _index_mismatch(seq, doc, row[3:])
        if mismatch:
            raise _Bad(seq, f"记录 {seq} 的索引列被改动 (index column {mismatch} altered)")
        walk.subjects.add(seq, subjects)
        if log is not None and seq >= log.lowest:
            for number, statement in log.take(seq):
                _meet_at(walk, seq, stored, statement, _line_origin(number))
        if seq >= own.lowest:
            for statement in own.take(seq):
                _meet_at(walk, seq, stored, statement, own.origin)
        walk.prev = stored
        walk.next_seq += 1
        walk.records += 1


def _meet_at(walk: _Walk, seq: int, stored: bytes, statement: Statement, origin: str) -> None:
    """Meet a statement when the walk is at record `seq` (whose hash is `stored`): one for this
    record, or one read only now for a record passed already."""
    expectation = walk.expectation(statement, origin)
    if statement.seq == seq:
        _meet(walk, seq, stored, expectation)
    else:
        _meet_late(walk, statement.seq, expectation)


def _meet_late(walk: _Walk, seq: int, expectation: _Expectation) -> None:
    """A statement for a record the walk passed before reading it (see the module's notes)."""
    _count_genuine(walk, seq, expectation)
    stored = walk.stored_hash(seq)
    if stored is None:
        raise _Bad(
            _record(seq),
            f"{expectation.origin} 为记录 {seq} 作了签名声明，日志中却没有这条记录"
            f" ({expectation.origin} vouches for record {seq}, which no part of the journal"
            " holds)",
        )
    if stored != expectation.hash:
        raise _rewritten(min(seq, walk.unvouched_from()), seq, expectation)
    walk.vouched_upto = max(walk.vouched_upto, seq)


def _finish_log(walk: _Walk, own: _OwnCheckpoints) -> None:
    """At the live journal's end, still in its snapshot: the log's lines not met yet are late
    ones, checked now, or for records after the end, summed up for `_check_beyond_end` with the
    journal's own checkpoints there."""
    last = walk.next_seq - 1
    if walk.log is not None:
        for number, statement in walk.log.rest():
            if statement.seq <= last:
                _meet_late(walk, statement.seq, walk.expectation(statement, _line_origin(number)))
            else:
                key = (statement.seq, _FROM_LOG, number)
                walk.beyond.add(key, walk.expectation(statement, _line_origin(number)))
    for statement in own.rest():
        key = (statement.seq, _FROM_JOURNAL, 0)
        walk.beyond.add(key, walk.expectation(statement, own.origin))


def _count_genuine(walk: _Walk, seq: int, expectation: _Expectation) -> None:
    """Count a statement's signature as checked; fail if it is not genuine."""
    walk.signatures += 1
    if expectation.error is not None:
        raise _Bad(
            _record(seq),
            f"{expectation.origin} 为记录 {seq} 所作的签名声明不可信：{expectation.error}"
            f" (the statement for record {seq} is not genuine)",
        )


def _meet(walk: _Walk, seq: int, stored: bytes, expectation: _Expectation) -> None:
    _count_genuine(walk, seq, expectation)
    if expectation.hash != stored:
        raise _rewritten(walk.unvouched_from(), seq, expectation)
    walk.vouched_upto = seq


def _rewritten(first: int, seq: int, expectation: _Expectation) -> _Bad:
    return _Bad(
        first,
        f"记录 {first}–{seq} 与签名检查点不符：哈希链被改写"
        f" (records differ from the checkpoint signed for record {seq}: the chain was"
        f" rewritten; source {expectation.origin})",
    )


def _record(seq: int) -> int | None:
    """A statement's record number as the first bad record: none for one that cannot exist."""
    return seq if seq >= 1 else None


def _check_seal(walk: _Walk, conn: sqlite3.Connection, base_seq: int, base_hash: bytes) -> None:
    last = walk.next_seq - 1
    seal = read_seal(conn, walk.journal_id or "")
    if seal is None:
        if last == 0:
            return
        raise _Bad(
            last + 1,
            f"日志的签名封印缺失：记录 {last} 之后的记录可能被截去"
            f" (the journal's seal is missing: records after {last} may have been cut off)",
        )
    walk.signatures += 1
    error = walk.verifier.check(seal)
    if error is not None:
        raise _Bad(
            walk.unvouched_from(),
            f"日志封印{error}：记录 {walk.unvouched_from()} 起无可信签名"
            f" (the seal is not genuine; records from {walk.unvouched_from()} are not vouched for)",
        )
    if seal.seq > last:
        raise _Bad(
            last + 1,
            f"记录 {last + 1}–{seal.seq} 被从末尾截去（封印签于 {seal.signed_at}）"
            f" (records {last + 1}-{seal.seq} were cut off the end; sealed at {seal.signed_at})",
        )
    if seal.seq < last and seal.kind == OPEN_SEAL:
        _check_open_seal(walk, conn, seal, base_seq, base_hash)
        return
    if seal.seq < last:
        raise _Bad(
            seal.seq + 1,
            f"记录 {seal.seq + 1}–{last} 不在封印之内：由网关以外写入"
            f" (records after the seal at {seal.seq} were added outside the gateway)",
        )
    if seal.hash != walk.prev:
        raise _Bad(
            walk.unvouched_from(),
            f"记录 {walk.unvouched_from()}–{last} 与封印不符：哈希链被改写"
            f" (the newest records differ from the sealed head: the chain was rewritten)",
        )
    walk.vouched_upto = last


def _check_open_seal(
    walk: _Walk, conn: sqlite3.Connection, seal: Statement, base_seq: int, base_hash: bytes
) -> None:
    """A running (or crashed) writer's seal, behind the head: it must match the chain where it
    was signed; the records after it are vouched for by the chain alone, and said so."""
    last = walk.next_seq - 1
    if seal.seq == base_seq:
        sealed: bytes | None = base_hash
    else:
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seal.seq,)).fetchone()
        sealed = bytes(row[0]) if row else None  # None: the record was archived since
    if sealed is not None and sealed != seal.hash:
        raise _Bad(
            walk.unvouched_from(),
            f"记录 {walk.unvouched_from()}–{seal.seq} 与封印不符：哈希链被改写"
            f" (records differ from the seal signed for record {seal.seq}: the chain was"
            " rewritten)",
        )
    if sealed is not None:
        walk.vouched_upto = max(walk.vouched_upto, seal.seq)
    if walk.vouched_upto >= last:
        return  # a checkpoint signed since covers the rest
    walk.unsealed_from = walk.unvouched_from()
    walk.notes.append(
        f"记录 {walk.unsealed_from}–{last} 尚未封印：运行中的网关刚刚写入，或网关在封印前停止；"
        f"哈希链完好，网关下次打开日志时封印"
        f" (records {walk.unsealed_from}-{last} are not sealed yet: written a moment ago by a"
        " running gateway, or by one that stopped before sealing them; their hash chain is"
        " intact, and the gateway seals them when it next opens the journal)"
    )


def _check_segment_end(walk: _Walk, meta: dict[str, str], name: str) -> None:
    last = walk.next_seq - 1
    want = int(meta.get("last_seq", "-1"))
    if last != want:
        raise _Bad(
            min(last, want) + 1,
            f"{name} 应止于记录 {want}，实际止于 {last} (segment should end at {want}, ends at {last})",
        )
    if walk.vouched_upto != last:
        raise _Bad(
            walk.unvouched_from(),
            f"{name} 的末条记录没有签名检查点 (no signed checkpoint at the segment's end)",
        )


def _check_beyond_end(walk: _Walk) -> None:
    last = walk.next_seq - 1
    if walk.beyond.first_error is not None:
        _, expectation = walk.beyond.first_error
        raise _Bad(None, f"{expectation.origin}: {expectation.error}")
    if walk.beyond.newest is not None:
        (newest, _, _), expectation = walk.beyond.newest
        origin = expectation.origin
        raise _Bad(
            last + 1,
            f"记录 {last + 1}–{newest} 被从末尾截去或日志被替换为旧副本（{origin} 记有记录 {newest}）"
            f" (records {last + 1}-{newest} were cut off the end, or the journal was replaced by"
            f" an older copy: {origin} vouches for record {newest})",
        )


def _index_mismatch(seq: int, doc_text: str, cols: Iterable[Any]) -> tuple[str | None, set[int]]:
    """The first filter column that disagrees with the stored document (None if all agree), and
    the record's data-subject keys as the search index should hold them."""
    try:
        doc = orjson.loads(doc_text)
        sg = doc.get("shareguard") or {}
        expected = (
            doc.get("@timestamp"),
            sg.get("event_type"),
            sg.get("request_id"),
            (doc.get("user") or {}).get("id"),
            (doc.get("organization") or {}).get("id"),
            sg.get("dataset"),
            sg.get("purpose"),
            sg.get("decision"),
        )
        hashes = (sg.get("data_subjects") or {}).get("hashes") or ()
        subjects = {subject_key(h) for h in hashes}
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        raise _Bad(
            seq, f"记录 {seq} 无法解析，不是网关写入的事件 (record {seq} unreadable)"
        ) from None
    for name, want, have in zip(COLUMNS, expected, cols, strict=True):
        if want != have:
            return name, subjects
    return None, subjects
