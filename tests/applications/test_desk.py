"""The application workflow on real dates: deadlines over 国庆节, overdue approval on and off, answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from gateway.applications.desk import ApplicationDesk, ApplicationError, ApplicationNotFound
from gateway.applications.model import ApplicationSpec
from gateway.audit.search import AuditQuery, search
from gateway.grants.admin import Actor
from gateway.policy.explain import Question, explain
from gateway.service import Gateway
from gateway.settings import load_settings
from gateway.workdays import CHINA

ADMIN = Actor("admin", ("admin",), "127.0.0.1")
FRIDAY_BEFORE_NATIONAL_DAY = datetime(2025, 9, 26, 10, 0, tzinfo=CHINA)
SPEC = ApplicationSpec(
    kind="share",
    applicant="tj_analyst",
    dataset="social_insurance",
    fields=("id_number", "employer", "status"),
    purposes=("statistics",),
    valid_from=FRIDAY_BEFORE_NATIONAL_DAY,
    valid_until=datetime(2026, 12, 31, tzinfo=CHINA),
    reason="季度参保情况统计 (quarterly insurance statistics)",
)


def desk_of(gateway: Gateway, *, overdue_approval: bool) -> ApplicationDesk:
    return ApplicationDesk(
        gateway.engine,
        gateway.catalog,
        gateway.admin,
        gateway.regulations,
        gateway.calendar,
        overdue_approval=overdue_approval,
        warning_days=gateway.settings.expiry_warning_days,
    )


def staff_events(gateway: Gateway, action: str) -> list[dict[str, Any]]:
    events = search(
        gateway.settings.journal_path, AuditQuery(kind="staff", newest_first=False), gateway.hasher
    ).events
    return [e for e in events if e["event"]["action"] == action]


@pytest.mark.parametrize(
    ("regulation", "deadline"),
    [
        # Sun 28 Sep (worked), 29, 30 Sep; 1–8 Oct off; 9, 10 Oct.
        ("local_share_5", date(2025, 10, 10)),
        # ... then Saturday 11 Oct (worked), 13, 14, 15, 16 Oct.
        ("state_council_2016_51", date(2025, 10, 16)),
    ],
)
def test_when_an_application_is_submitted_before_national_day_then_the_deadline_skips_the_break(
    gateway: Gateway, regulation: str, deadline: date
) -> None:
    app = gateway.desk.submit(
        ADMIN, replace(SPEC, regulation=regulation), FRIDAY_BEFORE_NATIONAL_DAY
    )
    assert app.deadline == deadline and not app.deadline_estimated
    assert app.status == "pending" and app.department == "统计局"
    assert staff_events(gateway, "application-submit")[0]["shareguard"]["after"]["id"] == app.id


def test_when_an_application_arrives_during_the_holiday_then_the_adjusted_saturday_counts(
    gateway: Gateway,
) -> None:
    national_day = datetime(2025, 10, 1, 9, 0, tzinfo=CHINA)
    app = gateway.desk.submit(
        ADMIN, replace(SPEC, regulation="local_share_5", valid_from=national_day), national_day
    )
    # 9, 10 Oct; Saturday 11 Oct worked; 13, 14 Oct.
    assert app.deadline == date(2025, 10, 14)


def test_when_overdue_approval_is_off_then_an_overdue_application_is_reported_once_and_stays_pending(
    gateway: Gateway,
) -> None:
    desk = desk_of(gateway, overdue_approval=False)
    app = desk.submit(ADMIN, SPEC, FRIDAY_BEFORE_NATIONAL_DAY)  # due 16 Oct 2025
    last_minute = datetime(2025, 10, 16, 23, 59, tzinfo=CHINA)
    assert desk.sweep(last_minute).overdue == []  # the deadline day is still in time
    next_morning = datetime(2025, 10, 17, 9, 0, tzinfo=CHINA)
    report = desk.sweep(next_morning)
    assert report.overdue == [{"application": app.id, "deadline": "2025-10-16"}]
    assert report.deemed_approved == []
    assert desk.sweep(next_morning + timedelta(hours=1)).overdue == []  # reported once
    current = desk.get(app.id)
    assert current is not None and current.status == "pending" and current.grant_id is None
    assert current.overdue(date(2025, 10, 17))
    assert [e["shareguard"]["target"] for e in staff_events(gateway, "application-overdue")] == [
        app.id
    ]


def test_when_overdue_approval_is_on_then_an_overdue_application_becomes_a_grant_that_serves(
    gateway: Gateway,
) -> None:
    desk = desk_of(gateway, overdue_approval=True)
    app = desk.submit(ADMIN, SPEC, FRIDAY_BEFORE_NATIONAL_DAY)
    assert desk.sweep(datetime(2025, 10, 16, 18, 0, tzinfo=CHINA)).deemed_approved == []
    next_morning = datetime(2025, 10, 17, 9, 0, tzinfo=CHINA)
    report = desk.sweep(next_morning)
    assert [r["application"] for r in report.deemed_approved] == [app.id]
    answered = desk.get(app.id)
    assert answered is not None and answered.status == "deemed_approved"
    assert answered.decided_by == "system:overdue-approval" and "视为同意" in answered.decision_note
    grant = gateway.admin.get(answered.grant_id or "")
    assert grant is not None and grant.fields == ("id_number", "employer", "status")
    assert grant.created_by == "system:overdue-approval" and grant.application_id == app.id
    events = staff_events(gateway, "application-deemed-approved")
    assert events[0]["shareguard"]["before"]["status"] == "pending"
    assert events[0]["shareguard"]["after"]["status"] == "deemed_approved"
    # The grant decides the very next request (here: as explained at that time).
    gateway.refresh()
    result = explain(
        gateway,
        Question(
            "tj_analyst", "social_insurance", "statistics", at=next_morning + timedelta(hours=1)
        ),
    )
    assert result["decision"] == "allow" and result["grant"]["id"] == grant.id
    assert result["delivery"]["withheld_fields"] == ["name", "contribution_base", "insured_since"]


def test_when_the_setting_says_overdue_means_approved_then_the_gateway_desk_does(
    settings: Any,
) -> None:
    gateway = Gateway(
        load_settings({"home": str(settings.home), "overdue_approval": "true"}, environ={})
    )
    try:
        assert gateway.desk.overdue_approval is True
    finally:
        gateway.close()


def test_when_an_application_is_approved_then_a_narrowed_grant_is_created_and_both_are_audited(
    gateway: Gateway,
) -> None:
    app = gateway.desk.submit(ADMIN, SPEC, FRIDAY_BEFORE_NATIONAL_DAY)
    later = FRIDAY_BEFORE_NATIONAL_DAY + timedelta(days=3)
    answered, grant = gateway.desk.approve(
        ADMIN, app.id, later, fields=("id_number", "status"), max_per_day=500
    )
    assert answered.status == "approved" and answered.grant_id == grant.id
    assert grant.fields == ("id_number", "status") and grant.max_per_day == 500
    assert grant.department == "统计局" and grant.principal is None
    created = staff_events(gateway, "grant-create")[0]["shareguard"]
    assert created["before"] is None and created["after"]["id"] == grant.id
    approved = staff_events(gateway, "application-approve")[0]
    assert approved["user"]["id"] == "admin"
    assert approved["shareguard"]["after"]["grant_id"] == grant.id
    with pytest.raises(ApplicationError, match="already answered"):
        gateway.desk.refuse(ADMIN, app.id, "《数据安全法》第三十八条", later)


def test_when_the_approval_widens_the_application_then_it_is_refused_and_nothing_changes(
    gateway: Gateway,
) -> None:
    app = gateway.desk.submit(ADMIN, SPEC, FRIDAY_BEFORE_NATIONAL_DAY)
    later = FRIDAY_BEFORE_NATIONAL_DAY + timedelta(days=1)
    with pytest.raises(ApplicationError, match="contribution_base"):
        gateway.desk.approve(ADMIN, app.id, later, fields=("id_number", "contribution_base"))
    with pytest.raises(ApplicationError, match="longer period"):
        gateway.desk.approve(ADMIN, app.id, later, valid_until=SPEC.valid_until + timedelta(days=1))
    current = gateway.desk.get(app.id)
    assert current is not None and current.status == "pending"
    assert gateway.admin.list(department="统计局") == []


@pytest.mark.parametrize("basis", ["", "   ", "不同意"], ids=["empty", "blank", "no law named"])
def test_when_a_refusal_cites_no_legal_basis_then_it_is_not_accepted(
    gateway: Gateway, basis: str
) -> None:
    app = gateway.desk.submit(ADMIN, SPEC, FRIDAY_BEFORE_NATIONAL_DAY)
    with pytest.raises(ApplicationError, match="legal basis"):
        gateway.desk.refuse(ADMIN, app.id, basis, FRIDAY_BEFORE_NATIONAL_DAY)


def test_when_a_refusal_cites_the_law_then_it_is_recorded_with_it(gateway: Gateway) -> None:
    app = gateway.desk.submit(ADMIN, SPEC, FRIDAY_BEFORE_NATIONAL_DAY)
    basis = "《中华人民共和国个人信息保护法》第六条：处理个人信息应限于实现处理目的的最小范围"
    refused = gateway.desk.refuse(ADMIN, app.id, basis, FRIDAY_BEFORE_NATIONAL_DAY)
    assert refused.status == "refused" and refused.legal_basis == basis
    event = staff_events(gateway, "application-refuse")[0]["shareguard"]
    assert event["after"]["legal_basis"] == basis and event["before"]["status"] == "pending"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"dataset": "population"}, "no application needed"),
        ({"dataset": "classified_cases"}, "never shared"),
        ({"dataset": "nowhere"}, "unknown dataset"),
        ({"applicant": "public_dev"}, "must be a department principal"),
        ({"applicant": "ghost"}, "unknown applicant"),
        ({"fields": ("id_number", "shoe_size")}, "unknown fields"),
        ({"purposes": ("Statistics!",)}, "malformed purpose code"),
        ({"purposes": ("astrology",)}, "unknown purpose"),
        ({"reason": "  "}, "state the reason"),
        ({"regulation": "local_open_5"}, "other kind of application"),
        ({"regulation": "nope"}, "unknown regulation"),
        ({"kind": "borrow"}, "kind must be share or open"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v)),
)
def test_when_an_application_is_wrong_then_submitting_it_fails_with_the_reason(
    gateway: Gateway, change: dict[str, Any], problem: str
) -> None:
    before = len(gateway.desk.list())
    with pytest.raises(ApplicationError, match=problem):
        gateway.desk.submit(ADMIN, replace(SPEC, **change), FRIDAY_BEFORE_NATIONAL_DAY)
    assert len(gateway.desk.list()) == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, "security measures"),
        ({"dataset": "weather", "security_measures": "日志"}, "no application needed"),
        ({"dataset": "population", "security_measures": "日志"}, "never opened"),
    ],
    ids=["no security measures", "open data", "closed data"],
)
def test_when_an_open_application_is_wrong_then_it_is_refused(
    gateway: Gateway, change: dict[str, Any], problem: str
) -> None:
    spec = replace(
        SPEC,
        kind="open",
        applicant="public_dev",
        dataset="credit_records",
        fields=("subject_name", "record_type"),
        purposes=("open_data_use",),
    )
    with pytest.raises(ApplicationError, match=problem):
        gateway.desk.submit(ADMIN, replace(spec, **change), FRIDAY_BEFORE_NATIONAL_DAY)


def test_when_an_application_does_not_exist_then_answering_says_so(gateway: Gateway) -> None:
    with pytest.raises(ApplicationNotFound):
        gateway.desk.approve(ADMIN, "AP-NOPE")


def test_when_a_grant_nears_its_end_then_one_warning_is_raised_ahead_of_time(
    gateway: Gateway,
) -> None:
    app = gateway.desk.submit(
        ADMIN,
        replace(SPEC, valid_until=datetime(2025, 10, 20, tzinfo=CHINA)),
        FRIDAY_BEFORE_NATIONAL_DAY,
    )
    _, grant = gateway.desk.approve(ADMIN, app.id, FRIDAY_BEFORE_NATIONAL_DAY)
    # Ten working days before 20 Oct 2025 reach back over the national-day break to late September.
    assert gateway.desk.sweep(datetime(2025, 9, 23, 9, 0, tzinfo=CHINA)).expiry_warnings == []
    report = gateway.desk.sweep(datetime(2025, 9, 30, 9, 0, tzinfo=CHINA))
    assert [w["grant"] for w in report.expiry_warnings] == [grant.id]
    # 9, 10, 11 (the Saturday worked), 13–17 Oct: the grant ends as 20 Oct begins.
    assert report.expiry_warnings[0]["working_days_left"] == 8
    assert gateway.desk.sweep(datetime(2025, 10, 9, 9, 0, tzinfo=CHINA)).expiry_warnings == []
    warning = staff_events(gateway, "grant-expiry-warning")
    assert [e["shareguard"]["target"] for e in warning] == [grant.id]


async def test_when_an_open_application_is_approved_then_the_public_reads_what_was_approved_only(
    gateway: Gateway, credentials: dict[str, dict[str, Any]]
) -> None:
    from gateway.pipeline import Pipeline
    from tests.factories import body_of, drive, json_response, request_flow

    pipeline = Pipeline.of(gateway)
    record = {
        "record_id": "C00000001",
        "subject_name": "某某公司",
        "uscc": "91110000600037341L",
        "record_type": "失信被执行人",
        "authority": "某法院",
        "decided": "2025-01-01",
        "description": "未履行判决",
    }

    async def read() -> Any:
        flow = request_flow(
            "/api/v1/datasets/credit_records/records",
            key=credentials["public_dev"]["api_key"],
            purpose="open_data_use",
            client_ip="203.0.113.9",
        )
        await drive(pipeline, flow, json_response({"records": [record]}))
        return flow

    before = await read()
    assert body_of(before)["error"] == "forbidden" and "依申请开放" in body_of(before)["message"]
    (pending,) = gateway.desk.list(applicant="public_dev", status="pending")
    gateway.desk.approve(ADMIN, pending.id)
    after = await read()
    assert after.response.status_code == 200
    delivered = body_of(after)["records"][0]
    assert set(delivered) == set(pending.fields)  # no free-text description
    assert "description" not in delivered
