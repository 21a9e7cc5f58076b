"""Response signatures: any change to the body or a signed header fails; rotation keeps old ones valid."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from gateway.keys import KeyRing
from gateway.watermark.signing import (
    KEYS_FILE,
    ResponseSigner,
    ResponseVerifier,
    digest_field,
    provenance,
)

BODY = orjson.dumps(
    {"records": [{"record_id": "P00000001", "address": "北京市朝阳区望京西路１号"}]}
)


def signed(signer: ResponseSigner, body: bytes = BODY) -> tuple[int, dict[str, str]]:
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Request-Id": "01TESTREQUEST0000000000000",
        "X-ShareGuard-Provenance": provenance(
            "01TESTREQUEST0000000000000",
            "00ff00ff00ff00ff",
            "民政局",
            "population",
            "social_assistance_review",
            datetime(2026, 11, 20, tzinfo=UTC),
        ),
        "X-ShareGuard-Body-Digest": digest_field(hashlib.sha256(body).digest()),
    }
    return 200, {**headers, **signer.sign(200, headers, body=body)}


@pytest.fixture
def signer(tmp_path: Path) -> ResponseSigner:
    return ResponseSigner(KeyRing(tmp_path / "keys"))


def test_a_signed_response_verifies_with_the_published_keys(
    signer: ResponseSigner, tmp_path: Path
) -> None:
    status, headers = signed(signer)
    published = signer.publish(tmp_path)
    assert published.name == KEYS_FILE
    report = ResponseVerifier.from_file(published).verify(status, headers, BODY)
    assert report.ok and report.body == "as sent"
    assert report.provenance is not None and report.provenance["recipient"] == "民政局"
    # A bare PEM public key (the state folder's response-signing.pub) works too.
    assert (
        ResponseVerifier.from_file(tmp_path / "response-signing.pub")
        .verify(status, headers, BODY)
        .ok
    )


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Content-Type", "text/csv"),
        ("X-Request-Id", "01OTHERREQUEST000000000000"),
        (
            "X-ShareGuard-Provenance",
            'request="01TESTREQUEST0000000000000", watermark="0000000000000001"',
        ),
        ("X-ShareGuard-Body-Digest", digest_field(hashlib.sha256(b"{}").digest())),
        ("Content-Digest", digest_field(hashlib.sha256(b"{}").digest())),
    ],
    ids=[
        "another content type",
        "another request id",
        "another recipient's provenance",
        "another body digest",
        "another content digest",
    ],
)
def test_when_a_signed_header_is_changed_then_verification_fails(
    signer: ResponseSigner, header: str, value: str
) -> None:
    status, headers = signed(signer)
    headers[header] = value
    verifier = ResponseVerifier.from_jwks(signer.public_keys())
    assert not verifier.verify(status, headers, BODY).ok


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.replace(b"P00000001", b"P00000002"),
        lambda b: b + b" ",
        lambda b: b.replace(
            "１".encode(), b"1"
        ),  # the watermark's full-width digit normalised away
        lambda b: b[:-1],
    ],
    ids=["another record key", "a space appended", "a watermark digit normalised", "truncated"],
)
def test_when_the_body_is_changed_then_verification_fails(
    signer: ResponseSigner, change: object
) -> None:
    status, headers = signed(signer)
    assert callable(change)
    report = ResponseVerifier.from_jwks(signer.public_keys()).verify(status, headers, change(BODY))
    assert not report.ok and report.problems


def test_when_the_status_is_changed_then_verification_fails(signer: ResponseSigner) -> None:
    _, headers = signed(signer)
    assert not ResponseVerifier.from_jwks(signer.public_keys()).verify(203, headers, BODY).ok


def test_after_rotation_old_responses_still_verify_and_new_ones_use_the_new_key(
    signer: ResponseSigner,
) -> None:
    old_status, old_headers = signed(signer)
    version = signer.keyring.rotate()
    new_status, new_headers = signed(signer)
    assert "shareguard-v2-" in new_headers["Signature-Input"] and version == 2
    verifier = ResponseVerifier.from_jwks(signer.public_keys())
    assert verifier.verify(old_status, old_headers, BODY).ok
    assert verifier.verify(new_status, new_headers, BODY).ok
    # Only the new key: the old response cannot be vouched for by a key that did not sign it.
    only_new = {"keys": [k for k in signer.public_keys()["keys"] if k["current"]]}
    assert not ResponseVerifier.from_jwks(only_new).verify(old_status, old_headers, BODY).ok


def test_a_detached_signature_vouches_for_a_body_it_never_saw(signer: ResponseSigner) -> None:
    export = b'{"dataset":"population","records":[]}'
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Request-Id": "01EXPORT000000000000000000",
        "X-ShareGuard-Provenance": provenance(
            "01EXPORT000000000000000000",
            "0000000000000002",
            "统计局",
            "population",
            "statistics",
            datetime(2026, 11, 20, tzinfo=UTC),
        ),
        "X-ShareGuard-Body-Digest": digest_field(hashlib.sha256(export).digest()),
    }
    added = signer.sign(200, headers, content_digest=digest_field(hashlib.sha256(export).digest()))
    verifier = ResponseVerifier.from_jwks(signer.public_keys())
    assert verifier.verify(200, {**headers, **added}, export).ok
    assert not verifier.verify(200, {**headers, **added}, export.replace(b"[]", b"[{}]")).ok


def test_the_fast_signature_base_is_the_one_http_message_signatures_builds(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from http_message_signatures import HTTPMessageSigner, algorithms

    from gateway.keys import KeyRing
    from gateway.watermark.signing import (
        COVERED,
        LABEL,
        TAG,
        ResponseSigner,
        _Message,
        signature_base,
        signature_params,
    )

    signer = ResponseSigner(KeyRing(tmp_path))
    key_id, _ = signer.key(signer.keyring.current_version)
    created = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Request-Id": "01M7YQ2RYA3TK30FQ76YC8156P",
        "X-ShareGuard-Provenance": "request=01M7YQ2RYA3TK30FQ76YC8156P, watermark=42, recipient=%E7%BB%9F",
        "X-ShareGuard-Body-Digest": "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
    }
    message = _Message(200, headers)
    prepared = HTTPMessageSigner(signature_algorithm=algorithms.ED25519).prepare(
        message,
        key_id=key_id,
        created=created,
        label=LABEL,
        tag=TAG,
        covered_component_ids=COVERED,
        body=b'{"records":[]}',
    )
    fields = {k.lower(): v for k, v in message.headers.items()}
    params = signature_params(key_id, created)
    assert params == prepared.signature_params
    assert signature_base(200, fields, params) == prepared.signature_base
