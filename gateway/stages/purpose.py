"""Purpose: the declared X-Purpose (and X-Case-Id where the purpose needs one), checked against the taxonomy."""

from __future__ import annotations

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.purposes import CASE_ID, PURPOSE_CODE, Taxonomy


def _purpose_required(message: str, detail: str) -> Refusal:
    return Refusal("purpose_required", 400, message, reason=detail, detail=detail)


def _unknown(message: str, reason: str) -> Refusal:
    return Refusal("unknown_purpose", 400, message, reason=reason)


class PurposeStage:
    name = "purpose"

    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        assert ctx.match is not None
        if not ctx.match.route.purpose_required:
            return
        values = flow.request.headers.get_all("x-purpose")
        if len(values) > 1:
            raise _unknown("X-Purpose 请求头重复 (repeated X-Purpose header)", "purpose_repeated")
        code = values[0].strip() if values else ""
        if not code:
            raise _purpose_required(
                "访问数据须声明用途：请设置 X-Purpose 请求头 (declare a purpose in X-Purpose)",
                "purpose_missing",
            )
        if not PURPOSE_CODE.fullmatch(code):
            raise _unknown(
                "用途代码格式不正确：应为小写字母、数字和下划线 (malformed purpose code)",
                "purpose_malformed",
            )
        purpose = self.taxonomy.get(code)
        if purpose is None:
            raise _unknown(f"未知用途 {code} (unknown purpose)", "purpose_unknown")
        cases = flow.request.headers.get_all("x-case-id")
        if len(cases) > 1:
            raise _purpose_required(
                "X-Case-Id 请求头重复 (repeated X-Case-Id header)", "case_repeated"
            )
        case_id = cases[0].strip() if cases else ""
        if case_id and not CASE_ID.fullmatch(case_id):
            raise _purpose_required(
                "案件编号格式不正确：字母、数字与 _ . / : ( ) -，最长 64 位 (malformed X-Case-Id)",
                "case_malformed",
            )
        if purpose.requires_case and not case_id:
            raise _purpose_required(
                f"用途「{purpose.name}」须提供案件编号 X-Case-Id (this purpose requires X-Case-Id)",
                "case_required",
            )
        ctx.purpose = purpose
        ctx.case_id = case_id or None
