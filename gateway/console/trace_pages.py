"""Console page and admin API for tracing leaked files, and the public signature endpoints.

The security team uploads a leaked file at `/trace` (or POSTs it to `/api/admin/trace`); the
upload is spooled to a temporary file and read from there, so a large leak never sits in
memory whole. An upload is refused (413) as soon as it is known to be over MAX_UPLOAD: from its
Content-Length before any of it is read, else as it streams in. Recipients verify responses with
the platform's public keys (`/api/public/response-signing-keys`) and fetch an export's detached
signature by request id (`/api/public/signatures/{request_id}`); neither needs a staff sign-in.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.console.common import Console, api_error
from gateway.watermark.leakfile import LeakError, read_leak
from gateway.watermark.trace import TraceResult
from gateway.watermark.tracing import ALERT_THRESHOLD, run_trace

TRACERS = ("security",)
MAX_UPLOAD = 1 << 30  # 1 GiB: a whole-dataset export, as a leak may be
MAX_FORM_OVERHEAD = 1 << 20  # a multipart upload's boundaries, part headers and text fields
MAX_FIELD = 64 << 10  # a text field of the upload form, held in memory
PARTIAL = "注意：文件只读取了一部分 (note: part of the file was not read)"
CHOOSE_FILE = "请选择文件 (choose a file)"


def too_large() -> str:
    limit = _size(MAX_UPLOAD)
    return f"文件过大，上限 {limit} (the upload is larger than the {limit} limit)"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} B"


class TooLarge(Exception):
    """The upload went past MAX_UPLOAD; reading stopped there."""


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
        """Trace the upload; a str is why it cannot be read. TooLarge past MAX_UPLOAD."""
        if isinstance(upload, UploadFile) and upload.size is not None and upload.size > MAX_UPLOAD:
            raise TooLarge  # known before it is copied
        with tempfile.TemporaryDirectory(prefix="shareguard-trace-") as tmp:
            path = Path(tmp) / "leak"
            digest = hashlib.sha256()
            size = 0
            with path.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    size += len(chunk)
                    if size > MAX_UPLOAD:
                        raise TooLarge
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

        def refused(status: int, message: str) -> Response:
            context["error"] = message
            return templates.TemplateResponse(request, "trace.html", context, status_code=status)

        if _declared_over(request, MAX_FORM_OVERHEAD):
            return refused(413, too_large())
        if not _multipart(request):
            return refused(400, CHOOSE_FILE)
        try:
            async with _upload_form(request) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile) or not upload.filename:
                    return refused(400, CHOOSE_FILE)
                outcome = await traced(request, upload, upload.filename)
        except TooLarge:
            return refused(413, too_large())
        except MultiPartException as exc:
            return refused(400, f"上传格式错误 (malformed upload): {exc.message}")
        if isinstance(outcome, str):
            return refused(400, outcome)
        context.update(result=outcome.result, name=upload.filename)
        if outcome.partial:
            context["error"] = f"{PARTIAL}: {outcome.partial}"
        return templates.TemplateResponse(request, "trace.html", context)

    @console.api(*TRACERS)
    async def trace_api(request: Request) -> Response:
        multipart = _multipart(request)
        if _declared_over(request, MAX_FORM_OVERHEAD if multipart else 0):
            return api_error(413, "payload_too_large", too_large())
        try:
            if multipart:
                async with _upload_form(request) as form:
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
        except TooLarge:
            return api_error(413, "payload_too_large", too_large())
        except MultiPartException as exc:
            return api_error(400, "bad_request", f"上传格式错误 (malformed upload): {exc.message}")
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


def _multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def _declared_over(request: Request, overhead: int) -> bool:
    """Whether the Content-Length alone says the upload is over the limit."""
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) > MAX_UPLOAD + overhead


async def _limited(stream: AsyncIterator[bytes], limit: int) -> AsyncGenerator[bytes, None]:
    """The request body, stopped with TooLarge as soon as it goes past `limit` bytes."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise TooLarge
        yield chunk


@asynccontextmanager
async def _upload_form(request: Request) -> AsyncIterator[FormData]:
    """The upload form: one file (spooled to disk) and a few small text fields held in memory.

    Starlette's request.form(max_part_size=...) would raise the limit for the text fields, not
    the file, and read the whole body before the file's size could be checked."""
    async with aclosing(_limited(request.stream(), MAX_UPLOAD + MAX_FORM_OVERHEAD)) as body:
        parser = MultiPartParser(
            request.headers, body, max_files=1, max_fields=16, max_part_size=MAX_FIELD
        )
        form = await parser.parse()
    try:
        yield form
    finally:
        await form.close()
