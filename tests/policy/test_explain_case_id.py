"""`policy explain` refuses a malformed case reference for the same reason the purpose stage does."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.pipeline import Pipeline
from gateway.policy.explain import Question, explain
from gateway.service import Gateway
from tests.factories import body_of, drive, request_flow

PATH = "/api/v1/datasets/population/records"
MALFORMED = ["bad case!", "-MZ-1", "MZ 2026", "x" * 65, "案件1"]


def ask(gateway: Gateway, case_id: str | None) -> dict[str, Any]:
    question = Question(
        user="mz_caseworker",
        dataset="population",
        purpose="social_assistance_review",
        case_id=case_id,
    )
    return explain(gateway, question)


async def stage_reason(gateway: Gateway, key: str, case_id: str) -> str | None:
    flow = request_flow(
        PATH, key=key, purpose="social_assistance_review", headers={"x-case-id": case_id}
    )
    await drive(Pipeline.of(gateway), flow)
    assert flow.response is not None
    if flow.response.status_code == 200:
        return None
    detail = body_of(flow).get("detail")
    return str(detail) if detail is not None else None


@pytest.mark.parametrize("case_id", MALFORMED)
async def test_when_the_case_id_is_malformed_then_explain_refuses_as_the_gateway_does(
    gateway: Gateway, credentials: dict[str, dict[str, Any]], case_id: str
) -> None:
    answer = ask(gateway, case_id)
    assert answer["decision"] == "deny"
    assert answer["refusal"]["code"] == "purpose_required"
    assert answer["refusal"]["reason"] == "case_malformed"
    assert "malformed X-Case-Id" in answer["refusal"]["message"]
    key = credentials["mz_caseworker"]["api_key"]
    assert await stage_reason(gateway, key, case_id) == answer["refusal"]["reason"]


async def test_when_the_case_id_is_well_formed_then_explain_and_the_gateway_agree_it_passes(
    gateway: Gateway, credentials: dict[str, dict[str, Any]]
) -> None:
    answer = ask(gateway, " MZ-2026-000123 ")
    assert answer["refusal"] is None or answer["refusal"]["reason"] not in (
        "case_malformed",
        "case_required",
    )
    key = credentials["mz_caseworker"]["api_key"]
    assert await stage_reason(gateway, key, "MZ-2026-000123") not in (
        "case_malformed",
        "case_required",
    )


def test_when_no_case_id_is_given_then_explain_still_says_one_is_required(gateway: Gateway) -> None:
    assert ask(gateway, None)["refusal"]["reason"] == "case_required"
