"""Secret keys kept in the state folder: created on first use, readable by the owner only.

`KeyRing` holds versioned master keys, sealed at rest by a `KeyVault` (AES-256-GCM under a
key-encryption key), and derives every working key from them with HKDF, so a key is never
reused across purposes (pseudonyms, watermarks, response signatures) or recipients, and a
rotated master key leaves older versions available for tracing and verification.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gateway.errors import ConfigError

log = logging.getLogger(__name__)


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


SEALED_FORMAT = "shareguard-sealed-key/1"
KEK_FILE = "kek.key"
KEK_SALT_FILE = "kek.salt"
# scrypt at n=2**15, r=8: about 0.1 s and 32 MiB once per process, which is what a passphrase
# needs to resist guessing; a generated key-encryption key needs no stretching.
_SCRYPT_N = 2**15


@functools.lru_cache(maxsize=4)
def _stretch(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(passphrase.encode("utf-8"))


class KeyVault:
    """Secrets sealed at rest: AES-256-GCM under a key-encryption key (KEK), one file each.

    The KEK comes from a passphrase (`SHAREGUARD_KEY_PASSPHRASE` or the file named by
    `SHAREGUARD_KEY_PASSPHRASE_FILE`, stretched with scrypt and a salt kept in the keys folder),
    or, when neither is set, from a random key generated in the keys folder itself. That last
    form keeps `make demo` and the tests free of manual steps, but whoever copies the folder
    copies the means to open it: a warning says so at start-up.
    """

    SUFFIX = ".sealed"

    def __init__(self, keys_dir: Path, kek: bytes, source: str) -> None:
        self.keys_dir = keys_dir
        self.source = source  # "passphrase" or "file": recorded in every sealed file
        self._aead = AESGCM(kek)

    @classmethod
    def open(
        cls,
        keys_dir: Path,
        passphrase: str | None = None,
        passphrase_file: Path | None = None,
    ) -> KeyVault:
        if passphrase_file is not None:
            try:
                passphrase = passphrase_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"无法读取密钥口令文件 (cannot read the key passphrase file): {exc}"
                ) from None
            if not passphrase:
                raise ConfigError(
                    f"密钥口令文件为空 (the key passphrase file is empty): {passphrase_file}"
                )
        if passphrase:
            salt = load_or_create_secret(keys_dir / KEK_SALT_FILE, size=16)
            return cls(keys_dir, _stretch(passphrase, salt), "passphrase")
        _warn_local_kek(keys_dir)
        return cls(keys_dir, load_or_create_secret(keys_dir / KEK_FILE), "file")

    def path(self, name: str) -> Path:
        return self.keys_dir / f"{name}{self.SUFFIX}"

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def _document(self, name: str, secret: bytes) -> bytes:
        nonce = os.urandom(12)
        return orjson.dumps(
            {
                "format": SEALED_FORMAT,
                "name": name,
                "alg": "AES-256-GCM",
                "kek": self.source,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "nonce": base64.b64encode(nonce).decode(),
                "sealed": base64.b64encode(self._aead.encrypt(nonce, secret, _aad(name))).decode(),
            },
            option=orjson.OPT_INDENT_2,
        )

    def _staged(self, name: str, data: bytes) -> Path:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    def seal(self, name: str, secret: bytes) -> bool:
        """Write `secret` sealed as `name`; False if another process sealed that name first."""
        tmp = self._staged(name, self._document(name, secret))
        try:
            os.link(tmp, self.path(name))  # never replaces: a key, once written, stays
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def unseal(self, name: str) -> bytes:
        path = self.path(name)
        try:
            document = orjson.loads(path.read_bytes())
            if document.get("format") != SEALED_FORMAT or document.get("name") != name:
                raise ValueError("not a sealed key of this name")
            nonce = base64.b64decode(document["nonce"], validate=True)
            sealed = base64.b64decode(document["sealed"], validate=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"密钥文件损坏 (sealed key file unreadable): {path}: {exc}") from None
        try:
            return self._aead.decrypt(nonce, sealed, _aad(name))
        except InvalidTag:
            raise ConfigError(
                f"无法解开密钥 {path.name}：密钥加密密钥不对（口令错误或 {KEK_FILE} 被替换）"
                f" (cannot unseal {path.name}: wrong key-encryption key; it was sealed with"
                f" the '{document.get('kek')}' key-encryption key)"
            ) from None

    def names(self) -> list[str]:
        return sorted(
            p.name.removesuffix(self.SUFFIX) for p in self.keys_dir.glob(f"*{self.SUFFIX}")
        )

    def rewrap(self, new: KeyVault) -> list[str]:
        """Seal every secret again under another KEK (a passphrase change); returns their names.

        All are opened first, so a wrong current KEK changes nothing; each file is then
        replaced whole, so a crash leaves every file readable under one KEK or the other.
        """
        opened = {name: self.unseal(name) for name in self.names()}
        for name, secret in opened.items():
            os.replace(new._staged(name, new._document(name, secret)), new.path(name))
        return list(opened)


def _aad(name: str) -> bytes:
    # The file's name is authenticated: a sealed key copied over another version's file is
    # refused rather than silently used as that version.
    return f"{SEALED_FORMAT}\x00{name}".encode()


_warned: set[Path] = set()


def _warn_local_kek(keys_dir: Path) -> None:
    if keys_dir in _warned:
        return
    _warned.add(keys_dir)
    log.warning(
        "密钥加密密钥保存在密钥目录 %s 中；生产环境请设置 SHAREGUARD_KEY_PASSPHRASE_FILE"
        " (the key-encryption key is kept in the keys folder itself: anyone who copies the"
        " folder can open the keys; set SHAREGUARD_KEY_PASSPHRASE_FILE in production)",
        keys_dir / KEK_FILE,
    )


class KeyRing:
    """Versioned master keys; working keys are derived per purpose and context with HKDF-SHA256.

    Master keys are sealed by the vault (`master-v<N>.sealed`); a plain `master-v<N>.key` left
    by an earlier release is sealed on first load and removed. `rotate` adds a version; every
    version stays loaded, so pseudonyms, watermarks and signatures made under old keys can
    still be recomputed and checked. A running gateway sees a rotation within a second.
    """

    PREFIX = "master-v"
    RELOAD_SECONDS = 1.0

    def __init__(self, keys_dir: Path, vault: KeyVault | None = None) -> None:
        self.keys_dir = keys_dir
        self.vault = vault or KeyVault.open(keys_dir)
        self._masters: dict[int, bytes] = {}
        self._cache: dict[tuple[int, str, tuple[str, ...]], bytes] = {}
        self._lock = threading.Lock()
        self._seen_mtime = -1
        self._checked = 0.0
        self._load()
        if not self._masters:
            self.vault.seal(self._name(1), secrets.token_bytes(32))
            self._load()

    @classmethod
    def from_settings(
        cls, keys_dir: Path, passphrase: str | None, passphrase_file: Path | None
    ) -> KeyRing:
        return cls(keys_dir, KeyVault.open(keys_dir, passphrase, passphrase_file))

    def _name(self, version: int) -> str:
        return f"{self.PREFIX}{version}"

    def _load(self) -> None:
        if not self.keys_dir.exists():
            return
        self._seen_mtime = self.keys_dir.stat().st_mtime_ns
        for path in sorted(self.keys_dir.glob(f"{self.PREFIX}*.key")):
            # An earlier release's plain master key: seal it, then remove the plain copy.
            version = int(path.stem.removeprefix(self.PREFIX))
            if not self.vault.exists(self._name(version)):
                self.vault.seal(self._name(version), load_or_create_secret(path))
            self.vault.unseal(self._name(version))  # sealed copy readable: only then remove
            path.unlink()
        for path in self.keys_dir.glob(f"{self.PREFIX}*{KeyVault.SUFFIX}"):
            stem = path.name.removesuffix(KeyVault.SUFFIX).removeprefix(self.PREFIX)
            if not stem.isdigit() or int(stem) in self._masters:
                continue
            secret = self.vault.unseal(path.name.removesuffix(KeyVault.SUFFIX))
            if len(secret) != 32:
                raise ConfigError(f"主密钥长度不对 (master key has the wrong length): {path}")
            self._masters[int(stem)] = secret

    def maybe_reload(self) -> None:
        """Pick up a version another process added (`shareguard keys rotate`); cheap to call often."""
        now = time.monotonic()
        if now - self._checked < self.RELOAD_SECONDS:
            return
        self._checked = now
        try:
            mtime = self.keys_dir.stat().st_mtime_ns
        except OSError:
            return
        if mtime != self._seen_mtime:
            with self._lock:
                self._load()

    def rotate(self) -> int:
        """Add a new master key version and make it current; older versions stay usable."""
        with self._lock:
            while True:
                version = max(self._masters, default=0) + 1
                self._load()
                if version in self._masters:
                    continue
                if self.vault.seal(self._name(version), secrets.token_bytes(32)):
                    self._load()
                    return version

    def created(self, version: int) -> str | None:
        try:
            document = orjson.loads(self.vault.path(self._name(version)).read_bytes())
        except (OSError, ValueError):
            return None
        value = document.get("created")
        return str(value) if value else None

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
