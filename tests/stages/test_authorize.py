"""Authorize: an error while deciding is a refusal (403 policy_error), never a pass."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from gateway.audit.search import AuditQuery, search
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from tests.factories import body_of, drive, json_response, request_flow

RECORD = {"record_id": "P00000001", "name": "张三", "id_number": "11010519491231002X"}


@pytest.mark.parametrize("failure", [RuntimeError, KeyError, ZeroDivisionError])
async def test_when_the_decider_raises_then_the_request_is_refused_403_policy_error(
    gateway: Gateway,
    credentials: dict[str, dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    failure: type[Exception],
) -> None:
    calls: list[datetime] = []

    def decide(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[-1])
        raise failure("policy store unreachable")

    monkeypatch.setattr(gateway.decider, "decide", decide)
    flow = request_flow(
        "/api/v1/datasets/population/records",
        key=credentials["tj_analyst"]["api_key"],
        purpose="statistics",
    )
    ctx = await drive(
        Pipeline.of(gateway),
        flow,
        json_response({"dataset": "population", "records": [RECORD]}),
    )
    assert len(calls) == 1  # the request reached the authorize stage and its decider
    assert flow.response is not None and flow.response.status_code == 403
    body = body_of(flow)
    assert body["error"] == "forbidden" and "policy error" in body["message"]
    assert "records" not in body and "张三" not in flow.response.get_text(strict=False)
    assert ctx.decision is None and ctx.obligations is None
    [event] = search(gateway.settings.journal_path, AuditQuery(), gateway.hasher).events
    assert event["shareguard"]["reason"] == "policy_error"
