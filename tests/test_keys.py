"""Keys: created once with owner-only permissions, derived per purpose and context, versioned."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.keys import KeyRing, SubjectHasher, load_or_create_secret


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
