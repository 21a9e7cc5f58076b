"""`shareguard audit ...` in-process: each command does its job and is itself an audit event."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit.journal import open_journal
from gateway.audit.report import parse_period
from gateway.audit.search import AuditQuery, search
from gateway.audit.signing import StatementSigner
from gateway.cli import main
from gateway.keys import SubjectHasher
from gateway.settings import Settings
from tests.audit.fake_elasticsearch import FakeElasticsearch
from tests.factories import access_event

Capture = pytest.CaptureFixture[str]


@pytest.fixture
def journal(settings: Settings) -> Settings:
    writer = open_journal(settings)
    for n in range(1, 13):
        writer.append(
            access_event(
                n,
                timestamp=datetime(2026, 2, n, 10, tzinfo=UTC),
                department="统计局" if n % 2 else "民政局",
                user_id="tj_analyst" if n % 2 else "mz_caseworker",
                records=n,
            )
        )
    writer.close()
    return settings


def run(settings: Settings, *argv: str) -> int:
    return main([*argv, "--home", str(settings.home)])


def staff_actions(settings: Settings) -> list[tuple[str, str]]:
    found = search(
        settings.journal_path,
        AuditQuery(kind="staff", newest_first=False),
        SubjectHasher.from_home(settings.keys_dir),
    )
    return [(e["event"]["action"], e["event"]["outcome"]) for e in found.events]


def test_search_prints_json_and_is_itself_recorded(journal: Settings, capsys: Capture) -> None:
    assert run(journal, "audit", "search", "--department", "统计局", "--json") == 0
    out = orjson.loads(capsys.readouterr().out)
    assert out["total"] == 6 and out["store"] == "journal" and out["pending"] == 0
    assert staff_actions(journal) == [("audit-search", "success")]


def test_when_elasticsearch_is_asked_for_but_not_configured_then_the_search_says_so(
    journal: Settings, capsys: Capture
) -> None:
    assert run(journal, "audit", "search", "--store", "elasticsearch") == 2
    assert "ELASTICSEARCH_URL" in capsys.readouterr().err


def test_export_writes_every_match_as_csv_and_is_recorded(
    journal: Settings, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "export.csv"
    assert run(journal, "audit", "export", "--user", "mz_caseworker", "--output", str(out)) == 0
    table = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8").lstrip("\ufeff"))))
    assert len(table) == 1 + 6
    assert staff_actions(journal) == [("audit-export", "success")]


def test_when_an_export_fails_part_way_then_it_was_recorded_before_and_its_failure_after(
    journal: Settings, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from elastic_transport import ConnectionError as TransportConnectionError

    from gateway.audit import csvexport

    def breaking(events: Any) -> Iterator[str]:
        yield "header\n"
        yield "row\n"
        assert staff_actions(journal) == [("audit-export", "success")]  # before it leaves
        raise TransportConnectionError("cluster went away")

    monkeypatch.setattr(csvexport, "csv_lines", breaking)
    out = tmp_path / "export.csv"
    assert run(journal, "audit", "export", "--output", str(out)) != 0
    assert "export failed" in capsys.readouterr().err
    assert staff_actions(journal) == [("audit-export", "success"), ("audit-export", "failure")]


def test_verify_is_recorded_with_its_outcome_and_names_the_first_bad_record(
    journal: Settings, capsys: Capture
) -> None:
    assert run(journal, "audit", "verify") == 0
    assert "intact" in capsys.readouterr().out
    conn = sqlite3.connect(journal.journal_path)
    conn.execute("UPDATE events SET doc = replace(doc, '\"GET\"', '\"PUT\"') WHERE seq = 5")
    conn.commit()
    conn.close()
    assert run(journal, "audit", "verify", "--json") == 1
    result = orjson.loads(capsys.readouterr().out)
    assert result["first_bad_seq"] == 5
    assert staff_actions(journal) == [("audit-verify", "success"), ("audit-verify", "failure")]


def test_verify_with_a_pinned_public_key_refuses_a_journal_signed_by_another(
    journal: Settings, tmp_path: Path, capsys: Capture
) -> None:
    other = tmp_path / "other.pub"
    other.write_text(StatementSigner.generate().verifier.public.public_bytes_raw().hex())
    assert run(journal, "audit", "verify", "--public-key", str(other)) == 1
    assert "unknown key" in capsys.readouterr().out


def test_the_key_command_prints_the_key_that_verify_uses(
    journal: Settings, capsys: Capture
) -> None:
    assert run(journal, "audit", "key", "--json") == 0
    key = orjson.loads(capsys.readouterr().out)
    pinned = Path(key["path"])
    assert run(journal, "audit", "verify", "--public-key", str(pinned), "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["ok"]


@pytest.mark.parametrize("fmt", ["html", "csv", "json"])
def test_report_is_produced_in_each_format_and_recorded(
    journal: Settings, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"report.{fmt}"
    argv = ["audit", "report", "--department", "统计局", "--period", "2026-02", "--format", fmt]
    assert run(journal, *argv, "--output", str(out)) == 0
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert orjson.loads(text)["totals"]["used_records"] == 1 + 3 + 5 + 7 + 9 + 11
    else:
        assert "统计局" in text and ("告警编号 alert" in text or 'id="alerts"' in text)
    assert staff_actions(journal) == [("audit-report", "success")]


def test_when_a_report_period_is_malformed_then_the_command_exits_2(
    journal: Settings, capsys: Capture
) -> None:
    assert run(journal, "audit", "report", "--department", "统计局", "--period", "2026-13") == 2
    assert "2026-Q3" in capsys.readouterr().err


def test_archive_then_verify_and_status_see_one_history(journal: Settings, capsys: Capture) -> None:
    assert run(journal, "audit", "archive", "--before", "2026-02-07T00:00:00+00:00", "--json") == 0
    archived = orjson.loads(capsys.readouterr().out)
    assert (archived["first_seq"], archived["last_seq"]) == (1, 6)
    assert run(journal, "audit", "status", "--json") == 0
    status = orjson.loads(capsys.readouterr().out)
    assert status["journal"]["segments"] == 1 and status["journal"]["base_seq"] == 6
    assert run(journal, "audit", "verify", "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["segments"] == 1
    assert run(journal, "audit", "verify", "--segment", archived["segment"], "--json") == 0
    assert orjson.loads(capsys.readouterr().out)["records"] == 6


def test_when_nothing_says_what_to_archive_then_the_command_refuses(
    journal: Settings, capsys: Capture
) -> None:
    assert run(journal, "audit", "archive") == 2
    assert "--before" in capsys.readouterr().err


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch().start()
    yield server
    server.stop()


def test_ship_drains_the_backlog_and_archive_waits_for_shipping(
    journal: Settings, fake_es: FakeElasticsearch, capsys: Capture
) -> None:
    es = ["--elasticsearch-url", fake_es.url]
    assert run(journal, "audit", "status", "--json", *es) == 0
    assert orjson.loads(capsys.readouterr().out)["shipping"]["backlog"] == 12
    assert run(journal, "audit", "archive", "--upto", "10", "--json", *es) == 0
    assert orjson.loads(capsys.readouterr().out)["segment"] is None  # nothing shipped yet
    assert run(journal, "audit", "ship", "--json", *es) == 0
    shipped: dict[str, Any] = orjson.loads(capsys.readouterr().out)
    # twelve accesses and the (recorded) archival attempt; `status` only reads
    assert shipped["shipped"] == 13 and shipped["error"] is None
    assert len(fake_es.docs("shareguard-audit")) == 13
    assert run(journal, "audit", "search", "--json", "--kind", "access", *es) == 0
    assert orjson.loads(capsys.readouterr().out)["store"] == "elasticsearch"
    # A full page from Elasticsearch offers no record-number cursor, and one given is refused.
    assert run(journal, "audit", "search", "--kind", "access", "--limit", "5", *es) == 0
    assert "--before-seq" not in capsys.readouterr().out
    argv = ["audit", "search", "--kind", "access", "--before-seq", "9", *es]
    assert run(journal, *argv) != 0
    assert "journal" in capsys.readouterr().err


@pytest.mark.usefixtures("utc_server")
def test_a_report_by_dates_covers_the_same_month_as_the_period_on_a_utc_server(
    journal: Settings, capsys: Capture
) -> None:
    writer = open_journal(journal)
    # 2026-02-01 00:30 and 2026-03-01 00:30 in Beijing: the first is in February, the second not.
    writer.append(
        access_event(101, timestamp=datetime(2026, 1, 31, 16, 30, tzinfo=UTC), records=100)
    )
    writer.append(
        access_event(102, timestamp=datetime(2026, 2, 28, 16, 30, tzinfo=UTC), records=1000)
    )
    writer.close()
    base = ["audit", "report", "--department", "民政局", "--format", "json"]
    assert run(journal, *base, "--period", "2026-02") == 0
    by_period = orjson.loads(capsys.readouterr().out)
    assert run(journal, *base, "--since", "2026-02-01", "--until", "2026-02-28") == 0
    by_dates = orjson.loads(capsys.readouterr().out)
    period = parse_period("2026-02")
    for report in (by_period, by_dates):
        since = datetime.fromisoformat(report["period"]["since"])
        until = datetime.fromisoformat(report["period"]["until"])
        assert (since, until) == (period.since, period.until)
    assert by_dates["totals"] == by_period["totals"]
    assert by_period["totals"]["used_records"] == 100 + 2 + 4 + 6 + 8 + 10 + 12


@pytest.mark.usefixtures("utc_server")
def test_the_search_table_shows_china_standard_time_and_json_keeps_the_ecs_timestamp(
    journal: Settings, capsys: Capture
) -> None:
    assert run(journal, "audit", "search", "--user", "tj_analyst", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "+08:00" in out.splitlines()[1]  # the header says the zone
    assert "2026-02-11 18:00:00" in out  # 10:00 UTC on 11 February
    assert run(journal, "audit", "search", "--user", "tj_analyst", "--limit", "1", "--json") == 0
    stamp = orjson.loads(capsys.readouterr().out)["events"][0]["@timestamp"]
    assert stamp.startswith("2026-02-11T10:00:00") and stamp.endswith("Z")


def test_search_pages_by_seq_with_before_seq(journal: Settings, capsys: Capture) -> None:
    assert run(journal, "audit", "search", "--kind", "access", "--limit", "5", "--json") == 0
    first = [e["shareguard"]["seq"] for e in orjson.loads(capsys.readouterr().out)["events"]]
    assert run(journal, "audit", "search", "--kind", "access", "--limit", "5") == 0
    assert f"--before-seq {first[-1]}" in capsys.readouterr().out
    argv = ["audit", "search", "--kind", "access", "--limit", "5", "--before-seq", str(first[-1])]
    assert run(journal, *argv, "--json") == 0
    second = [e["shareguard"]["seq"] for e in orjson.loads(capsys.readouterr().out)["events"]]
    assert second == list(range(first[-1] - 1, first[-1] - 6, -1))


def test_an_export_that_meets_an_unreadable_segment_fails_clearly_and_is_recorded(
    journal: Settings, tmp_path: Path, capsys: Capture
) -> None:
    from gateway.audit.integrity import segments

    assert run(journal, "audit", "archive", "--upto", "6") == 0
    [segment] = segments(journal.journal_path)
    segment.write_bytes(b"not a database" * 100)
    capsys.readouterr()
    out = tmp_path / "export.csv"
    assert run(journal, "audit", "export", "--output", str(out)) != 0
    err = capsys.readouterr().err
    assert "export failed" in err and segment.name in err
    assert staff_actions(journal)[-2:] == [("audit-export", "success"), ("audit-export", "failure")]


def test_search_by_a_subjects_keyed_hash_finds_what_the_identifier_finds(
    settings: Settings, capsys: Capture
) -> None:
    person = "11010519491231002X"
    hasher = SubjectHasher.from_home(settings.keys_dir)
    writer = open_journal(settings)
    for n in range(1, 4):
        subjects = (hasher(person),) if n != 2 else ()
        writer.append(access_event(n, subject_hashes=subjects))
    writer.close()
    assert run(settings, "audit", "search", "--data-subject", person, "--json") == 0
    by_id = orjson.loads(capsys.readouterr().out)
    assert run(settings, "audit", "search", "--subject-hash", hasher(person), "--json") == 0
    by_hash = orjson.loads(capsys.readouterr().out)
    seqs = [[e["shareguard"]["seq"] for e in r["events"]] for r in (by_id, by_hash)]
    assert seqs[0] == seqs[1] == [3, 1]
