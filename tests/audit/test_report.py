"""The periodic evaluation report: periods, the counts per section, and honest missing sections."""

from __future__ import annotations

import csv
import io
import sys
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.audit import report_sources
from gateway.audit.archive import archive
from gateway.audit.integrity import segments
from gateway.audit.journal import Journal
from gateway.audit.report import (
    CHINA,
    build_report,
    csv_rows,
    parse_period,
    period_between,
    render_csv,
    render_html,
    report_json,
)
from gateway.audit.report_sources import Listing
from gateway.audit.signing import StatementSigner
from gateway.audit.stores import JournalStore
from gateway.catalog import load_catalog
from gateway.keys import SubjectHasher
from gateway.settings import REPO_ROOT, Settings, load_settings
from tests.factories import access_event

CATALOG = load_catalog(REPO_ROOT / "policies" / "catalog.toml")
T0 = datetime(2026, 5, 10, 9, 0, tzinfo=CHINA)


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=CHINA), datetime(2027, 1, 1, tzinfo=CHINA)),
        ("2026-q4", datetime(2026, 10, 1, tzinfo=CHINA), datetime(2027, 1, 1, tzinfo=CHINA)),
        ("2026-H1", datetime(2026, 1, 1, tzinfo=CHINA), datetime(2026, 7, 1, tzinfo=CHINA)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=CHINA), datetime(2027, 1, 1, tzinfo=CHINA)),
        ("2026-02", datetime(2026, 2, 1, tzinfo=CHINA), datetime(2026, 3, 1, tzinfo=CHINA)),
    ],
    ids=["a year", "the last quarter", "a half year", "December", "February"],
)
def test_periods_are_read_in_china_standard_time(
    text: str, since: datetime, until: datetime
) -> None:
    period = parse_period(text)
    assert (period.since, period.until) == (since, until)


@pytest.mark.parametrize(
    "text", ["2026-13", "2026-00", "2026-Q5", "2026-H3", "26", "2026/11", "last year"]
)
def test_when_a_period_is_almost_right_then_it_is_refused_with_the_forms_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="2026-Q3"):
        parse_period(text)


def _event(n: int, **kw: Any) -> Any:
    return access_event(n, timestamp=(T0 + timedelta(minutes=n)).astimezone(UTC), **kw)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"home": str(tmp_path / "home")}, environ={})


@pytest.fixture
def store(settings: Settings) -> JournalStore:
    journal = Journal(settings.journal_path, StatementSigner.generate())
    events = [
        # 统计局 reads population (provided by 公安局) three times, 10 records each
        *(
            _event(n, user_id="tj_analyst", department="统计局", purpose="statistics", records=10)
            for n in range(3)
        ),
        # ... and is refused classified cases once
        _event(
            3,
            user_id="tj_analyst",
            department="统计局",
            dataset="classified_cases",
            purpose="statistics",
            decision="deny",
            status_code=403,
            reason="share_none",
            records=0,
        ),
        # 民政局 reads population for a case
        _event(
            4,
            user_id="mz_caseworker",
            department="民政局",
            purpose="social_assistance_review",
            records=2,
        ),
        # a streamed export: its `started` event must not count twice
        _event(5, user_id="tj_analyst", department="统计局", purpose="statistics", phase="started"),
        _event(6, user_id="tj_analyst", department="统计局", purpose="statistics", records=500),
        # outside the period
        access_event(7, timestamp=datetime(2025, 12, 31, 15, 59, tzinfo=UTC), department="统计局"),
    ]
    for event in events:
        journal.append(event)
    journal.close()
    return JournalStore(settings.journal_path, SubjectHasher(b"r" * 32))


def test_a_consumer_sees_what_it_used_and_what_it_was_refused(
    store: JournalStore, settings: Settings
) -> None:
    report = build_report(store, CATALOG, settings, "统计局", parse_period("2026"))
    assert [(g.key, g.requests, g.records) for g in report.used_by_dataset] == [
        ("population", 4, 530)
    ]
    assert [(g.key, g.requests) for g in report.refused_by_reason] == [("share_none", 1)]
    assert [(r.purpose, r.allowed, r.refused, r.records) for r in report.by_purpose] == [
        ("statistics", 4, 1, 530)
    ]
    assert report.provided_datasets == ()  # the catalog lists nothing provided by 统计局
    assert report.archived_note is None  # nothing archived: nothing left out


def _archived(settings: Settings, *, written: int, upto: int | None) -> JournalStore:
    """A journal of `written` accesses by 统计局 a minute apart, archived up to record `upto`
    (None: all of it)."""
    signer = StatementSigner.generate()
    journal = Journal(settings.journal_path, signer)
    for n in range(written):
        journal.append(_event(n, user_id="tj_analyst", department="统计局", records=10))
    journal.close()
    archive(settings.journal_path, signer, upto=upto)
    return JournalStore(settings.journal_path, SubjectHasher(b"r" * 32))


