"""The contract suite: the same shipping and search checks, against a real Elasticsearch cluster.

Runs with `pytest -m elasticsearch` when ELASTICSEARCH_URL is set (ELASTICSEARCH_API_KEY if the
cluster needs one); skips otherwise. Each check uses a data stream of its own and deletes it
afterwards; the lifecycle policy `shareguard-audit` is created or updated on the cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.audit.es_checks import CHECKS, EsTarget, unique_stream

pytestmark = pytest.mark.elasticsearch

URL = os.environ.get("ELASTICSEARCH_URL")


@pytest.mark.skipif(URL is None, reason="ELASTICSEARCH_URL is not set: no real cluster to check")
@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
def test_against_a_real_cluster(tmp_path: Path, check: Callable[[EsTarget, Path], None]) -> None:
    assert URL is not None
    target = EsTarget(URL, unique_stream(), os.environ.get("ELASTICSEARCH_API_KEY"))
    try:
        check(target, tmp_path)
    finally:
        target.cleanup()
