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
from gateway.codecs import CodecError, Decoder, Encoder, decoder_for, encoder_for
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
from gateway.stages.encode import choose_encoding, clean_response_headers

log = logging.getLogger(__name__)

RecordTransform = Callable[[Record], Record | None]


class StreamAbort(Exception):
    """Raised by a record transform to stop an export; the message is the recorded reason."""


class ExportStream:
    """The callable mitmproxy feeds the platform's chunks to; returns the bytes to deliver."""

    def __init__(
        self,
        fmt: str,
        dataset: Dataset,
        ledger: DeliveryLedger,
        transforms: tuple[RecordTransform, ...] = (),
        *,
        decoder: Decoder | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.reader = reader_for(fmt, frozenset({dataset.key}))
        self.writer = RecordWriter(fmt, dataset.id)
        self.ledger = ledger
        self.transforms = transforms
        self.subject_field = dataset.subject
        self.decoder = decoder  # the platform's content-encoding, read incrementally
        self.encoder = encoder  # the caller's Accept-Encoding, applied after shaping
        self.digest = hashlib.sha256()
        self.sent_digest = hashlib.sha256()  # of the bytes as sent, after the caller's encoding
        # Records to add after a delivered one (watermark decoys); they stand for nobody.
        self.inserter: Callable[[Record], list[Record]] | None = None
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
                data = self.decoder.feed(chunk) if self.decoder is not None else chunk
                records = list(self.reader.feed(data)) if data else []
            else:  # mitmproxy signals the end of the body with an empty chunk
                records = []
                if self.decoder is not None:
                    tail = self.decoder.feed(b"") + self.decoder.close()
                    records = list(self.reader.feed(tail)) if tail else []
                records += self.reader.close()
                self._finished = True
            out += self.writer.write(self._transform(records))
            if self._finished:
                out += self.writer.finish()
            # The digest is of the shaped bytes, before the caller's compression.
            self.digest.update(out)
            if self.encoder is not None:
                out = self.encoder.feed(out) if out else b""
                if self._finished:
                    out += self.encoder.finish()
        except (FormatError, CodecError, StreamAbort) as exc:
            self.failed = str(exc)
            return []
        except Exception as exc:  # never let a bad record reach the caller half-processed
            log.exception("导出流处理失败 (export stream failed)")
            self.failed = f"internal: {exc}"
            return []
        if not out:
            return []
        self.sent_digest.update(out)
        self.bytes_out += len(out)
        return [out]

    def _transform(self, records: list[Record]) -> list[Record]:
        out = []
        subjects = []
        subject_field = self.subject_field
        for record in records:
            # The subject as the platform named it: shaping may put a pseudonym in its place.
            subject = record.get(subject_field) if subject_field is not None else None
            for transform in self.transforms:
                record_or_none = transform(record)
                if record_or_none is None:
                    break
                record = record_or_none
            else:
                out.append(record)
                subjects.append(subject)
                if self.inserter is not None:
                    for extra in self.inserter(record):
                        out.append(extra)
                        subjects.append(None)
        self.ledger.add(out, subjects if subject_field is not None else None)
        return out

    @property
    def complete(self) -> bool:
        return self._finished and self.failed is None


class ExportStage:
    name = "export"
    finishes_streams = True  # runs when a stream breaks too (Pipeline.error)

    def __init__(self, hasher: Callable[[str], str], max_decoded_per_chunk: int = 64 << 20) -> None:
        self.hasher = hasher
        # The most one chunk of the platform's compressed stream may expand to.
        self.max_decoded_per_chunk = max_decoded_per_chunk

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
        try:
            decoder = decoder_for(
                resp.headers.get("content-encoding", "identity"), self.max_decoded_per_chunk
            )
        except CodecError:
            raise unreadable(
                "导出流的压缩编码不受支持 (export content-encoding not supported)", "encoding"
            ) from None
        if ctx.shaper is None:
            # An export with no shaper would leave unshaped: never.
            raise RuntimeError("导出缺少整形规则 (export without a shaper)")
        encoding = choose_encoding(ctx.accept_encoding)
        stream = ExportStream(
            fmt,
            ctx.match.dataset,
            DeliveryLedger(ctx.match.dataset, self.hasher),
            (ctx.shaper.shape,),
            decoder=decoder,
            encoder=encoder_for(encoding) if encoding is not None else None,
        )
        ctx.streaming = True
        ctx.export = stream
        clean_response_headers(resp)
        resp.headers["content-type"] = CONTENT_TYPES[fmt] + (
            "; charset=utf-8" if fmt != "ndjson" else ""
        )
        if encoding is not None:
            resp.headers["content-encoding"] = encoding
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
