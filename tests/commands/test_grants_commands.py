"""`shareguard grants / applications / policy`: the admin's command line, its JSON and its errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.cli import build_parser, main
from gateway.settings import Settings

UNTIL = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()


def run(capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str) -> tuple[int, Any, str]:
    code = main([*argv, "--home", str(settings.home)])
    out, err = capsys.readouterr()
    try:
        value = json.loads(out) if "--json" in argv and code == 0 else out
    except json.JSONDecodeError:
        value = out
    return code, value, err


@pytest.mark.parametrize(
    "argv",
    [
        ["grants", "add", "--dataset", "d", "--department", "x", "--fields", "a", "--until", UNTIL],
        ["grants", "list", "--json"],
        ["grants", "revoke", "GR-1", "--reason", "r"],
        ["grants", "expiring", "--days", "5", "--json"],
        ["applications", "list", "--status", "pending"],
        ["applications", "refuse", "AP-1", "--legal-basis", "《法》第一条"],
        ["applications", "sweep", "--json"],
        ["policy", "explain", "--user", "u", "--dataset", "d", "--purpose", "p", "--json"],
        ["policy", "lines"],
    ],
)
def test_every_policy_command_parses(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).command == argv[0]


def test_when_a_grant_is_added_listed_and_explained_then_json_only_is_printed(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code, created, _ = run(
        capsys,
        settings,
        *("grants", "add", "--dataset", "social_insurance", "--department", "统计局"),
        *("--fields", "id_number,status", "--purpose", "statistics", "--until", UNTIL),
        *("--max-per-request", "50", "--json"),
    )
    assert code == 0
    grant = created["grant"]
    assert grant["fields"] == ["id_number", "status"] and grant["created_by"].startswith("cli:")
    assert grant["valid_until"].startswith(
        (datetime.fromisoformat(UNTIL) + timedelta(days=1)).date().isoformat()
    )  # "--until D" is valid through the end of D

    code, listed, _ = run(capsys, settings, "grants", "list", "--department", "统计局", "--json")
    assert [g["id"] for g in listed["grants"]] == [grant["id"]]

    code, explained, _ = run(
        capsys,
        settings,
        *("policy", "explain", "--user", "tj_analyst", "--dataset", "social_insurance"),
        *("--purpose", "statistics", "--json"),
    )
    assert code == 0 and explained["decision"] == "allow"
    assert explained["grant"]["id"] == grant["id"]
    assert explained["delivery"]["max_per_request"] == 50


def test_when_explain_is_asked_in_text_then_the_first_refusal_is_named(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code, text, _ = run(
        capsys,
        settings,
        *("policy", "explain", "--user", "mz_caseworker", "--dataset", "social_insurance"),
        *("--purpose", "social_assistance_review"),
    )
    assert code == 0
    assert "purpose_required" in text and "case_required" in text  # no --case given
    code, text, _ = run(
        capsys,
        settings,
        *("policy", "explain", "--user", "mz_caseworker", "--dataset", "classified_cases"),
        *("--purpose", "social_assistance_review", "--case", "MZ-1"),
    )
    assert "share_none_refused" in text and "拒绝 DENY" in text


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (
            ("grants", "add", "--dataset", "nowhere", "--department", "统计局", "--fields", "a"),
            "unknown dataset",
        ),
        (
            ("grants", "add", "--dataset", "population", "--department", "统计局"),
            "name a purpose",
        ),
        (
            (
                "grants",
                "add",
                "--dataset",
                "population",
                "--department",
                "统计局",
                "--purpose",
                "x y",
            ),
            "malformed purpose code",
        ),
    ],
    ids=["unknown dataset", "no purpose", "malformed purpose"],
)
def test_when_a_grant_is_wrong_then_the_command_exits_2_and_says_why(
    capsys: pytest.CaptureFixture[str], settings: Settings, argv: tuple[str, ...], problem: str
) -> None:
    extra = () if "--fields" in argv else ("--fields", "name")
    code, _, err = run(capsys, settings, *argv, *extra, "--until", UNTIL)
    assert code == 2 and problem in err


def test_when_the_until_date_is_unreadable_then_the_command_exits_2(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code, _, err = run(
        capsys,
        settings,
        *("grants", "add", "--dataset", "population", "--department", "统计局"),
        *("--fields", "name", "--purpose", "statistics", "--until", "soon"),
    )
    assert code == 2 and "unreadable date" in err


def test_when_a_grant_does_not_exist_then_show_and_revoke_exit_1(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    assert run(capsys, settings, "grants", "show", "GR-NOPE")[0] == 1
    assert run(capsys, settings, "grants", "revoke", "GR-NOPE")[0] == 1


def test_when_an_application_is_submitted_and_approved_then_the_grant_follows(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code, app, _ = run(
        capsys,
        settings,
        *("applications", "submit", "--kind", "open", "--applicant", "public_dev"),
        *("--dataset", "credit_records", "--fields", "subject_name,record_type"),
        *("--purpose", "open_data_use", "--until", UNTIL, "--reason", "信用查询应用"),
        *("--security-measures", "服务端调用，日志留存", "--regulation", "local_open_5", "--json"),
    )
    assert code == 0 and app["status"] == "pending" and app["working_days"] == 5
    code, answer, _ = run(
        capsys, settings, "applications", "approve", app["id"], "--max-per-day", "100", "--json"
    )
    assert code == 0 and answer["application"]["status"] == "approved"
    assert answer["grant"]["principal"] == "public_dev" and answer["grant"]["max_per_day"] == 100
    code, _, err = run(capsys, settings, "applications", "refuse", app["id"], "--legal-basis", "x")
    assert code == 2 and "legal basis" in err


def test_when_the_sweep_runs_then_it_reports_in_json(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code, report, _ = run(capsys, settings, "applications", "sweep", "--json")
    assert code == 0 and set(report) == {
        "deemed_approved",
        "overdue",
        "expiry_warnings",
        "failures",
    }


def test_when_policy_lines_are_listed_then_each_has_its_description(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code, lines, _ = run(capsys, settings, "policy", "lines", "--json")
    assert code == 0
    rules = {item["line"][0] for item in lines["lines"]}
    assert {"grant_expired", "application_required", "dept_conditional_granted"} <= rules
    assert all(item["message"] for item in lines["lines"])
