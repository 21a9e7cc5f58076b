"""Shipping and search against the local Elasticsearch test server (the contract checks), and the
index template kept in step with the events."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.audit.elastic import mappings
from tests.audit.es_checks import CHECKS, EsTarget, sample_events, unique_stream
from tests.audit.fake_elasticsearch import FakeElasticsearch


@pytest.fixture
def fake_es() -> Iterator[FakeElasticsearch]:
    server = FakeElasticsearch().start()
    yield server
    server.stop()


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__.removeprefix("check_") for c in CHECKS])
def test_against_the_local_test_server(
    fake_es: FakeElasticsearch, tmp_path: Path, check: Callable[[EsTarget, Path], None]
) -> None:
    check(EsTarget(fake_es.url, unique_stream()), tmp_path)


def _leaves(doc: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(doc, dict) and doc:
        for key, value in doc.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def _mapped(path: str, properties: dict[str, Any]) -> bool:
    parts = path.split(".")
    for i, part in enumerate(parts):
        spec = properties.get(part)
        if spec is None:
            return False
        if spec.get("type") == "flattened" or i == len(parts) - 1:
            return True
        properties = spec.get("properties", {})
    return False


def test_every_field_an_event_carries_is_mapped_explicitly() -> None:
    """dynamic: false keeps unmapped fields out of search silently; a new field must be mapped."""
    properties = mappings()["properties"]
    unmapped = sorted(
        {
            path
            for event in sample_events()
            for path in _leaves(orjson.loads(orjson.dumps(event.to_document())))
            if not _mapped(path, properties)
        }
    )
    assert unmapped == []
