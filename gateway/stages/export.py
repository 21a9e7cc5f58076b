"""Export: stream a bulk download record by record, in bounded memory, audited before the first byte.

An export is never buffered. When the platform's headers arrive, the gateway writes a `started`
audit event and waits until it is durable; only then does the first byte go out. Each record is
parsed, passed through the record transforms and written out again in the same format. At the
end a `complete` event records what was delivered; if the stream broke or that event cannot be
written, the connection is cut so the caller sees an incomplete download, never a silently
truncated one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from mitmproxy import http

from gateway.catalog import Dataset
from gateway.context import RequestContext
from gateway.delivery import DeliveryLedger
from gateway.formats import (
    CONTENT_TYPES,
    FormatError,
    Record,
    RecordWriter,
    media_type,
    reader_for,
)
from gateway.stages.decode import unreadable
from gateway.stages.encode import clean_response_headers

log = logging.getLogger(__name__)

RecordTransform = Callable[[Record], Record | None]


class ExportStream:
    """The callable mitmproxy feeds the platform's chunks to; returns the bytes to deliver."""

    def __init__(
        self,
        fmt: str,
        dataset: Dataset,
        ledger: DeliveryLedger,
        transforms: tuple[RecordTransform, ...] = (),
    ) -> None:
        self.reader = reader_for(fmt)
        self.writer = RecordWriter(fmt, dataset.id)
        self.ledger = ledger
        self.transforms = transforms
        self.digest = hashlib.sha256()
        self.bytes_out = 0
        self.failed: str | None = None
        self._started = False
        self._finished = False

    def __call__(self, chunk: bytes) -> list[bytes]:
        # A list of chunks, never b"": mitmproxy frames an empty chunk as the end of a chunked
        # body, which would make a broken export look complete.
        if self.failed is not None or self._finished:
            return []
        try:
            out = b"" if self._started else self.writer.start()
            self._started = True
            if chunk:
                records = list(self.reader.feed(chunk))
            else:  # mitmproxy signals the end of the body with an empty chunk
                records = list(self.reader.close())
                self._finished = True
            out += self.writer.write(self._transform(records))
            if self._finished:
                out += self.writer.finish()
        except FormatError as exc:
            self.failed = str(exc)
            return []
        except Exception as exc:  # never let a bad record reach the caller half-processed
            log.exception("导出流处理失败 (export stream failed)")
            self.failed = f"internal: {exc}"
            return []
        if not out:
            return []
        self.digest.update(out)
        self.bytes_out += len(out)
        return [out]

    def _transform(self, records: list[Record]) -> list[Record]:
        out = []
        for record in records:
            for transform in self.transforms:
                record_or_none = transform(record)
                if record_or_none is None:
                    break
                record = record_or_none
            else:
                out.append(record)
        self.ledger.add(out)
        return out

    @property
    def complete(self) -> bool:
        return self._finished and self.failed is None


class ExportStage:
    name = "export"

    def __init__(self, hasher: Callable[[str], str]) -> None:
        self.hasher = hasher

    def responseheaders(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        if ctx.refusal is not None or ctx.match is None or ctx.match.route.body != "export":
            return
        resp = flow.response
        assert resp is not None and ctx.match.dataset is not None
        if resp.status_code != 200:
            return  # an error body is small: the buffered path maps it to a refusal
        fmt = ctx.match.query.get("format", "json")
        if media_type(resp.headers.get("content-type", "")) != CONTENT_TYPES[fmt]:
            raise unreadable(
                "导出内容类型与所请求格式不符 (export content type does not match the format)",
                "content_type",
            )
        if resp.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
            raise unreadable(
                "导出流的压缩编码不受支持 (export content-encoding not supported)", "encoding"
            )
        if ctx.shaper is None:
            # An export with no shaper means no obligations were set: never pass it through.
            raise RuntimeError("导出缺少整形规则 (export without a shaper)")
        stream = ExportStream(
            fmt,
            ctx.match.dataset,
            DeliveryLedger(ctx.match.dataset, self.hasher),
            transforms=(ctx.shaper.shape,),
        )
        ctx.streaming = True
        ctx.export = stream
        clean_response_headers(resp)
        resp.headers["content-type"] = CONTENT_TYPES[fmt] + (
            "; charset=utf-8" if fmt != "ndjson" else ""
        )
        if flow.request.http_version == "HTTP/1.1":
            resp.headers["transfer-encoding"] = "chunked"
        resp.stream = stream

    def response(self, ctx: RequestContext, flow: http.HTTPFlow) -> None:
        stream = ctx.export
        if not ctx.streaming or stream is None:
            return
        stream.ledger.fill(ctx.delivery)
        ctx.delivery.body_sha256 = stream.digest.hexdigest()
        ctx.delivery.bytes_out = stream.bytes_out
        if not stream.complete:
            ctx.stream_failed = stream.failed or "incomplete"
