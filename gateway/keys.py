"""Secret keys kept in the state folder: created on first use, readable by the owner only.

`KeyRing` holds versioned master keys and derives every working key from them with HKDF, so a
key is never reused across purposes (pseudonyms, watermarks, signatures) or recipients, and a
rotated master key leaves older versions available for tracing and verification.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def load_or_create_secret(path: Path, size: int = 32) -> bytes:
    """Read a secret file, or create it atomically with mode 0600 if it does not exist yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(size))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: then read theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        data = path.read_bytes()
    if len(data) != size:
        raise ValueError(f"密钥文件长度不对 (key file has the wrong length): {path}")
    return data


class SubjectHasher:
    """Keyed hashes of data subjects' identifiers: searchable in the audit log, not reversible.

    The key never rotates: a rotated key would make every earlier event unsearchable by subject.
    """

    def __init__(self, key: bytes) -> None:
        self._base = hashlib.blake2b(key=key, digest_size=16)
        # Records repeat across responses (pages, exports, lookups of the same applicant); a
        # bounded cache spares rehashing them. It holds hashes of identifiers, in this process.
        self._digest = functools.lru_cache(maxsize=1 << 16)(self._compute)

    def _compute(self, identifier: str) -> str:
        h = self._base.copy()
        h.update(identifier.strip().upper().encode("utf-8"))
        return h.hexdigest()

    @classmethod
    def from_home(cls, keys_dir: Path) -> SubjectHasher:
        return cls(load_or_create_secret(keys_dir / "subject-hmac.key"))

    def __call__(self, identifier: str) -> str:
        # Keyed BLAKE2b is a MAC in its own right and several times faster than HMAC-SHA256,
        # which matters at one hash per delivered record.
        return self._digest(identifier)


class KeyRing:
    """Versioned master keys; working keys are derived per purpose and context with HKDF-SHA256."""

    PREFIX = "master-v"

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._masters: dict[int, bytes] = {}
        self._cache: dict[tuple[int, str, tuple[str, ...]], bytes] = {}
        self._load()
        if not self._masters:
            load_or_create_secret(self._path(1))
            self._load()

    def _path(self, version: int) -> Path:
        return self.keys_dir / f"{self.PREFIX}{version}.key"

    def _load(self) -> None:
        if not self.keys_dir.exists():
            return
        for path in self.keys_dir.glob(f"{self.PREFIX}*.key"):
            version = int(path.stem.removeprefix(self.PREFIX))
            self._masters[version] = load_or_create_secret(path)

    @property
    def current_version(self) -> int:
        return max(self._masters)

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._masters))

    def derive(
        self, label: str, *context: str, version: int | None = None, size: int = 32
    ) -> bytes:
        """The working key for `label` (e.g. "pseudonym") and its context (e.g. recipient, dataset)."""
        version = self.current_version if version is None else version
        cache_key = (version, label, context)
        key = self._cache.get(cache_key)
        if key is None:
            if version not in self._masters:
                raise KeyError(f"没有版本为 {version} 的主密钥 (no master key version {version})")
            info = "\x1f".join((label, *context)).encode("utf-8")
            key = HKDF(algorithm=hashes.SHA256(), length=size, salt=None, info=info).derive(
                self._masters[version]
            )
            self._cache[cache_key] = key
        return key
