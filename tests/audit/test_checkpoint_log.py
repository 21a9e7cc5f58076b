"""The checkpoint log read line by line: what verify makes of lines that are bad, unfinished or out
of order, and the newest statement read from the file's end."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from gateway.audit import checkpoint_log, integrity
from gateway.audit.archive import archive
from gateway.audit.integrity import segments, verify, verify_segment
from gateway.audit.journal import Journal
from gateway.audit.signing import Statement, StatementSigner
from tests.audit.tampering import rewrite_chain_from, tamper
from tests.factories import access_event as event


@pytest.fixture
def journal_path(tmp_path: Path, signer: StatementSigner) -> Path:
    """Ten records, each its own commit, with a signed checkpoint at every one of them."""
    path = tmp_path / "audit" / "journal.db"
    journal = Journal(path, signer, checkpoint_seconds=0)
    for n in range(1, 11):
        journal.append(event(n))
    journal.close()
    return path


def log_of(path: Path) -> Path:
    return checkpoint_log.log_path(path)


def log_lines(path: Path) -> list[bytes]:
    return log_of(path).read_bytes().splitlines(keepends=True)


def statement_line(statement: Statement) -> bytes:
    return orjson.dumps(statement.to_json()) + b"\n"


def seqs(path: Path) -> list[int]:
    return [line.statement.seq for line in checkpoint_log.stream(path) if line.statement]


def test_when_a_line_far_ahead_cannot_be_parsed_then_verify_names_it_before_any_record(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "LOG_WINDOW", 2)
    lines = log_lines(journal_path)
    log_of(journal_path).write_bytes(b"".join(lines) + b'{"kind": "checkpoint"\n')
    tamper(journal_path, "DELETE FROM events WHERE seq = 2")  # met long before that line
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq is None and result.records == 0
    number = len(lines) + 1
    assert result.problem is not None
    assert result.problem.startswith(f"检查点日志第 {number} 行无法解析")
    assert f"(checkpoint log line {number})" in result.problem


@pytest.mark.parametrize(
    "bad",
    [b"[1, 2]", b'"a string"', b"12", b'{"kind": "checkpoint", "seq": "x"}', b"not json"],
    ids=["an array", "a string", "a number", "a field of the wrong type", "not JSON"],
)
def test_when_a_line_is_json_but_no_statement_then_verify_names_it_instead_of_failing(
    journal_path: Path, signer: StatementSigner, bad: bytes
) -> None:
    with log_of(journal_path).open("ab") as f:
        f.write(bad + b"\n")
    result = verify(journal_path, signer.verifier)
    number = len(log_lines(journal_path))
    assert not result.ok and f"checkpoint log line {number}" in (result.problem or "")


def test_when_many_lines_cannot_be_parsed_then_the_first_are_named_and_the_rest_counted(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "PROBLEMS_NAMED", 2)
    with log_of(journal_path).open("ab") as f:
        f.write(b"x\n\ny\nz\nw\n")
    first = len(log_lines(journal_path)) - 4  # the blank line is counted, not reported
    problem = verify(journal_path, signer.verifier).problem or ""
    assert f"checkpoint log line {first})" in problem and f"line {first + 2})" in problem
    assert f"line {first + 3})" not in problem and "2 more lines" in problem


def test_when_a_line_is_longer_than_any_statement_then_it_is_named_without_being_held(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint_log, "MAX_LINE", 1000)
    lines = log_lines(journal_path)
    log_of(journal_path).write_bytes(
        b"".join(lines[:3]) + b"x" * 5000 + b"\n" + b"".join(lines[3:])
    )
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.problem is not None
    assert "checkpoint log line 4" in result.problem and "longer than 1000" in result.problem
    read = list(checkpoint_log.stream(log_of(journal_path)))
    assert [line.number for line in read if line.problem] == [4]
    assert [line.number for line in read if line.statement] == [
        n for n in range(1, len(lines) + 2) if n != 4
    ]


def test_when_the_last_line_was_cut_short_by_a_crash_then_it_is_ignored_and_said_so(
    journal_path: Path, signer: StatementSigner
) -> None:
    log = log_of(journal_path)
    before = checkpoint_log.last(log)
    whole = statement_line(signer.sign("checkpoint", "x" * 32, 99, bytes(32), "now"))
    with log.open("ab") as f:
        f.write(whole[:40])
    result = verify(journal_path, signer.verifier)
    assert result.ok and "partial last line ignored" in " ".join(result.notes)
    assert checkpoint_log.last(log) == before
    assert 99 not in seqs(log)


def test_when_lines_are_out_of_order_within_the_window_then_verify_says_what_a_sorted_log_does(
    journal_path: Path, signer: StatementSigner
) -> None:
    tamper(journal_path, "UPDATE events SET doc = replace(doc, '\"GET\"', '\"PUT\"') WHERE seq = 6")
    rewrite_chain_from(journal_path, 6)
    in_order = verify(journal_path, signer.verifier)
    lines = log_lines(journal_path)
    random.Random(7).shuffle(lines)
    log_of(journal_path).write_bytes(b"".join(lines))
    shuffled = verify(journal_path, signer.verifier)
    assert not in_order.ok and in_order.first_bad_seq == 6
    # The same verdict, naming the line where the statement for record 6 now is.
    number = 1 + next(i for i, line in enumerate(lines) if orjson.loads(line)["seq"] == 6)
    assert replace(shuffled, problem=None) == replace(in_order, problem=None)
    assert shuffled.problem == (in_order.problem or "").replace(
        "第 6 行", f"第 {number} 行"
    ).replace("line 6)", f"line {number})")


@pytest.mark.parametrize("window", [1, 3, 1024])
def test_when_lines_are_far_out_of_order_then_every_one_is_still_checked(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    in_order = verify(journal_path, signer.verifier)
    monkeypatch.setattr(integrity, "LOG_WINDOW", window)
    log_of(journal_path).write_bytes(b"".join(reversed(log_lines(journal_path))))
    result = verify(journal_path, signer.verifier)
    assert result.ok and in_order.ok, result.problem
    assert result.signatures == in_order.signatures


def test_when_a_line_read_after_its_record_is_forged_then_verify_fails(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(integrity, "LOG_WINDOW", 1)
    line = orjson.loads(log_lines(journal_path)[2])
    assert line["seq"] == 3
    line["hash"] = "00" * 32
    with log_of(journal_path).open("ab") as f:
        f.write(orjson.dumps(line) + b"\n")
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 3
    assert "signature invalid" in (result.problem or "")


def test_when_a_genuine_line_read_after_its_record_disagrees_then_verify_fails(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed for this journal, but over another hash: the chain was rewritten since.
    monkeypatch.setattr(integrity, "LOG_WINDOW", 1)
    journal_id = orjson.loads(log_lines(journal_path)[0])["journal_id"]
    other = signer.sign("checkpoint", journal_id, 3, bytes(32), "2026-01-01T00:00:00Z")
    with log_of(journal_path).open("ab") as f:
        f.write(statement_line(other))
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 3
    number = len(log_lines(journal_path))
    assert "rewritten" in (result.problem or "")
    assert f"checkpoint log line {number})" in (result.problem or "")


@pytest.mark.parametrize("window", [1, 1024])
def test_when_a_line_names_a_record_past_any_integer_then_the_lines_after_it_are_read_too(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    monkeypatch.setattr(integrity, "LOG_WINDOW", window)
    journal_id = orjson.loads(log_lines(journal_path)[0])["journal_id"]
    huge = signer.sign("checkpoint", journal_id, 2**64 - 1, bytes(32), "now")
    forged = orjson.loads(log_lines(journal_path)[2])
    forged["hash"] = "00" * 32
    with log_of(journal_path).open("ab") as f:
        f.write(statement_line(huge) + orjson.dumps(forged) + b"\n")
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "signature invalid" in (result.problem or "")
    lines = log_lines(journal_path)
    log_of(journal_path).write_bytes(b"".join(lines[:-1]))
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 11 and "cut off" in (result.problem or "")


def test_when_a_line_vouches_for_a_record_before_the_first_then_verify_fails(
    journal_path: Path, signer: StatementSigner
) -> None:
    journal_id = orjson.loads(log_lines(journal_path)[0])["journal_id"]
    with log_of(journal_path).open("ab") as f:
        f.write(statement_line(signer.sign("checkpoint", journal_id, 0, bytes(32), "now")))
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "no part of the journal holds" in (result.problem or "")
    assert result.first_bad_seq is None  # no record 0 to name as the first bad one


def test_when_archive_statements_come_long_after_their_records_then_the_history_verifies(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive(journal_path, signer, upto=4)
    journal = Journal(journal_path, signer, checkpoint_seconds=0)
    for n in range(11, 15):
        journal.append(event(n))
    journal.close()
    archive(journal_path, signer, upto=8)
    log = log_of(journal_path)
    assert seqs(log)[-1] == 8  # the second archive's statement, after checkpoints up to 14
    monkeypatch.setattr(integrity, "LOG_WINDOW", 1)
    result = verify(journal_path, signer.verifier)
    assert result.ok and result.records == 14 and result.segments == 2, result.problem
    # A statement for a record in the first segment, over another hash, read last of all.
    journal_id = orjson.loads(log_lines(journal_path)[0])["journal_id"]
    with log.open("ab") as f:
        f.write(statement_line(signer.sign("checkpoint", journal_id, 2, bytes(32), "now")))
    result = verify(journal_path, signer.verifier)
    assert not result.ok and result.first_bad_seq == 2 and "rewritten" in (result.problem or "")


def test_when_a_segment_holds_a_checkpoint_beyond_its_end_then_it_fails(
    journal_path: Path, signer: StatementSigner
) -> None:
    archive(journal_path, signer, upto=4)
    (segment,) = segments(journal_path)
    segment.chmod(0o640)
    conn = sqlite3.connect(segment)
    conn.execute("ATTACH DATABASE ? AS live", (str(journal_path),))
    conn.execute("INSERT INTO checkpoints SELECT * FROM live.checkpoints WHERE seq = 6")
    conn.commit()
    conn.close()
    for result in (verify(journal_path, signer.verifier), verify_segment(segment, signer.verifier)):
        assert not result.ok and "beyond its end" in (result.problem or "")


def test_when_lines_are_appended_after_the_log_was_opened_then_that_reading_leaves_them_out(
    journal_path: Path, signer: StatementSigner
) -> None:
    log = log_of(journal_path)
    with checkpoint_log.open_log(log) as reading:
        first = [line.number for line in reading.lines()]
        checkpoint_log.append(log, signer.sign("checkpoint", "x" * 32, 99, bytes(32), "now"))
        again = [line.number for line in reading.lines()]
    assert first == again == list(range(1, len(first) + 1))
    assert seqs(log)[-1] == 99


def test_the_newest_statement_is_read_from_the_end(
    tmp_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "j-checkpoints.log"
    assert checkpoint_log.last(log) is None
    log.write_bytes(b"")
    assert checkpoint_log.last(log) is None
    a, b = (signer.sign("checkpoint", "j" * 32, n, bytes(32), "now") for n in (1, 2))
    log.write_bytes(statement_line(a)[:-1])  # no newline: not written whole yet
    assert checkpoint_log.last(log) is None
    log.write_bytes(statement_line(a))
    assert checkpoint_log.last(log) == a
    monkeypatch.setattr(checkpoint_log, "MAX_LINE", 1000)
    for chunk in (7, 64, 8192):  # lines split across the chunks read backwards
        monkeypatch.setattr(checkpoint_log, "_BACK_CHUNK", chunk)
        log.write_bytes(statement_line(a) + statement_line(b) + b"\n  \nnot json\n" + b"{" * 30)
        assert checkpoint_log.last(log) == b
        log.write_bytes(statement_line(a) + statement_line(b) + b"y" * 3000 + b"\n")
        assert checkpoint_log.last(log) == b
        log.write_bytes(statement_line(a) + b"y" * 3000 + b"\n" + b"z" * 3000)
        assert checkpoint_log.last(log) == a


def test_when_the_log_gets_shorter_while_it_is_read_then_that_is_a_problem(
    journal_path: Path,
) -> None:
    log = log_of(journal_path)
    with checkpoint_log.open_log(log) as reading:
        assert not [line for line in reading.lines() if line.problem]
        with log.open("r+b") as f:
            f.truncate(log.stat().st_size // 2)
        read = list(reading.lines())
    assert read[-1].statement is None and "got shorter" in (read[-1].problem or "")


def test_when_a_forged_line_names_a_record_before_the_first_then_no_record_is_named(
    journal_path: Path, signer: StatementSigner
) -> None:
    forged = replace(signer.sign("checkpoint", "x" * 32, -3, bytes(32), "now"), signature=bytes(64))
    with log_of(journal_path).open("ab") as f:
        f.write(statement_line(forged))
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "not genuine" in (result.problem or "")
    assert result.first_bad_seq is None


def test_an_unfinished_last_line_longer_than_any_statement_is_a_problem_not_a_crash(
    journal_path: Path, signer: StatementSigner
) -> None:
    # A crash cuts a ~400-byte append short; kilobytes without a newline are something else,
    # and the next append would be glued onto them.
    with log_of(journal_path).open("ab") as f:
        f.write(b"x" * (checkpoint_log.MAX_LINE + 10))
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "unfinished last line longer than" in (result.problem or "")


def test_a_line_of_megabytes_is_read_past_without_being_held(
    journal_path: Path, signer: StatementSigner
) -> None:
    import tracemalloc

    lines = log_lines(journal_path)
    log_of(journal_path).write_bytes(
        b"".join(lines[:3]) + b"x" * (10 << 20) + b"\n" + b"".join(lines[3:])
    )
    tracemalloc.start()
    try:
        result = verify(journal_path, signer.verifier)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not result.ok and "checkpoint log line 4" in (result.problem or "")
    assert peak < 1 << 20, peak  # the line is 10 MiB


def test_when_the_log_gets_shorter_between_verifys_two_readings_then_verify_fails(
    journal_path: Path, signer: StatementSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Verify parses the log once, then reads it again beside the records: a log cut in between
    # must fail it, not end the second reading early.
    log = log_of(journal_path)
    first_reading = integrity._read_log

    def then_cut(walk: object, path: Path) -> checkpoint_log.LogReading:
        reading = first_reading(walk, path)  # type: ignore[arg-type]
        with log.open("r+b") as f:
            f.truncate(log.stat().st_size // 2)
        return reading

    monkeypatch.setattr(integrity, "_read_log", then_cut)
    result = verify(journal_path, signer.verifier)
    assert not result.ok and "got shorter" in (result.problem or "")
