"""Secret keys kept in the state folder: created on first use, readable by the owner only."""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from pathlib import Path


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
