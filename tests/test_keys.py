"""Keys: created once with owner-only permissions, derived per purpose and context, versioned."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.keys import KeyRing, KeyVault, SubjectHasher, load_or_create_secret


def test_a_secret_is_created_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "a.key"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_truncated_key_file_is_an_error_not_a_weaker_key(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    path.write_bytes(b"short")
    with pytest.raises(ValueError):
        load_or_create_secret(path)


def test_derived_keys_differ_by_purpose_and_context_and_survive_a_restart(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    a = ring.derive("pseudonym", "民政局", "population")
    assert a != ring.derive("pseudonym", "统计局", "population")
    assert a != ring.derive("watermark", "民政局", "population")
    assert a != ring.derive("pseudonym", "民政局population")  # context parts cannot run together
    assert KeyRing(tmp_path).derive("pseudonym", "民政局", "population") == a
    assert ring.current_version == 1
    with pytest.raises(KeyError):
        ring.derive("pseudonym", version=2)


def test_subject_hashes_are_keyed_and_ignore_case_and_spaces() -> None:
    one, other = SubjectHasher(b"a" * 32), SubjectHasher(b"b" * 32)
    assert one("11010519491231002x ") == one("11010519491231002X")
    assert one("11010519491231002X") != other("11010519491231002X")


def test_master_keys_are_sealed_at_rest_and_readable_by_their_owner_only(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    sealed = tmp_path / "master-v1.sealed"
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    document = sealed.read_bytes()
    assert ring._masters[1] not in document and ring._masters[1].hex().encode() not in document
    assert not list(tmp_path.glob("master-v*.key"))


def test_a_plain_master_key_from_an_earlier_release_is_sealed_and_keeps_its_pseudonyms(
    tmp_path: Path,
) -> None:
    (tmp_path / "master-v1.key").write_bytes(b"k" * 32)
    ring = KeyRing(tmp_path)
    assert ring._masters[1] == b"k" * 32
    assert not (tmp_path / "master-v1.key").exists() and (tmp_path / "master-v1.sealed").exists()
    assert KeyRing(tmp_path).derive("pseudonym", "a") == ring.derive("pseudonym", "a")


def test_when_the_passphrase_is_wrong_then_start_up_fails_saying_so(tmp_path: Path) -> None:
    KeyRing.from_settings(tmp_path, "correct horse", None)
    with pytest.raises(ConfigError, match="wrong key-encryption key"):
        KeyRing.from_settings(tmp_path, "battery staple", None)
    with pytest.raises(ConfigError, match="wrong key-encryption key"):
        KeyRing(tmp_path)  # the generated key-encryption key does not open them either


def test_rotation_adds_a_version_and_keeps_every_older_one_usable(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    before = ring.derive("watermark-code")
    other = KeyRing(tmp_path)  # another process, e.g. the running gateway
    assert ring.rotate() == 2 and ring.current_version == 2
    assert ring.derive("watermark-code", version=1) == before
    assert ring.derive("watermark-code") != before
    other._checked = 0.0  # its next look, a second later
    other.maybe_reload()
    assert other.versions == (1, 2) and other.derive("watermark-code", version=2) == ring.derive(
        "watermark-code"
    )


def test_rewrapping_moves_every_key_to_a_new_passphrase(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    ring.rotate()
    secret = tmp_path / "passphrase"
    secret.write_text("a long new passphrase\n", encoding="utf-8")
    new = KeyVault.open(tmp_path, passphrase_file=secret)
    assert sorted(ring.vault.rewrap(new)) == ["master-v1", "master-v2"]
    reopened = KeyRing.from_settings(tmp_path, None, secret)
    assert reopened.versions == (1, 2)
    assert reopened.derive("pseudonym", "x", version=1) == ring.derive("pseudonym", "x", version=1)
    with pytest.raises(ConfigError):
        KeyRing(tmp_path)
