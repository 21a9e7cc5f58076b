"""Tracing among colleagues: many responses of one (recipient, dataset, key version) share the
fingerprint's positions and masks, so a leak of one must not name the others.

Thirty people of 民政局 each received the same 3,000 population records, fingerprinted with their
own watermark ids. Their code words agree with the leaked one's on about half the 128
positions, so a large leak agrees with every colleague's code word on thousands of votes; only
a test per position, not per vote, keeps them out of the alert.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bench.leaks import table_of
from detectors.kinds import Finding
from gateway.commands.watermark import _print_trace
from gateway.demo.data import generate
from gateway.service import Gateway
from gateway.settings import load_settings
from gateway.watermark.codes import CODE_BITS, new_watermark_id
from gateway.watermark.leakfile import LeakTable
from gateway.watermark.marker import Watermarker, WatermarkPlan
from gateway.watermark.registry import ResponseEntry
from gateway.watermark.trace import TraceResult, _Positions, _Votes
from gateway.watermark.tracing import ALERT_THRESHOLD, run_trace

Record = dict[str, Any]
COLLEAGUES = 30
RECORDS = 3000
# 07:30 on 21 November 2026 in China: still the 20th in UTC.
ISSUED = datetime.datetime(2026, 11, 20, 23, 30, tzinfo=datetime.UTC)


@dataclass
class Department:
    gateway: Gateway
    plans: list[WatermarkPlan]
    records: list[Record]
    alerts: list[Finding] = field(default_factory=list)

    def served(self, i: int) -> list[Record]:
        """Response `i` as its recipient got it."""
        marker = Watermarker(self.plans[i], self.gateway.keyring)
        return [marker.mark(dict(r)) for r in self.records]

    def trace(self, table: LeakTable) -> TraceResult:
        self.alerts.clear()
        return run_trace(
            self.gateway,
            table,
            actor="security",
            roles=("security",),
            source="found-online.csv",
            data_sha256="0" * 64,
        )


@pytest.fixture(scope="module")
def department(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Department]:
    home = tmp_path_factory.mktemp("colleagues") / "home"
    gateway = Gateway(load_settings({"home": str(home)}, environ={}))
    try:
        dataset = gateway.catalog["population"]
        plans = [
            WatermarkPlan(
                wm=new_watermark_id(),
                request_id=f"req-mz-{i:02d}",
                issued_at=ISSUED + datetime.timedelta(minutes=i),
                recipient="民政局",
                user_id=f"mz_user{i:02d}",
                department="民政局",
                credential_id=f"cred-mz-{i:02d}",
                dataset=dataset,
                purpose="social_assistance_review",
                case_id="MZ-2026-000123",
                masking_profile=None,
                key_version=gateway.keyring.current_version,
                layers=frozenset({"fingerprint"}),
                carriers=gateway.watermarks.carriers_of("population"),
                pseudonym_fields=(),
                free_text_fields=(),
                decoys=gateway.watermarks.decoys,
            )
            for i in range(COLLEAGUES)
        ]
        for plan in plans:
            gateway.registry.register(ResponseEntry.from_plan(plan)).result()
            gateway.registry.finish(plan.wm, records=RECORDS, complete=True).result()
        records = list(generate(scale=0.3).records["population"][:RECORDS])
        assert len(records) == RECORDS
        department = Department(gateway, plans, records)
        raise_external = gateway.detection.raise_external

        def capture(rule: str, finding: Finding) -> Any:
            if rule == "leak_traced":
                department.alerts.append(finding)
            return raise_external(rule, finding)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(gateway.detection, "raise_external", capture)
            yield department
    finally:
        gateway.close()


@pytest.mark.parametrize("leaked", [0, 9, 21])
def test_a_3000_row_leak_names_only_its_own_request_and_raises_one_alert(
    department: Department, leaked: int
) -> None:
    plan = department.plans[leaked]
    rows = random.Random(leaked).sample(department.served(leaked), RECORDS)
    result = department.trace(table_of(rows, "csv"))
    traced = [c.entry.request_id for c in result.candidates if c.probability < ALERT_THRESHOLD]
    assert traced == [plan.request_id]
    top = result.candidates[0]
    assert top.probability < 1e-30
    assert len(department.alerts) == 1
    assert department.alerts[0].evidence["request_ids"] == [plan.request_id]
    assert department.alerts[0].evidence["user_id"] == plan.user_id
    # The test is per code-word position: all 128 positions have votes, and all agree.
    (evidence,) = top.evidence
    assert evidence.details["positions"] == evidence.details["positions_agreeing"] == CODE_BITS


@pytest.mark.parametrize(("leaked", "rows"), [(5, 50), (11, 200), (17, 1000)])
def test_smaller_leaks_still_name_their_request_alone(
    department: Department, leaked: int, rows: int
) -> None:
    sample = random.Random(leaked).sample(department.served(leaked), rows)
    result = department.trace(table_of(sample, "csv"))
    assert result.candidates[0].entry.request_id == department.plans[leaked].request_id
    assert result.candidates[0].probability < ALERT_THRESHOLD
    traced = [c for c in result.candidates if c.probability < ALERT_THRESHOLD]
    assert len(traced) == 1 and len(department.alerts) == 1


def test_issue_times_come_back_aware_and_traces_show_them_in_china_time(
    department: Department, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = department.gateway.registry.by_request("req-mz-00")
    assert entry is not None
    assert entry.issued_at.tzinfo is not None and entry.issued_at == ISSUED
    rows = random.Random(2).sample(department.served(0), 300)
    result = department.trace(table_of(rows, "csv"))
    top = result.candidates[0]
    assert top.entry.request_id == "req-mz-00"
    assert top.to_json()["issued_at"] == "2026-11-21T07:30:00+08:00"
    (alert,) = department.alerts
    assert alert.evidence["issued_at"] == "2026-11-21T07:30:00+08:00"
    assert "2026-11-21 的请求" in alert.summary
    _print_trace(Path("found-online.csv"), result, None)
    assert "2026-11-21 07:30:00+0800" in capsys.readouterr().out


def test_an_independent_code_word_scores_below_alpha_no_more_often_than_alpha() -> None:
    """The null hypothesis: the leak is one response's, the code word another's (independent).

    Counted per vote, a 3,000-vote leak put a quarter of such code words below 1e-6 (the votes on
    one position agree or disagree with a code word all at once); per position the tail is
    exact, so the fraction below any alpha is at most alpha.
    """
    rng = random.Random(7)
    leaked = rng.getrandbits(CODE_BITS)
    votes = _Votes()
    for _ in range(RECORDS):
        pos = rng.randrange(CODE_BITS)
        votes.add(pos, (leaked >> pos) & 1)
    votes.seal()
    positions = _Positions([votes])
    assert positions.log10_tail(positions.score(leaked)) == pytest.approx(-CODE_BITS * 0.30103)
    others = [rng.getrandbits(CODE_BITS) for _ in range(2000)]
    tails = [10 ** positions.log10_tail(positions.score(cw)) for cw in others]
    assert sum(t <= 0.01 for t in tails) <= 0.015 * len(tails)
    assert min(tails) > 1e-6