def test_a_period_reaching_into_archived_records_counts_them_from_the_segments(
    settings: Settings,
) -> None:
    store = _archived(settings, written=6, upto=4)
    report = build_report(store, CATALOG, settings, "统计局", parse_period("2026"))
    assert report.used_requests == 6 and report.used_records == 60  # four archived, two live
    assert report.archived_note is None
    assert not any(row[:2] == ["note", "archived_not_counted"] for row in csv_rows(report))
    # A period of the archived records alone, and one after them.
    early = period_between(T0, T0 + timedelta(minutes=2))
    assert build_report(store, CATALOG, settings, "统计局", early).used_requests == 2
    later = period_between(T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    assert build_report(store, CATALOG, settings, "统计局", later).used_requests == 1


def test_everything_archived_is_counted_and_nothing_twice_while_an_archive_is_made(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.audit import archive as archive_module

    store = _archived(settings, written=4, upto=None)  # everything: the live journal is empty
    year = parse_period("2026")
    assert build_report(store, CATALOG, settings, "统计局", year).used_requests == 4
    # An archive cut short between writing its segment and dropping the records from the live
    # journal (as a crash leaves it, or as a report running meanwhile finds it).
    signer = StatementSigner.generate()
    journal = Journal(settings.journal_path, signer)
    for n in range(4, 7):
        journal.append(_event(n, user_id="tj_analyst", department="统计局", records=10))
    journal.close()
    monkeypatch.setattr(archive_module, "_drop_archived", lambda *a: None)
    archive(settings.journal_path, signer, upto=6)
    assert len(segments(settings.journal_path)) == 2
    assert build_report(store, CATALOG, settings, "统计局", year).used_requests == 7


def test_an_archived_segment_that_cannot_be_read_is_named_and_the_rest_counted(
    settings: Settings,
) -> None:
    store = _archived(settings, written=6, upto=4)
    [segment] = segments(settings.journal_path)
    segment.write_bytes(b"not a database" * 100)
    report = build_report(store, CATALOG, settings, "统计局", parse_period("2026"))
    assert report.used_requests == 2  # the live journal's two
    assert report.archived_note is not None and segment.name in report.archived_note
    assert "could not be read" in report.archived_note
    assert any(row[:2] == ["note", "archived_not_counted"] for row in csv_rows(report))
    assert 'id="archived-note"' in render_html(report)


def test_a_provider_sees_who_got_its_datasets(store: JournalStore, settings: Settings) -> None:
    report = build_report(store, CATALOG, settings, "公安局", parse_period("2026-Q2"))
    assert "population" in report.provided_datasets
    assert [(g.key, g.requests, g.records) for g in report.provided_to] == [
        ("统计局", 4, 530),
        ("民政局", 1, 2),
    ]
    assert [(g.key, g.requests) for g in report.provided_refused] == [("share_none", 1)]
    assert report_json(report)["totals"]["provided_records"] == 532


def test_when_a_section_cannot_be_produced_the_report_says_not_available(
    store: JournalStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deployment without those parts installed: the modules do not exist.
    monkeypatch.setitem(report_sources.SOURCES, "overdue_applications", "gateway.not_installed_a:f")
    monkeypatch.setitem(report_sources.SOURCES, "alerts", "gateway.not_installed_b:f")
    report = build_report(store, CATALOG, settings, "统计局", parse_period("2026"))
    assert not report.overdue_applications.available and not report.alerts.available
    html = render_html(report)
    assert html.count('class="unavailable"') == 2 and "统计局" in html
    rows = list(csv.reader(io.StringIO(render_csv(report).lstrip("\ufeff"))))
    assert rows[-2][:2] == ["overdue_applications", "not available"]


def test_with_every_part_installed_both_sections_are_available(
    store: JournalStore, settings: Settings
) -> None:
    report = build_report(store, CATALOG, settings, "统计局", parse_period("2026"))
    assert report.overdue_applications.available and report.alerts.available


def test_when_a_section_source_exists_its_listing_is_shown(
    store: JournalStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("tests_fake_applications")

    class Source:
        def __init__(self, settings: Settings) -> None:
            pass

        def listing(self, department: str, since: datetime, until: datetime) -> Listing:
            return Listing(True, ("申请 id", "期限 deadline"), (("A-1", "2026-03-01"),))

    module.report_source = Source  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_fake_applications", module)
    monkeypatch.setitem(
        report_sources.SOURCES, "overdue_applications", "tests_fake_applications:report_source"
    )
    report = build_report(store, CATALOG, settings, "公安局", parse_period("2026"))
    assert report.overdue_applications.rows == (("A-1", "2026-03-01"),)
    assert "A-1" in render_html(report)
    assert render_html(report).count('class="unavailable"') == 0


def test_report_cells_cannot_become_spreadsheet_formulas(
    store: JournalStore, settings: Settings
) -> None:
    report = build_report(store, CATALOG, settings, '=HYPERLINK("x")', parse_period("2026"))
    text = render_csv(report)
    assert text.startswith("\ufeff")
    assert "'=HYPERLINK" in text
