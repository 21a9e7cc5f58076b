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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.audit import checkpoint_log
from gateway.audit.journal import OPEN_SEAL, base_of, chain_hash, connect, read_meta, read_seal
from gateway.audit.signing import Statement, StatementVerifier
from gateway.audit.subjects import COLUMNS, index_path, subject_key

SEGMENT_GLOB = "journal-*.db"


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


_KEY_MODULUS = (
    1_000_003  # the subject keys' sum is kept modulo a prime, so it fits SQLite's integers
)


@dataclass
class _SubjectTally:
    """What the search index should hold for the live records it covers (after < seq <= upto):
    how many (subject, record) pairs, and two sums over them that any change to a pair moves."""

    after: int = 0
    upto: int = 0
    pairs: int = 0
    seq_sum: int = 0
    key_sum: int = 0

    def add(self, seq: int, keys: set[int]) -> None:
        if self.after < seq <= self.upto and keys:
            self.pairs += len(keys)
            self.seq_sum += seq * len(keys)
            self.key_sum += sum(k % _KEY_MODULUS for k in keys)


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
    expectations: dict[int, list[_Expectation]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    subjects: _SubjectTally = field(default_factory=lambda: _SubjectTally())

    def expect(self, seq: int, expectation: _Expectation) -> None:
        self.expectations.setdefault(seq, []).append(expectation)

    def statement(self, statement: Statement, origin: str) -> None:
        error = self.verifier.check(statement)
        if statement.journal_id != self.journal_id:
            error = (
                f"属于另一份日志 {statement.journal_id}，日志文件可能被整体替换"
                f" (belongs to journal {statement.journal_id}: the journal file was replaced)"
            )
        self.expect(statement.seq, _Expectation(statement.hash, origin, error))

    def unvouched_from(self) -> int:
        return self.vouched_upto + 1


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
        _load_log(walk, log_path)
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
    return VerifyResult(
        True, walk.records, segments=1, signatures=walk.signatures, last_seq=walk.next_seq - 1
    )


def _load_log(walk: _Walk, path: Path) -> None:
    contents = checkpoint_log.read(path)
    if not contents.exists:
        raise _Bad(
            None,
            f"检查点日志不存在，无法确认末尾记录未被截去 (checkpoint log missing: {path})",
        )
    if contents.problems:
        raise _Bad(None, "; ".join(contents.problems))
    if contents.partial_tail:
        walk.notes.append("检查点日志末行不完整，已忽略 (partial last line ignored)")
    for number, statement in enumerate(contents.statements, start=1):
        walk.statement(statement, f"检查点日志第 {number} 行 (checkpoint log line {number})")


def _walk_source(walk: _Walk, path: Path, *, live: bool) -> None:
    conn = connect(path, readonly=True)
    indexed = live and _attach_index(walk, conn, index_path(path))
    try:
        # One snapshot for checkpoints, records and seal: the gateway may be writing meanwhile,
        # and a seal newer than the records read would look like records cut off.
        conn.execute("BEGIN")
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
        for row in conn.execute(
            "SELECT seq, hash, signed_at, key_id, signature FROM checkpoints ORDER BY seq"
        ):
            statement = Statement(
                "checkpoint",
                walk.journal_id or "",
                row[0],
                bytes(row[1]),
                row[2],
                row[3],
                bytes(row[4]),
            )
            origin = f"{name} 中的检查点 (checkpoint in {name})"
            if statement.seq < skip_upto:
                continue  # vouched for by the archived segment that holds the record
            if statement.seq == skip_upto:
                # The checkpoint an archival leaves where the live journal takes over.
                error = walk.verifier.check(statement)
                _meet(walk, statement.seq, walk.prev, _Expectation(statement.hash, origin, error))
                continue
            walk.statement(statement, origin)
        if indexed:
            walk.subjects.after = skip_upto
        _walk_records(walk, conn, skip_upto)
        if live:
            _check_seal(walk, conn, base_seq, base_hash)
            if indexed:
                _check_index(walk, conn, index_path(path))
        else:
            _check_segment_end(walk, meta, name)
    except sqlite3.DatabaseError as exc:
        raise _Bad(walk.next_seq, f"无法读取 {path} (cannot read): {exc}") from exc
    finally:
        conn.close()


def _attach_index(walk: _Walk, conn: sqlite3.Connection, path: Path) -> bool:
    """Attach the search index (before the snapshot begins: SQLite attaches outside transactions)
    and note how far it reaches; False if there is none to check."""
    if not path.exists():
        return False
    try:
        conn.execute("ATTACH DATABASE ? AS ix", (f"file:{path}?mode=ro",))
        row = conn.execute("SELECT value FROM ix.index_meta WHERE name = 'upto'").fetchone()
    except sqlite3.DatabaseError as exc:
        walk.notes.append(f"检索索引无法读取，未核对 (search index unreadable, not checked): {exc}")
        return False
    walk.subjects.upto = int(row[0]) if row else 0
    return walk.subjects.upto > 0


def _check_index(walk: _Walk, conn: sqlite3.Connection, index: Path) -> None:
    """The search index is derived from the journal; searches and reports trust it for the
    records it covers, so a row changed or removed there would hide events from them."""
    tally = walk.subjects
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
    bad: int | None = row[0]
    if bad is None:
        pairs = conn.execute(
            "SELECT count(*), coalesce(sum(seq), 0),"
            f" coalesce(sum(((subject % {_KEY_MODULUS}) + {_KEY_MODULUS}) % {_KEY_MODULUS}), 0)"
            " FROM ix.subject_index WHERE seq > ? AND seq <= ?",
            span,
        ).fetchone()
        if tuple(pairs) != (tally.pairs, tally.seq_sum, tally.key_sum):
            bad = tally.after + 1
    if bad is not None:
        raise _Bad(
            bad,
            f"检索索引与日志不符（自记录 {bad} 起），检索和报表可能漏掉事件；日志本身完好，"
            f"删除 {index} 后由日志重建"
            f" (the search index disagrees with the journal from record {bad}: searches and"
            " reports could miss events; the journal itself is intact — delete the index file"
            " and it is rebuilt from the journal)",
        )


def _walk_records(walk: _Walk, conn: sqlite3.Connection, skip_upto: int) -> None:
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
        for expectation in walk.expectations.pop(seq, ()):
            _meet(walk, seq, stored, expectation)
        walk.prev = stored
        walk.next_seq += 1
        walk.records += 1


def _meet(walk: _Walk, seq: int, stored: bytes, expectation: _Expectation) -> None:
    walk.signatures += 1
    if expectation.error is not None:
        raise _Bad(
            seq,
            f"{expectation.origin} 为记录 {seq} 所作的签名声明不可信：{expectation.error}"
            f" (the statement for record {seq} is not genuine)",
        )
    if expectation.hash != stored:
        raise _Bad(
            walk.unvouched_from(),
            f"记录 {walk.unvouched_from()}–{seq} 与签名检查点不符：哈希链被改写"
            f" (records differ from the checkpoint signed for record {seq}: the chain was"
            f" rewritten; source {expectation.origin})",
        )
    walk.vouched_upto = seq


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
    beyond = sorted(seq for seq in walk.expectations if seq > last)
    for seq in beyond:
        for expectation in walk.expectations[seq]:
            if expectation.error is not None:
                raise _Bad(None, f"{expectation.origin}: {expectation.error}")
    if beyond:
        newest = beyond[-1]
        origin = walk.expectations[newest][0].origin
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
