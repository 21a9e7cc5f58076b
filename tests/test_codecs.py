"""Content encodings read incrementally and bounded, and written after shaping."""

from __future__ import annotations

import os

import pytest

from gateway.codecs import CodecError, decode_all, decoder_for, encoder_for
from tests.factories import compress, decompress

DATA = os.urandom(4000).hex().encode() * 5
ENCODINGS = ["gzip", "deflate", "br", "zstd"]


@pytest.mark.parametrize("encoding", [*ENCODINGS, "identity"])
@pytest.mark.parametrize("piece", [1, 7, 4096])
def test_when_a_body_arrives_in_pieces_then_it_decodes_to_the_same_bytes(
    encoding: str, piece: int
) -> None:
    body = compress(DATA, encoding)
    decoder = decoder_for(encoding, 1 << 20)
    out = b"".join(decoder.feed(body[i : i + piece]) for i in range(0, len(body), piece))
    assert out + decoder.close() == DATA


def test_when_deflate_comes_raw_without_its_zlib_header_then_it_still_decodes() -> None:
    raw_deflate = compress(DATA, "deflate")[2:-4]
    assert decode_all(raw_deflate, "deflate", 1 << 20) == DATA


def test_when_gzip_has_two_members_then_both_are_read() -> None:
    body = compress(DATA[:100], "gzip") + compress(DATA[100:], "gzip")
    assert decode_all(body, "gzip", 1 << 20) == DATA


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_when_a_small_body_expands_past_the_limit_then_decoding_stops(encoding: str) -> None:
    bomb = compress(b"\0" * (64 << 20), encoding)
    assert len(bomb) < 1 << 20
    with pytest.raises(CodecError, match="limit"):
        decoder_for(encoding, 4 << 20).feed(bomb)


def test_when_plain_bytes_stream_in_chunks_larger_than_the_limit_then_they_pass_whole() -> None:
    # The limit per piece is against expansion; a plain chunk is as large as it was read.
    assert decoder_for("identity", 1000).feed(DATA[:5000]) == DATA[:5000]


def test_when_a_plain_buffered_body_is_over_the_limit_then_it_is_refused() -> None:
    with pytest.raises(CodecError, match="limit"):
        decode_all(DATA[:5000], "identity", 1000)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_when_a_compressed_stream_is_cut_short_then_closing_it_fails(encoding: str) -> None:
    body = compress(DATA, encoding)
    decoder = decoder_for(encoding, 1 << 20)
    decoder.feed(body[: len(body) // 2])
    with pytest.raises(CodecError):
        decoder.close()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", b"\x1f\x8bnot gzip at all"), ("br", b"\xffnot brotli"), ("zstd", b"not zstd")],
    ids=["gzip", "br", "zstd"],
)
def test_when_the_bytes_are_not_what_the_encoding_says_then_decoding_fails(
    encoding: str, body: bytes
) -> None:
    with pytest.raises(CodecError):
        decode_all(body, encoding, 1 << 20)


@pytest.mark.parametrize("encoding", ["compress", "gzip, br", "x-unknown"])
def test_when_the_encoding_is_unknown_or_stacked_then_it_is_refused(encoding: str) -> None:
    with pytest.raises(CodecError, match="unsupported"):
        decoder_for(encoding, 1 << 20)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_when_a_stream_is_encoded_piece_by_piece_then_each_piece_is_readable_at_once(
    encoding: str,
) -> None:
    encoder = encoder_for(encoding)
    first = encoder.feed(DATA[:1000])
    if encoding != "br":  # brotli frames need the end before the standard decoder accepts them
        assert decompress(first, encoding) == DATA[:1000]
    whole = first + encoder.feed(DATA[1000:]) + encoder.finish()
    assert decompress(whole, encoding) == DATA
