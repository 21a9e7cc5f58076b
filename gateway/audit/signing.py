"""Ed25519 statements over the journal: the gateway signs its head, auditors check with the public key.

A statement says "journal J had record S with chain hash H at time T" (or, for an archived
segment, "records F..S, ending in H"). The private key stays in the state folder (mode 0600);
the public key is written beside it so it can be handed to auditors and pinned with
`shareguard audit verify --public-key FILE`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.keys import load_or_create_secret

KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
_DOMAIN = b"shareguard-audit-statement/1"

# What a statement vouches for: the journal's head where its writer stopped ("seal", closed) or
# while it runs ("open-seal": its newest commits may follow unsigned), a lasting checkpoint
# (kept, and mirrored to the checkpoint log), or an archived segment.
KINDS = ("seal", "open-seal", "checkpoint", "archive")


@dataclass(frozen=True, slots=True)
class Statement:
    kind: str
    journal_id: str
    seq: int
    hash: bytes
    signed_at: str
    key_id: str
    signature: bytes = b""
    first_seq: int | None = None  # archive statements: the segment's first record

    def message(self) -> bytes:
        if self.kind not in KINDS:
            raise ValueError(f"unknown statement kind {self.kind!r}")
        parts = [
            _DOMAIN,
            self.kind.encode(),
            self.journal_id.encode(),
            str(self.seq).encode(),
            self.hash.hex().encode(),
            self.signed_at.encode(),
            self.key_id.encode(),
            str(self.first_seq or 0).encode(),
        ]
        return b"\x00".join(parts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "journal_id": self.journal_id,
            "seq": self.seq,
            "hash": self.hash.hex(),
            "signed_at": self.signed_at,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }
        if self.first_seq is not None:
            out["first_seq"] = self.first_seq
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Statement:
        first = data.get("first_seq")
        return cls(
            kind=str(data["kind"]),
            journal_id=str(data["journal_id"]),
            seq=int(data["seq"]),
            hash=bytes.fromhex(str(data["hash"])),
            signed_at=str(data["signed_at"]),
            key_id=str(data["key_id"]),
            signature=base64.b64decode(str(data["signature"]), validate=True),
            first_seq=int(first) if first is not None else None,
        )


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class StatementVerifier:
    """Checks statements with a public key; knows nothing secret."""

    def __init__(self, public: Ed25519PublicKey) -> None:
        self.public = public
        self.key_id = key_id_of(public)

    def check(self, statement: Statement) -> str | None:
        """None if the statement is genuine, else what is wrong with it."""
        if statement.key_id != self.key_id:
            return f"由未知密钥签名 (signed by unknown key {statement.key_id})"
        try:
            self.public.verify(statement.signature, statement.message())
        except InvalidSignature:
            return "签名无效 (signature invalid)"
        except ValueError as exc:
            return f"声明格式错误 (malformed statement): {exc}"
        return None

    @classmethod
    def from_file(cls, path: Path) -> StatementVerifier:
        """A PEM public key (as written to the state folder), or its 64 hex characters."""
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"不是 Ed25519 公钥 (not an Ed25519 public key): {path}")
            return cls(key)
        return cls(Ed25519PublicKey.from_public_bytes(bytes.fromhex(data.decode().strip())))

    @classmethod
    def from_home(cls, keys_dir: Path) -> StatementVerifier:
        public_path = keys_dir / PUBLIC_KEY_FILE
        if public_path.exists():
            return cls.from_file(public_path)
        if (keys_dir / KEY_FILE).exists():
            return StatementSigner.from_home(keys_dir).verifier
        raise FileNotFoundError(f"找不到审计签名公钥 (no audit signing public key): {public_path}")


class StatementSigner:
    """Signs statements; built from the private key in the state folder."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.verifier = StatementVerifier(private.public_key())
        self.key_id = self.verifier.key_id

    def sign(
        self,
        kind: str,
        journal_id: str,
        seq: int,
        hash_: bytes,
        signed_at: str,
        first_seq: int | None = None,
    ) -> Statement:
        unsigned = Statement(kind, journal_id, seq, hash_, signed_at, self.key_id, b"", first_seq)
        signature = self._private.sign(unsigned.message())
        return Statement(kind, journal_id, seq, hash_, signed_at, self.key_id, signature, first_seq)

    @classmethod
    def from_home(cls, keys_dir: Path) -> StatementSigner:
        signer = cls(
            Ed25519PrivateKey.from_private_bytes(load_or_create_secret(keys_dir / KEY_FILE))
        )
        public_path = keys_dir / PUBLIC_KEY_FILE
        if not public_path.exists():
            _write_public(public_path, signer.verifier.public)
        return signer

    @classmethod
    def generate(cls) -> StatementSigner:
        return cls(Ed25519PrivateKey.generate())


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_public(path: Path, public: Ed25519PublicKey) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, public_pem(public))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
