"""The department report's alerts section: the department's alerts in the period, honestly empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.alerts.reporting import report_source
from gateway.alerts.store import NewFinding
from gateway.audit.report_sources import listing
from gateway.service import Gateway


def test_the_section_lists_the_departments_alerts_in_the_period(gateway: Gateway) -> None:
    now = datetime.now(UTC)
    gateway.alerts.store.record(
        NewFinding(
            rule="honeytoken",
            name="蜜罐命中",
            severity="critical",
            risk_score=95,
            entity="mz_caseworker",
            summary="取得蜜罐记录",
            seen_at=now,
            user_id="mz_caseworker",
            department="民政局",
        )
    )
    gateway.alerts.store.record(
        NewFinding(
            rule="honeytoken",
            name="蜜罐命中",
            severity="critical",
            risk_score=95,
            entity="tj_analyst",
            summary="取得蜜罐记录",
            seen_at=now,
            user_id="tj_analyst",
            department="统计局",
        )
    )
    section = report_source(gateway.settings).listing(
        "民政局", now - timedelta(days=1), now + timedelta(days=1)
    )
    assert section.available
    assert [row[5] for row in section.rows] == ["mz_caseworker"]
    empty = listing(
        "alerts", gateway.settings, "民政局", now - timedelta(days=9), now - timedelta(days=8)
    )
    assert empty.available and empty.rows == () and "no alerts" in empty.note
