"""Content encodings, read and written incrementally with bounded output: gzip, deflate, br, zstd.

The platform's bytes are decoded here, never by a library call that decodes a whole body at
once: a small compressed body can expand without limit (a decompression bomb), so every
decoder stops with `CodecError` once its output passes the limit it was given. The caller's
encoding is applied after shaping, by the same module.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard

__all__ = [
    "DECODABLE",
    "ENCODABLE",
    "CodecError",
    "Decoder",
    "Encoder",
    "decode_all",
    "decoder_for",
    "encoder_for",
]

DECODABLE = ("identity", "gzip", "x-gzip", "deflate", "br", "zstd")
ENCODABLE = ("zstd", "br", "gzip", "deflate")
STEP = 256 * 1024  # decompress in steps of this many bytes, checking the limit between them


class CodecError(Exception):
    """A body that cannot be decoded, or would decode to more than allowed."""


class Decoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def close(self) -> bytes: ...


class Encoder(Protocol):
    def feed(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class _Budget:
    """Output allowed per `feed` (streams) or in all (buffered bodies)."""

    def __init__(self, limit: int, per_feed: bool) -> None:
        self.limit = limit
        self.per_feed = per_feed
        self.used = 0

    def start(self) -> None:
        if self.per_feed:
            self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise CodecError(
                "解压后数据超出上限，疑似压缩炸弹 (decoded body exceeds the limit: refused)"
            )


class _Identity:
    def __init__(self, budget: _Budget) -> None:
        self.budget = budget

    def feed(self, data: bytes) -> bytes:
        # A stream's budget is against expansion, which plain bytes cannot do: a chunk as read
        # is in memory already. A buffered body's is its size in all.
        if not self.budget.per_feed:
            self.budget.take(len(data))
        return data

    def close(self) -> bytes:
        return b""


class _Zlib:
    """gzip (possibly several members) or deflate (zlib-wrapped, or raw as some servers send)."""

    def __init__(self, budget: _Budget, gzip: bool) -> None:
        self.budget = budget
        self.gzip = gzip
        self._d: zlib._Decompress | None = zlib.decompressobj(31) if gzip else None
        self._head = b""

    def _pick_deflate(self, data: bytes) -> bytes:
        # RFC 9110 deflate is the zlib format; a raw deflate stream has no header to check.
        self._head += data
        if len(self._head) < 2:
            return b""
        cmf, flg = self._head[0], self._head[1]
        wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
        self._d = zlib.decompressobj(15 if wrapped else -15)
        data, self._head = self._head, b""
        return data

    def feed(self, data: bytes) -> bytes:
        self.budget.start()
        if self._d is None:
            data = self._pick_deflate(data)
            if self._d is None:
                return b""
        out: list[bytes] = []
        try:
            while data:
                d = self._d
                assert d is not None
                piece = d.decompress(data, STEP)
                self.budget.take(len(piece))
                out.append(piece)
                data = d.unconsumed_tail
                if d.eof:
                    if d.unused_data and self.gzip:
                        data = d.unused_data  # the next gzip member
                        self._d = zlib.decompressobj(31)
                    elif d.unused_data.strip(b"\0"):
                        raise CodecError("压缩流之后还有多余数据 (trailing data after the stream)")
                    else:
                        break
                elif not data and len(piece) == STEP:
                    data = b""  # output may be pending: ask again with no new input
                    more = d.decompress(b"", STEP)
                    while more:
                        self.budget.take(len(more))
                        out.append(more)
                        more = d.decompress(b"", STEP) if len(more) == STEP else b""
        except zlib.error as exc:
            raise CodecError(f"压缩数据损坏 (corrupt compressed data): {exc}") from None
        return b"".join(out)

    def close(self) -> bytes:
        if self._d is None:
            if self._head:
                raise CodecError("压缩流不完整 (truncated compressed stream)")
            return b""
        if not self._d.eof:
            raise CodecError("压缩流不完整 (truncated compressed stream)")
        return b""


class _Brotli:
    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self._d = brotli.Decompressor()

    def feed(self, data: bytes) -> bytes:
        self.budget.start()
        out: list[bytes] = []
        try:
            piece = self._d.process(data, output_buffer_limit=STEP)
            self.budget.take(len(piece))
            out.append(piece)
            # With an output limit, brotli 1.2 hands out its output in pieces and keeps the
            # rest pending whatever can_accept_more_data() says: drain until nothing comes.
            while piece:
                piece = self._d.process(b"", output_buffer_limit=STEP)
                self.budget.take(len(piece))
                out.append(piece)
        except brotli.error as exc:
            raise CodecError(f"br 数据损坏 (corrupt brotli data): {exc}") from None
        return b"".join(out)

    def close(self) -> bytes:
        if not self._d.is_finished():
            raise CodecError("br 压缩流不完整 (truncated brotli stream)")
        return b""


class _Zstd:
    """zstd frames, one after another, with the limit checked between small input slices.

    zstandard's decompressobj has no output limit, so the input is fed in slices: one slice
    of SLICE bytes can expand to at most a few MB (a block header per 128 KB block), which
    bounds what the limit check can miss.
    """

    SLICE = 512

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self._d = zstandard.ZstdDecompressor().decompressobj()
        self._in_frame = False

    def feed(self, data: bytes) -> bytes:
        self.budget.start()
        out: list[bytes] = []
        view = memoryview(data)
        try:
            while view:
                piece, view = bytes(view[: self.SLICE]), view[self.SLICE :]
                while piece:
                    self._in_frame = True
                    decoded = self._d.decompress(piece)
                    self.budget.take(len(decoded))
                    out.append(decoded)
                    piece = b""
                    if self._d.eof:
                        self._in_frame = False
                        piece = self._d.unused_data
                        self._d = zstandard.ZstdDecompressor().decompressobj()
        except zstandard.ZstdError as exc:
            raise CodecError(f"zstd 数据损坏 (corrupt zstd data): {exc}") from None
        return b"".join(out)

    def close(self) -> bytes:
        if self._in_frame:
            raise CodecError("zstd 压缩流不完整 (truncated zstd stream)")
        return b""


def _normalise(content_encoding: str) -> str:
    return content_encoding.strip().lower() or "identity"


def decoder_for(content_encoding: str, limit: int, *, per_feed: bool = True) -> Decoder:
    """An incremental decoder whose output is at most `limit` bytes per feed (or in all)."""
    encoding = _normalise(content_encoding)
    budget = _Budget(limit, per_feed)
    if encoding == "identity":
        return _Identity(budget)
    if encoding in ("gzip", "x-gzip"):
        return _Zlib(budget, gzip=True)
    if encoding == "deflate":
        return _Zlib(budget, gzip=False)
    if encoding == "br":
        return _Brotli(budget)
    if encoding == "zstd":
        return _Zstd(budget)
    raise CodecError(f"不支持的内容编码 (unsupported content-encoding): {content_encoding!r}")


def decode_all(data: bytes, content_encoding: str, limit: int) -> bytes:
    """A whole buffered body decoded, refusing one that would exceed `limit` bytes."""
    decoder = decoder_for(content_encoding, limit, per_feed=False)
    out = decoder.feed(data)
    tail = decoder.close()
    return out + tail


class _ZlibEncoder:
    def __init__(self, gzip: bool) -> None:
        self._c = zlib.compressobj(4, zlib.DEFLATED, 31 if gzip else 15)

    def feed(self, data: bytes) -> bytes:
        # A sync flush per chunk: the caller can read every record as soon as it is sent.
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._c.flush(zlib.Z_FINISH)


class _BrotliEncoder:
    def __init__(self) -> None:
        self._c = brotli.Compressor(quality=4)

    def feed(self, data: bytes) -> bytes:
        return bytes(self._c.process(data)) + bytes(self._c.flush())

    def finish(self) -> bytes:
        return bytes(self._c.finish())


class _ZstdEncoder:
    def __init__(self) -> None:
        self._c = zstandard.ZstdCompressor(level=3).compressobj()

    def feed(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def encoder_for(encoding: str) -> Encoder:
    if encoding in ("gzip", "deflate"):
        return _ZlibEncoder(gzip=encoding == "gzip")
    if encoding == "br":
        return _BrotliEncoder()
    if encoding == "zstd":
        return _ZstdEncoder()
    raise ValueError(f"unsupported encoding {encoding!r}")
