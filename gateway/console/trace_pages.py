"""Console page and admin API for tracing leaked files, and the public signature endpoints.

The security team uploads a leaked file at `/trace` (or POSTs it to `/api/admin/trace`); the
upload is spooled to a temporary file and read from there, so a large leak never sits in
memory whole. Recipients verify responses with the platform's public keys
(`/api/public/response-signing-keys`) and fetch an export's detached signature by request id
(`/api/public/signatures/{request_id}`); neither needs a staff sign-in.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.console.common import Console, api_error
from gateway.watermark.leakfile import LeakError, read_leak
from gateway.watermark.trace import TraceResult
from gateway.watermark.tracing import ALERT_THRESHOLD, run_trace

TRACERS = ("security",)
MAX_UPLOAD = 1 << 30  # 1 GiB: a whole-dataset export, as a leak may be
PARTIAL = "注意：文件只读取了一部分 (note: part of the file was not read)"


@dataclass
class Traced:
    result: TraceResult
    partial: str | None  # why part of the file was not read (LeakTable.partial)

    def to_json(self) -> dict[str, Any]:
        document = self.result.to_json()
        document["file"]["partial"] = self.partial
        return document


def routes(console: Console) -> list[Route]:
    gateway = console.gateway
    templates = console.templates

    async def traced(request: Request, upload: Any, name: str) -> Traced | str:
        with tempfile.TemporaryDirectory(prefix="shareguard-trace-") as tmp:
            path = Path(tmp) / "leak"
            digest = hashlib.sha256()
            size = 0
            with path.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        return "文件过大 (the file is larger than 1 GiB)"
                    digest.update(chunk)
                    out.write(chunk)
            try:
                table = await asyncio.to_thread(read_leak, path)
            except LeakError as exc:
                return f"无法读取泄露文件 (cannot read the leaked file): {exc}"
            staff = request.state.staff
            result = await asyncio.to_thread(
                run_trace,
                gateway,
                table,
                actor=staff.id,
                roles=staff.roles,
                source=name,
                data_sha256=digest.hexdigest(),
                source_ip=request.client.host if request.client else None,
            )
            return Traced(result, table.partial)

    @console.page(*TRACERS)
    async def trace_form(request: Request) -> Response:
        return templates.TemplateResponse(
            request,
            "trace.html",
            {"staff": request.state.staff, "result": None, "alert_threshold": ALERT_THRESHOLD},
        )

    @console.page(*TRACERS)
    async def trace_upload(request: Request) -> Response:
        context: dict[str, Any] = {
            "staff": request.state.staff,
            "result": None,
            "error": None,
            "alert_threshold": ALERT_THRESHOLD,
        }
        async with request.form(max_part_size=MAX_UPLOAD) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                context["error"] = "请选择文件 (choose a file)"
                return templates.TemplateResponse(request, "trace.html", context, status_code=400)
            outcome = await traced(request, upload, upload.filename)
        if isinstance(outcome, str):
            context["error"] = outcome
            return templates.TemplateResponse(request, "trace.html", context, status_code=400)
        context.update(result=outcome.result, name=upload.filename)
        if outcome.partial:
            context["error"] = f"{PARTIAL}: {outcome.partial}"
        return templates.TemplateResponse(request, "trace.html", context)

    @console.api(*TRACERS)
    async def trace_api(request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_part_size=MAX_UPLOAD) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    return api_error(
                        400, "bad_request", "缺少文件字段 file (missing the file field)"
                    )
                outcome = await traced(request, upload, upload.filename or "upload")
        else:
            outcome = await traced(
                request, _Body(request), request.query_params.get("name", "upload")
            )
        if isinstance(outcome, str):
            return api_error(400, "bad_request", outcome)
        return JSONResponse(outcome.to_json())

    async def public_keys(request: Request) -> Response:
        return JSONResponse(gateway.signer.public_keys())

    async def signature(request: Request) -> Response:
        entry = await asyncio.to_thread(
            gateway.registry.by_request, request.path_params["request_id"]
        )
        if entry is None or entry.signature is None:
            return api_error(
                404, "not_found", "没有这次请求的签名 (no signature for this request id)"
            )
        return JSONResponse({"request_id": entry.request_id, **entry.signature})

    return [
        Route("/trace", trace_form, methods=["GET"]),
        Route("/trace", trace_upload, methods=["POST"]),
        Route("/api/admin/trace", trace_api, methods=["POST"]),
        Route("/api/public/response-signing-keys", public_keys, methods=["GET"]),
        Route("/api/public/signatures/{request_id}", signature, methods=["GET"]),
    ]


class _Body:
    """A raw request body read like an upload."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream()
        self._pending = b""

    async def read(self, size: int) -> bytes:
        while len(self._pending) < size:
            try:
                self._pending += await self._stream.__anext__()
            except StopAsyncIteration:
                break
        out, self._pending = self._pending[:size], self._pending[size:]
        return out
