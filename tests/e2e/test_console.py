"""The console in a real browser: an auditor signs in and finds an access that just happened."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import RunningGateway
from tests.factories import until

pytestmark = pytest.mark.e2e


def sign_in(page: Any, console: str, username: str, password: str) -> None:
    page.goto(console + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_an_auditor_signs_in_and_finds_the_access_that_just_happened(
    running: RunningGateway, browser: Any
) -> None:
    r = httpx.get(
        running.proxy + "/api/v1/datasets/population/records?limit=1",
        headers={
            "Authorization": f"Bearer {running.key('mz_caseworker')}",
            "X-Purpose": "social_assistance_review",
            "X-Case-Id": "MZ-2026-000999",
        },
    )
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    auditor = running.credentials["auditor"]
    page = browser.new_page()
    try:
        sign_in(page, running.console, auditor["username"], auditor["password"])
        assert page.locator("h1").inner_text().startswith("概览")
        page.click("text=审计日志")
        page.fill("input[name=user]", "mz_caseworker")
        page.click("form.filters button[type=submit]")
        row = page.locator("table.events tr", has_text=request_id)
        assert row.count() == 1
        assert "允许" in row.inner_text() and "population" in row.inner_text()
    finally:
        page.close()


def test_an_admin_cannot_open_the_access_log(running: RunningGateway, browser: Any) -> None:
    admin = running.credentials["admin"]
    page = browser.new_page()
    try:
        sign_in(page, running.console, admin["username"], admin["password"])
        response = page.goto(running.console + "/audit")
        assert response is not None and response.status == 403
        assert "三员分立" in page.content()
    finally:
        page.close()


def test_a_wrong_password_is_told_in_chinese_and_english(
    running: RunningGateway, browser: Any
) -> None:
    page = browser.new_page()
    try:
        sign_in(page, running.console, "auditor", "not-the-password")
        assert (
            "用户名或密码错误 (wrong username or password)"
            in page.locator("[role=alert]").inner_text()
        )
    finally:
        page.close()


def test_the_security_team_triages_a_fresh_alert_in_the_console(
    running: RunningGateway, browser: Any
) -> None:
    r = httpx.get(
        running.proxy + "/api/v1/datasets/population/records/P00004242",
        headers={
            "Authorization": f"Bearer {running.key('wj_officer')}",
            "X-Purpose": "health_management",
        },
    )
    assert r.status_code == 200  # the canary record itself is served; reading it is the alarm
    security = running.credentials["security"]
    page = browser.new_page()
    try:
        sign_in(page, running.console, security["username"], security["password"])
        row = page.locator("table.alerts tr", has_text="wj_officer")

        def listed() -> bool:
            page.goto(running.console + "/alerts")
            return row.count() > 0

        # Detection runs beside the proxy: give it a moment.
        until(listed, "the honeytoken alert listed on the alerts page", 15)
        row.locator("a").first.click()
        assert "蜜罐" in page.locator("h1").inner_text()
        page.select_option("select[name=status]", "investigating")
        page.fill("input[name=note]", "核对调取记录")
        page.click("form.filters button[type=submit]")
        assert page.locator("#status").inner_text() == "调查中"
        assert "核对调取记录" in page.locator("table.events").inner_text()
    finally:
        page.close()
