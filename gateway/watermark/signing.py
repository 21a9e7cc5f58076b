"""Response signatures: Ed25519 over the delivered body and the headers that matter (RFC 9421).

The signature covers `@status`, `content-type`, `x-request-id`, `x-shareguard-provenance` (the
first watermark layer: request, recipient, watermark id), `content-digest` (RFC 9530: the body
as sent, after any content-coding) and `x-shareguard-body-digest` (the same for the body before
content-coding, which is what a client that decompressed it holds). `http-message-signatures`
checks signatures; signing builds the same signature base directly (it is on every response's
path, and the library takes most of a millisecond per response).

Signing keys are derived from the master key ring (label "response-signing", one per master
key version), so they are sealed at rest with it and rotate with it, and they are not the audit
journal's key. Their public halves are published in the state folder
(`response-signing-keys.json`, a JWK set; `response-signing.pub`, the current key in PEM) and
at `GET /api/public/response-signing-keys`. A streamed export's body is not known when its
headers leave, so its signature is detached: the same structure, over the digests computed as
it streamed, kept in the registry and fetched by request id.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote

import http_sf
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException, InvalidSignature

from gateway.keys import KeyRing

__all__ = [
    "COVERED",
    "KEYS_FILE",
    "PUBLIC_PEM_FILE",
    "ResponseSigner",
    "ResponseVerifier",
    "VerifyReport",
    "digest_field",
    "parse_provenance",
    "provenance",
]

LABEL = "shareguard"
TAG = "shareguard-response"
PROVENANCE = "X-ShareGuard-Provenance"
BODY_DIGEST = "X-ShareGuard-Body-Digest"
COVERED = (
    "@status",
    "content-type",
    "x-request-id",
    "x-shareguard-provenance",
    "x-shareguard-body-digest",
    "content-digest",
)
KEYS_FILE = "response-signing-keys.json"
PUBLIC_PEM_FILE = "response-signing.pub"


def signature_params(key_id: str, created: datetime) -> str:
    """The `@signature-params` value (RFC 9421 §2.3) for ShareGuard's fixed set of components."""
    components = " ".join(f'"{c}"' for c in COVERED)
    return f'({components});created={int(created.timestamp())};keyid="{key_id}";alg="ed25519";tag="{TAG}"'


def signature_base(status: int, fields: Mapping[str, str], params: str) -> bytes:
    """The signature base (RFC 9421 §2.5) over the covered components, built directly.

    Signing is on every response's path, and the general library takes most of a millisecond
    to build this; verification (recipients, `shareguard verify`) still goes through
    `http-message-signatures`, and a test checks that both give the same base.
    """
    lines = [f'"@status": {status}']
    for name in COVERED[1:]:
        lines.append(f'"{name}": {fields[name].strip()}')
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode("ascii")


def digest_field(digest: bytes) -> str:
    """A SHA-256 digest as an RFC 9530 dictionary: `sha-256=:<base64>:`."""
    return f"sha-256=:{base64.b64encode(digest).decode()}:"


def provenance(
    request_id: str,
    watermark: str,
    recipient: str,
    dataset: str,
    purpose: str | None,
    issued: datetime,
) -> str:
    """The provenance header: a structured-field dictionary (non-ASCII names percent-encoded)."""
    members = {
        "request": request_id,
        "watermark": watermark,
        "recipient": quote(recipient, safe=""),
        "dataset": dataset,
        "purpose": purpose or "",
        "issued": int(issued.timestamp()),
    }
    return http_sf.ser(cast(Any, members))


def _dictionary(value: str) -> dict[str, Any]:
    """A structured-field dictionary's members, without their parameters."""
    parsed = cast(dict[str, Any], http_sf.parse(value.encode("ascii"), tltype="dictionary"))
    return {k: member[0] for k, member in parsed.items()}


def parse_provenance(value: str) -> dict[str, Any]:
    out = _dictionary(value)
    if isinstance(out.get("recipient"), str):
        out["recipient"] = unquote(out["recipient"])
    return out


class _Message:
    """What http-message-signatures reads of a response: a status and its header fields."""

    def __init__(self, status: int, headers: Mapping[str, str]) -> None:
        self.status_code = status
        self.headers = dict(headers)


