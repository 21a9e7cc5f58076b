"""Decode: read the platform's buffered response into records; what cannot be read is refused."""

from __future__ import annotations

from typing import Any

import orjson
from mitmproxy import http

from gateway.catalog import PUBLIC_FIELD_KEYS, PUBLIC_LISTS, PUBLIC_TEXT
from gateway.codecs import CodecError, decode_all
from gateway.context import Body, RequestContext
from gateway.errors import Refusal
from gateway.formats import media_type


def unreadable(message: str, reason: str) -> Refusal:
    return Refusal("upstream_unreadable", 502, message, reason=reason)


# What the caller is told when the platform answers with an error: never the platform's own body,
# which the gateway has not shaped.
UPSTREAM_ERRORS = {
    400: (
        "bad_request",
        400,
        "交换平台拒绝了请求参数 (the platform rejected the request parameters)",
    ),
    404: ("not_found", 404, "交换平台上没有这条记录 (no such record on the platform)"),
}


class DecodeStage:
    name = "decode"

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if ctx.streaming:
            return
        assert ctx.match is not None and flow.response is not None
        resp = flow.response
        if resp.status_code != 200:
            code, status, message = UPSTREAM_ERRORS.get(
                resp.status_code,
                ("upstream_error", 502, "交换平台返回错误 (the platform answered with an error)"),
            )
            raise Refusal(code, status, message, reason=f"upstream_status_{resp.status_code}")
        raw = resp.raw_content or b""
        if len(raw) > self.max_body_bytes:
            raise unreadable("上游响应过大 (upstream body too large)", "body_too_large")
        if media_type(resp.headers.get("content-type", "")) != "application/json":
            raise unreadable(
                "上游响应类型不是 JSON，拒绝放行 (upstream body is not JSON: refused)",
                "content_type",
            )
        try:
            # Decoded here, bounded: the body limit holds for the decoded bytes too, so a small
            # compressed body cannot expand without limit.
            content = decode_all(
                raw, resp.headers.get("content-encoding", "identity"), self.max_body_bytes
            )
        except CodecError:
            raise unreadable(
                "上游响应的压缩编码无法解码 (upstream content-encoding cannot be decoded)",
                "encoding",
            ) from None
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise unreadable(
                "上游响应不是合法 JSON (upstream body is not valid JSON)", "json"
            ) from None
        dataset_id = ctx.match.dataset.id if ctx.match.dataset is not None else None
        ctx.body = _body(ctx.match.route.body, data, dataset_id)


# What the records envelope may carry besides its records (CONTRACT.md; the demo platform sends
# exactly these): anything else the platform adds (debug output, links holding the query) is
# neither shaped nor scanned, so it is dropped.
ENVELOPE_COUNTS = ("total", "offset", "limit")
# The catalog document is kept key by key (catalog.PUBLIC_*, beside Dataset.public_metadata):
# the rest is dropped; what is kept is still scanned by the shape stage.


def _malformed(what: str) -> Refusal:
    return unreadable(f"上游响应的 {what} 不合规 (upstream {what} is malformed)", "shape")


def _envelope(data: dict[str, Any], dataset_id: str | None) -> dict[str, Any]:
    envelope: dict[str, Any] = {}
    if "dataset" in data:
        if data["dataset"] != dataset_id:
            raise _malformed("dataset")
        envelope["dataset"] = dataset_id
    for name in ENVELOPE_COUNTS:
        if name in data:
            value = data[name]
            if type(value) is not int or value < 0:
                raise _malformed(name)
            envelope[name] = value
    return envelope


def _catalog(data: Any) -> dict[str, Any]:
    datasets = data.get("datasets") if isinstance(data, dict) else None
    if not isinstance(datasets, list):
        raise _malformed("catalog")
    return {"datasets": [_catalog_entry(entry) for entry in datasets]}


def _catalog_entry(entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _malformed("catalog")
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key in PUBLIC_TEXT:
            if not isinstance(value, str):
                raise _malformed(f"catalog {key}")
        elif key in PUBLIC_LISTS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _malformed(f"catalog {key}")
        elif key == "fields":
            if not isinstance(value, list):
                raise _malformed("catalog fields")
            value = [_catalog_field(f) for f in value]
        else:
            continue
        out[key] = value
    return out


def _catalog_field(field: Any) -> dict[str, str]:
    if not isinstance(field, dict):
        raise _malformed("catalog fields")
    out = {}
    for key, value in field.items():
        if key in PUBLIC_FIELD_KEYS:
            if not isinstance(value, str):
                raise _malformed(f"catalog field {key}")
            out[key] = value
    return out


def _body(kind: str, data: Any, dataset_id: str | None = None) -> Body:
    if kind == "metadata":
        # The only metadata route forwarded is the catalog (the health check is local).
        return Body(kind=kind, document=_catalog(data))
    if kind == "record":
        if not isinstance(data, dict):
            raise unreadable("上游记录不是 JSON 对象 (upstream record is not an object)", "shape")
        return Body(kind=kind, records=[data])
    if kind == "records":
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise unreadable(
                "上游响应缺少 records 列表 (upstream body has no records list)", "shape"
            )
        return Body(kind=kind, records=records, envelope=_envelope(data, dataset_id))
    raise unreadable(f"该路由的响应不能缓冲处理 (route body {kind} is not buffered)", "shape")
