"""Shape: deliver only what the obligations and the masking profile allow — buffered and streamed."""

from __future__ import annotations

from collections.abc import Mapping

from mitmproxy import http

from gateway.context import RequestContext
from gateway.errors import Refusal
from gateway.service import Gateway
from gateway.shaping import Shaper, ShaperFactory
from gateway.shaping.scanner import ScanResult
from gateway.workdays import china_today

# Query parameters that page or format a response; every other one filters records by a field.
NON_FILTER_PARAMETERS = frozenset({"limit", "offset", "format", "scale"})


class ShapeStage:
    name = "shape"

    def __init__(self, gateway: Gateway) -> None:
        self.factory = ShaperFactory(gateway.masking, gateway.keyring)

    def request(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        # Built before forwarding, so a streamed export can use it from its first record.
        if ctx.obligations is None or ctx.match is None or ctx.match.dataset is None:
            return
        assert ctx.subject is not None
        subject = ctx.subject
        self.factory.keyring.maybe_reload()  # a rotation by another process applies within 1 s
        public = subject.kind == "public"
        lineage = ctx.purpose.lineage if ctx.purpose is not None else ()
        try:
            profile = self.factory.policy.profile_for(
                ctx.obligations.masking_profile, lineage, public
            )
        except KeyError:
            raise Refusal(
                "forbidden",
                403,
                "授权指定的脱敏规则不存在，拒绝放行 (the grant names an unknown masking profile)",
                reason="masking_profile_unknown",
            ) from None
        if profile.requires_case and not ctx.case_id:
            raise Refusal(
                "purpose_required",
                400,
                "该脱敏规则须提供案件编号 X-Case-Id (this masking profile needs a case number)",
                reason="case_required",
                detail="case_required",
            )
        # Pseudonyms are per receiving department; a public caller is its own recipient.
        recipient = (
            subject.department
            if subject.kind == "department" and subject.department
            else subject.id
        )
        ctx.shaper = self.factory.shaper(
            ctx.match.dataset,
            ctx.obligations,
            profile,
            recipient,
            china_today(ctx.received),  # ages and dates count on the Chinese calendar day
        )
        ctx.delivery.masking_profile = profile.name
        ctx.delivery.key_version = ctx.shaper.key_version
        _check_filters(ctx.match.query, ctx.shaper)

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        shaper = ctx.shaper
        if ctx.streaming:
            if shaper is not None and ctx.export is not None:
                delivered = ctx.export.ledger.records > 0
                ctx.delivery.masked_fields = shaper.masked_fields if delivered else ()
                ctx.delivery.undeclared = dict(shaper.found)
            return
        if ctx.body is None:
            return
        if ctx.body.kind == "metadata":
            # The catalog holds no personal data by contract; what the platform put there
            # anyway is found and hidden as for a de-identified recipient.
            found = ScanResult()
            ctx.body.document = self.factory.scanner(True).mask_value(ctx.body.document, found)
            ctx.delivery.undeclared = dict(found.found)
            return
        if shaper is None:
            # A data body with no shaper means no obligations were set: never pass it through.
            raise RuntimeError("数据响应缺少整形规则 (data response without a shaper)")
        subject_field = ctx.match.dataset.subject if ctx.match and ctx.match.dataset else None
        if subject_field is not None:
            # The audit log names the people whose data left, by their real identifier (keyed
            # hash), whatever the caller received in its place.
            ctx.body.subjects = [r.get(subject_field) for r in ctx.body.records]
        ctx.body.records = shaper.shape_all(ctx.body.records)
        ctx.delivery.masked_fields = shaper.masked_fields if ctx.body.records else ()
        ctx.delivery.undeclared = dict(shaper.found)


def _check_filters(query: Mapping[str, str], shaper: Shaper) -> None:
    """A record may be looked up only by a field the caller receives in clear.

    Filtering on a field the profile masks, pseudonymises or drops would let the caller pair a
    person it names with what it receives in their place (a pseudonym stable across all its
    responses): the de-identification undone. Refused before the platform is asked.
    """
    if not query.keys() - NON_FILTER_PARAMETERS:
        return  # no filter: the common request pays nothing more
    clear = {p.name for p in shaper.plan.fields if not p.masked}
    for name in query:
        if name in NON_FILTER_PARAMETERS or name in clear:
            continue
        raise Refusal(
            "forbidden",
            403,
            f"按字段 {name} 查询须能明文获得该字段，当前脱敏规则不允许 "
            f"(filtering by {name} needs the field in clear, which this masking profile "
            "does not deliver)",
            reason="identifier_filter_not_allowed",
        )
