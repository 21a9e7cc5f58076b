"""The route table: which upstream API calls pass, and the one canonical form each is forwarded in.

Routing is where a gateway is most easily fooled: if the gateway and the platform read a path
differently, a refused dataset can be reached under another spelling. So the gateway reads the
path once, strictly (percent-decoding, dot segments, repeated and trailing slashes, case of
literal segments and dataset ids), decides on that reading, and forwards exactly that reading
upstream. Anything it cannot read unambiguously is refused.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes, urlencode

from gateway.catalog import Catalog, Dataset
from gateway.errors import ConfigError, Refusal, route_not_allowed

ACTIONS = ("health", "catalog", "list", "read", "export")
BODY_KINDS = ("metadata", "records", "record", "export")
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UINT = re.compile(r"[0-9]{1,9}")
_PATH_CHARS = re.compile(r"[!$&'()*+,\-.\/0-9:=@A-Z_a-z~%]*")
_PARAM = re.compile(r"\{(dataset|key)\}")
METHOD_OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    methods: frozenset[str]
    segments: tuple[str, ...]  # literal (lower case) or "{dataset}" / "{key}"
    action: str
    purpose_required: bool
    query: Mapping[str, str | tuple[str, ...]]
    body: str
    local: bool


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    dataset: Dataset | None
    key: str | None
    query: Mapping[str, str]
    forward_path: str  # canonical path and query, exactly what goes upstream


class RouteTable:
    def __init__(self, routes: tuple[Route, ...], catalog: Catalog) -> None:
        self.routes = routes
        self.catalog = catalog

    def match(self, method: str, raw_path: str, headers: Mapping[str, str]) -> RouteMatch:
        """Return the route for this request, or raise a Refusal that says why not."""
        for header in headers:
            if header.lower() in METHOD_OVERRIDE_HEADERS:
                raise route_not_allowed(
                    f"不接受方法覆盖请求头 {header} (method override headers are refused)",
                    reason="method_override",
                )
        path, _, raw_query = raw_path.partition("?")
        segments = canonical_segments(path)
        for route in self.routes:
            if len(route.segments) != len(segments):
                continue
            bound = _bind(route, segments, self.catalog)
            if bound is None:
                continue
            if method not in route.methods:
                raise route_not_allowed(
                    f"该接口不允许 {method} 方法 (method {method} not allowed on this route)",
                    reason="method_not_allowed",
                )
            dataset, key, canonical = bound
            query = _check_query(route, raw_query)
            forward = "/" + "/".join(canonical)
            if query:
                forward += "?" + urlencode(sorted(query.items()))
            return RouteMatch(route, dataset, key, MappingProxyType(query), forward)
        raise route_not_allowed("该路径不在网关路由表中 (path is not in the route table)")


def canonical_segments(path: str) -> list[str]:
    """Decode a request path into its segments, refusing every ambiguous spelling."""
    if not path.startswith("/") or not _PATH_CHARS.fullmatch(path):
        raise route_not_allowed(
            "路径含有不允许的字符 (path contains characters that are not allowed)",
            reason="path_malformed",
        )
    out: list[str] = []
    for raw in path.split("/"):
        segment = _decode_segment(raw)
        if segment in ("", "."):
            continue
        if segment == "..":
            if not out:
                raise route_not_allowed(
                    "路径越过了根目录 (path climbs above the root)", reason="path_traversal"
                )
            out.pop()
            continue
        out.append(segment)
    return out


def _decode_segment(raw: str) -> str:
    if "%" not in raw:
        return raw
    if re.search(r"%(?![0-9A-Fa-f]{2})", raw):
        raise route_not_allowed("路径编码无效 (invalid percent-encoding)", reason="path_malformed")
    try:
        segment = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise route_not_allowed(
            "路径编码不是 UTF-8 (percent-encoding is not UTF-8)", reason="path_malformed"
        ) from None
    # A decoded separator or a second layer of encoding means two readers could disagree.
    if any(c in segment for c in "/\\%;") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
        raise route_not_allowed(
            "路径含有编码后的分隔符或二次编码 (encoded separator or double encoding in path)",
            reason="path_ambiguous",
        )
    return segment


def _bind(
    route: Route, segments: list[str], catalog: Catalog
) -> tuple[Dataset | None, str | None, list[str]] | None:
    dataset: Dataset | None = None
    key: str | None = None
    canonical: list[str] = []
    for pattern, segment in zip(route.segments, segments, strict=True):
        if pattern == "{dataset}":
            ds_id = segment.lower() if segment.isascii() else ""
            found = catalog.get(ds_id)
            if found is None:
                raise route_not_allowed(
                    "目录中没有这个数据集 (no such dataset in the catalog)",
                    reason="unknown_dataset",
                )
            dataset = found
            canonical.append(found.id)
        elif pattern == "{key}":
            if not KEY_PATTERN.fullmatch(segment):
                raise route_not_allowed(
                    "记录编号格式不正确 (malformed record key)", reason="key_malformed"
                )
            key = segment
            canonical.append(segment)
        elif segment.isascii() and segment.lower() == pattern:
            canonical.append(pattern)
        else:
            return None
    return dataset, key, canonical


def _check_query(route: Route, raw_query: str) -> dict[str, str]:
    if not raw_query:
        return {}
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise route_not_allowed(
            "查询参数无法解析 (malformed query)", reason="query_malformed"
        ) from None
    query: dict[str, str] = {}
    for name, value in pairs:
        kind = route.query.get(name)
        if kind is None:
            raise _bad_query(f"不接受查询参数 {name!r} (query parameter {name!r} is not allowed)")
        if name in query:
            raise _bad_query(f"查询参数 {name!r} 重复 (query parameter {name!r} is repeated)")
        if isinstance(kind, tuple):
            ok = value in kind
        else:
            ok = bool((_UINT if kind == "uint" else _TOKEN).fullmatch(value))
        if not ok:
            raise _bad_query(f"查询参数 {name!r} 的值无效 (invalid value for {name!r})")
        query[name] = value
    return query


def _bad_query(message: str) -> Refusal:
    return route_not_allowed(message, reason="query_not_allowed")


def load_routes(path: Path, catalog: Catalog) -> RouteTable:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"路由表无法读取 (routes unreadable): {path}: {exc}") from exc
    problems: list[str] = []
    routes: list[Route] = []
    names: set[str] = set()
    for spec in raw.get("route", []):
        try:
            routes.append(_parse_route(spec, problems))
        except (KeyError, TypeError) as exc:
            problems.append(f"route {spec.get('name', '?')}: missing or malformed {exc}")
            continue
        if routes[-1].name in names:
            problems.append(f"route {routes[-1].name!r} is defined twice")
        names.add(routes[-1].name)
    shapes = [(r.segments, m) for r in routes for m in r.methods]
    if len(shapes) != len(set(shapes)):
        problems.append("two routes match the same method and path")
    if problems:
        raise ConfigError(f"路由表有误 (routes invalid): {path}:\n  " + "\n  ".join(problems))
    return RouteTable(tuple(routes), catalog)


def _parse_route(spec: dict[str, Any], problems: list[str]) -> Route:
    name = spec["name"]
    path = spec["path"]
    segments = tuple(s for s in path.split("/") if s)
    for s in segments:
        if "{" in s and not _PARAM.fullmatch(s):
            problems.append(f"route {name}: unknown parameter {s!r}")
        elif "{" not in s and (s != s.lower() or not _TOKEN.fullmatch(s.replace(".", ""))):
            problems.append(f"route {name}: literal segment {s!r} must be lower-case ASCII")
    action = spec["action"]
    if action not in ACTIONS:
        problems.append(f"route {name}: action {action!r} is not one of {', '.join(ACTIONS)}")
    body = spec["body"]
    if body not in BODY_KINDS:
        problems.append(f"route {name}: body {body!r} is not one of {', '.join(BODY_KINDS)}")
    purpose = spec.get("purpose", "required")
    if purpose not in ("required", "none"):
        problems.append(f"route {name}: purpose must be 'required' or 'none'")
    query: dict[str, str | tuple[str, ...]] = {}
    for param, kind in (spec.get("query") or {}).items():
        if isinstance(kind, list):
            query[param] = tuple(str(v) for v in kind)
        elif kind in ("uint", "token"):
            query[param] = kind
        else:
            problems.append(f"route {name}: query parameter {param!r} has unknown type {kind!r}")
    methods = frozenset(m.upper() for m in spec["methods"])
    if not methods:
        problems.append(f"route {name}: no methods")
    return Route(
        name=name,
        methods=methods,
        segments=segments,
        action=action,
        purpose_required=purpose == "required",
        query=MappingProxyType(query),
        body=body,
        local=bool(spec.get("local", False)),
    )