class _Keys(HTTPSignatureKeyResolver):
    def __init__(
        self,
        private: Mapping[str, Ed25519PrivateKey] | None = None,
        public: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self._private = private or {}
        self._public = public or {}

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self._private[key_id]

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._public.get(key_id)


def key_id_of(version: int, public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"shareguard-v{version}-{hashlib.sha256(raw).hexdigest()[:12]}"


class ResponseSigner:
    """Signs responses with the current version's key; knows every version's public key."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._keys: dict[int, tuple[str, Ed25519PrivateKey]] = {}

    def key(self, version: int) -> tuple[str, Ed25519PrivateKey]:
        found = self._keys.get(version)
        if found is None:
            private = Ed25519PrivateKey.from_private_bytes(
                self.keyring.derive("response-signing", version=version)
            )
            found = self._keys[version] = (key_id_of(version, private.public_key()), private)
        return found

    def sign(
        self,
        status: int,
        headers: Mapping[str, str],
        *,
        body: bytes | None = None,
        content_digest: str | None = None,
        created: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to add: Content-Digest (unless given), Signature-Input and Signature.

        `headers` holds the covered fields; give the body as sent, or its `content_digest`
        when the body is not at hand (a streamed export).
        """
        self.keyring.maybe_reload()
        key_id, private = self.key(self.keyring.current_version)
        fields = {name.lower(): value for name, value in headers.items()}
        if content_digest is None:
            content_digest = digest_field(hashlib.sha256(body or b"").digest())
        fields["content-digest"] = content_digest
        params = signature_params(key_id, created or datetime.now(UTC))
        signature = base64.b64encode(private.sign(signature_base(status, fields, params))).decode()
        return {
            "Content-Digest": content_digest,
            "Signature-Input": f"{LABEL}={params}",
            "Signature": f"{LABEL}=:{signature}:",
        }

    def public_keys(self) -> dict[str, Any]:
        """Every version's public key as a JWK set (RFC 8037 OKP keys)."""
        current = self.keyring.current_version
        keys = []
        for version in self.keyring.versions:
            key_id, private = self.key(version)
            raw = private.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            keys.append(
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),
                    "kid": key_id,
                    "alg": "ed25519",
                    "use": "sig",
                    "version": version,
                    "created": self.keyring.created(version),
                    "current": version == current,
                }
            )
        return {"keys": keys}

    def publish(self, home: Path) -> Path:
        """Write the public keys where recipients and staff look for them; returns the JWK set."""
        document = self.public_keys()
        _write(home / KEYS_FILE, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        _, private = self.key(self.keyring.current_version)
        pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(home / PUBLIC_PEM_FILE, pem)
        return home / KEYS_FILE


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    key_id: str | None = None
    created: int | None = None
    body: str | None = None  # "as sent" | "decoded": which digest the body matched
    provenance: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "verified": self.ok,
            "problems": self.problems,
            "key_id": self.key_id,
            "created": self.created,
            "body": self.body,
            "provenance": self.provenance,
        }


class ResponseVerifier:
    """Checks a response (status, headers, body) against the platform's published public keys."""

    def __init__(self, public: Mapping[str, Ed25519PublicKey]) -> None:
        self.public = dict(public)

    @classmethod
    def from_jwks(cls, document: Mapping[str, Any]) -> ResponseVerifier:
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in document.get("keys", []):
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                continue
            raw = base64.urlsafe_b64decode(str(jwk["x"]) + "=" * (-len(str(jwk["x"])) % 4))
            keys[str(jwk["kid"])] = Ed25519PublicKey.from_public_bytes(raw)
        return cls(keys)

    @classmethod
    def from_file(cls, path: Path) -> ResponseVerifier:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"不是 Ed25519 公钥 (not an Ed25519 public key): {path}")
            # A bare PEM carries no key id: accept it under whatever id the signature names.
            return _AnyKeyVerifier(key)
        return cls.from_jwks(orjson.loads(data))

    def _resolver(self) -> _Keys:
        return _Keys(public=self.public)

    def verify(self, status: int, headers: Mapping[str, str], body: bytes) -> VerifyReport:
        report = VerifyReport(ok=False)
        message = _Message(status, headers)
        verifier = HTTPMessageVerifier(
            signature_algorithm=algorithms.ED25519, key_resolver=self._resolver()
        )
        try:
            results = verifier.verify(
                message, max_age=None, expect_tag=TAG, require_components=COVERED
            )
        except (InvalidSignature, HTTPMessageSignaturesException) as exc:
            report.problems.append(f"签名无效 (signature invalid): {exc}")
            return report
        result = results[0]
        report.key_id = str(result.parameters.get("keyid"))
        created = result.parameters.get("created")
        report.created = int(created) if isinstance(created, int) else None
        covered = result.covered_components
        try:
            report.provenance = parse_provenance(covered['"x-shareguard-provenance"'])
        except (KeyError, ValueError) as exc:
            report.problems.append(f"来源标头无法解析 (provenance header unreadable): {exc}")
        for name, what in (
            ('"content-digest"', "as sent"),
            ('"x-shareguard-body-digest"', "decoded"),
        ):
            try:
                expected = _dictionary(covered[name])
            except (KeyError, ValueError):
                continue
            if expected.get("sha-256") == hashlib.sha256(body).digest():
                report.body = what
                break
        if report.body is None:
            report.problems.append(
                "内容与签名的摘要不符：内容被改动，或不是这次响应的内容"
                " (the body matches neither signed digest: it was changed, or is another body)"
            )
        report.ok = not report.problems
        return report


class _AnyKeyVerifier(ResponseVerifier):
    def __init__(self, key: Ed25519PublicKey) -> None:
        super().__init__({})
        self.key = key

    def _resolver(self) -> _Keys:
        key = self.key

        class _One(_Keys):
            def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
                return key

        return _One()
