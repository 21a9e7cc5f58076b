"""Audit fixtures: a signing key per test (Ed25519 keys are cheap to make)."""

from __future__ import annotations

import pytest

from gateway.audit.signing import StatementSigner


@pytest.fixture
def signer() -> StatementSigner:
    return StatementSigner.generate()
