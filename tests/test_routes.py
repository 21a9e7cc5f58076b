"""The route table: canonical reading of paths, and every spelling that tries to get around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.catalog import load_catalog
from gateway.errors import ConfigError, Refusal
from gateway.routes import RouteTable, canonical_segments, load_routes
from gateway.settings import REPO_ROOT

POLICIES = REPO_ROOT / "policies"


@pytest.fixture(scope="module")
def table() -> RouteTable:
    catalog = load_catalog(POLICIES / "catalog.toml")
    return load_routes(POLICIES / "routes.toml", catalog)


@pytest.mark.parametrize(
    ("path", "route", "dataset", "forward"),
    [
        ("/api/v1/catalog", "catalog", None, "/api/v1/catalog"),
        (
            "/api/v1/datasets/population/records?limit=5&offset=10",
            "records.list",
            "population",
            "/api/v1/datasets/population/records?limit=5&offset=10",
        ),
        (
            "/api/v1/datasets/population/records/P00000001",
            "records.read",
            "population",
            "/api/v1/datasets/population/records/P00000001",
        ),
        (
            "/api/v1/datasets/weather/export?format=csv",
            "export",
            "weather",
            "/api/v1/datasets/weather/export?format=csv",
        ),
        ("/healthz", "health", None, "/healthz"),
    ],
    ids=["catalog", "list with paging", "one record", "csv export", "health check"],
)
def test_when_path_is_in_the_table_then_it_is_forwarded_canonically(
    table: RouteTable, path: str, route: str, dataset: str | None, forward: str
) -> None:
    match = table.match("GET", path, {})
    assert match.route.name == route
    assert (match.dataset.id if match.dataset else None) == dataset
    assert match.forward_path == forward


# Every spelling of the refused dataset must be read as classified_cases (and so be refused by
# policy), or be refused outright here: none may reach the platform as something else.
@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/datasets/%63lassified_cases/records",
        "/api/v1/datasets/%63%6C%61%73%73ified_cases/records",
        "//api//v1//datasets//classified_cases//records",
        "/api/v1/./datasets/./classified_cases/records",
        "/api/v1/datasets/weather/../classified_cases/records",
        "/api/v1/datasets/CLASSIFIED_CASES/records",
        "/API/V1/Datasets/Classified_Cases/Records",
        "/api/v1/datasets/classified_cases/records/",
        "/api/v1/datasets/classified_cases/records/X00000001",
        "/api/v1/datasets/classified_cases/export?format=json",
        "/api/v1/datasets/%2e/classified_cases/records",
        "/api/v1/datasets/weather/%2e%2e/classified_cases/records",
    ],
    ids=[
        "percent-encoded letter",
        "several percent-encoded letters",
        "doubled slashes",
        "dot segments",
        "dot-dot segment",
        "upper case",
        "mixed case",
        "trailing slash",
        "one record",
        "export",
        "encoded dot segment",
        "encoded dot-dot segment",
    ],
)
def test_when_the_refused_dataset_is_spelled_otherwise_then_it_is_still_read_as_itself(
    table: RouteTable, path: str
) -> None:
    match = table.match("GET", path, {})
    assert match.dataset is not None and match.dataset.id == "classified_cases"
    assert "/classified_cases/" in match.forward_path


@pytest.mark.parametrize(
    ("method", "path", "headers", "reason"),
    [
        ("GET", "/api/v1/datasets/%2563lassified_cases/records", {}, "path_ambiguous"),
        ("GET", "/api/v1/datasets/classified_cases%2Frecords", {}, "path_ambiguous"),
        ("GET", "/api/v1/datasets/classified_cases%5Crecords", {}, "path_ambiguous"),
        ("GET", "/api/v1/datasets/classified_cases;x=1/records", {}, "path_malformed"),
        ("GET", "/api/v1/datasets/classified%00_cases/records", {}, "path_ambiguous"),
        ("GET", "/api/v1/datasets/%zzclassified/records", {}, "path_malformed"),
        ("GET", "/api/v1/datasets/%ff/records", {}, "path_malformed"),
        ("GET", "/../../api/v1/catalog", {}, "path_traversal"),
        ("GET", "/api/v1/datasets/classified_cases\\records", {}, "path_malformed"),
        ("GET", "/api/v1/datasets/ｃlassified_cases/records", {}, "path_malformed"),
        ("GET", "/api/v1/datasets/nope/records", {}, "unknown_dataset"),
        ("GET", "/api/v1/admin", {}, "route_not_allowed"),
        ("POST", "/api/v1/datasets/weather/records", {}, "method_not_allowed"),
        ("HEAD", "/api/v1/datasets/weather/records", {}, "method_not_allowed"),
        (
            "POST",
            "/api/v1/datasets/classified_cases/records",
            {"x-http-method-override": "GET"},
            "method_override",
        ),
        ("GET", "/api/v1/datasets/weather/records", {"X-HTTP-Method": "DELETE"}, "method_override"),
        ("GET", "/api/v1/datasets/weather/records?limit=5&limit=6", {}, "query_not_allowed"),
        ("GET", "/api/v1/datasets/weather/records?limit=-1", {}, "query_not_allowed"),
        ("GET", "/api/v1/datasets/weather/records?dataset=classified", {}, "query_not_allowed"),
        ("GET", "/api/v1/datasets/weather/export?format=xml", {}, "query_not_allowed"),
        ("GET", "/api/v1/datasets/weather/records/a%20b", {}, "key_malformed"),
        ("GET", "/api/v1/datasets/weather/records/" + "k" * 65, {}, "key_malformed"),
    ],
    ids=[
        "double percent-encoding",
        "encoded slash",
        "encoded backslash",
        "matrix parameter",
        "encoded NUL",
        "invalid escape",
        "escape that is not UTF-8",
        "climbing above the root",
        "raw backslash",
        "full-width letter",
        "unknown dataset",
        "path outside the table",
        "POST",
        "HEAD",
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "repeated query parameter",
        "negative limit",
        "parameter the route does not take",
        "export format not offered",
        "key with a space",
        "key too long",
    ],
)
def test_when_a_request_is_ambiguous_or_unmapped_then_it_is_refused(
    table: RouteTable, method: str, path: str, headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(Refusal) as refused:
        table.match(method, path, headers)
    assert refused.value.code == "route_not_allowed"
    assert refused.value.status == 403
    assert refused.value.reason == reason


def test_when_dot_segments_and_empty_segments_mix_then_they_resolve_like_a_browser() -> None:
    assert canonical_segments("/a/b/./../c//d/") == ["a", "c", "d"]


def test_when_two_routes_share_a_path_and_method_then_the_table_is_rejected(tmp_path: Path) -> None:
    catalog = load_catalog(POLICIES / "catalog.toml")
    spec = (
        '[[route]]\nname = "a"\nmethods = ["GET"]\npath = "/x"\naction = "catalog"\nbody = "metadata"\n'
        '[[route]]\nname = "b"\nmethods = ["GET"]\npath = "/X"\naction = "catalog"\nbody = "metadata"\n'
    )
    (tmp_path / "routes.toml").write_text(spec, encoding="utf-8")
    with pytest.raises(ConfigError, match="lower-case"):
        load_routes(tmp_path / "routes.toml", catalog)
