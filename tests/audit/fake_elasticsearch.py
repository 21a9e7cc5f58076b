"""A local HTTP server that answers as Elasticsearch does, for the calls ShareGuard makes, with faults.

It speaks real HTTP to the official client (which insists on `X-Elastic-Product:
Elasticsearch`), and implements what the shipper and the search use: `GET /`, lifecycle
policies, composable index templates, data streams, `_bulk` with per-item results (op_type
rules, version conflicts, mapping checks against the template's explicit mappings),
`_search` (bool / term / terms / range / exists / simple_query_string, sort, from/size,
search_after, terms, composite and sum aggregations), `_count` and `_refresh`.

Faults, for the tests: unreachable (`stop()` then `start()` on the same port), whole requests
answered 429 or 5xx, chosen documents answered 429 / 5xx / 400 inside a bulk response, an
acknowledgement lost after the documents were stored, and slow answers. It is a stand-in,
not Elasticsearch: the contract suite (`pytest -m elasticsearch`) runs the same checks against
a real cluster.

    python -m tests.audit.fake_elasticsearch --port 9200     # run it by hand
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import ipaddress
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

VERSION = "9.1.0"
CONTENT_TYPE = "application/vnd.elasticsearch+json;compatible-with=9"
_TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]|[0-9a-z_]+(?:['.][0-9a-z_]+)*")


class EsError(Exception):
    def __init__(self, status: int, type_: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.type = type_
        self.reason = reason

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


@dataclass
class Stream:
    """A data stream (or a plain index): its documents by id, in the order they were created."""

    name: str
    template: str | None
    data_stream: bool
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y.%m.%d"))

    @property
    def backing_index(self) -> str:
        return f".ds-{self.name}-{self.created}-000001" if self.data_stream else self.name


@dataclass
class Faults:
    delay: float = 0.0  # seconds before every answer
    # (path substring, status, how many requests) answered with an error, in order
    requests: deque[list[Any]] = field(default_factory=deque)
    # document id → statuses to answer on its next attempts (one per attempt)
    items: dict[str, deque[int]] = field(default_factory=dict)
    # documents refused for good (a mapping error, say): predicate on the source
    reject: Callable[[dict[str, Any]], bool] | None = None
    # bulk requests to store and then leave unanswered (the connection is closed)
    lose_acks: int = 0


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    items: int = 0
    status: int = 200


class FakeElasticsearch:
    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.lock = threading.RLock()
        self.templates: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.streams: dict[str, Stream] = {}
        self.faults = Faults()
        self.seen: list[Seen] = []
        self.connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._seq_no = 0

    # ----- life cycle and fault controls -------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeElasticsearch:
        handler = functools.partial(_Handler, self)
        server = ThreadingHTTPServer((self.host, self.port), handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unreachable: nothing listens on the port until `start()` again (state is kept).

        Open keep-alive connections are cut too, as a host going away would cut them."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self.connections.clear()

    def fail_requests(self, path_part: str, status: int, times: int = 1) -> None:
        with self.lock:
            self.faults.requests.append([path_part, status, times])

    def fail_items(self, ids: list[str], *statuses: int) -> None:
        with self.lock:
            for doc_id in ids:
                self.faults.items.setdefault(doc_id, deque()).extend(statuses)

    def docs(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            stream = self.streams.get(name)
            return list(stream.docs.values()) if stream else []

    def ids(self, name: str) -> list[str]:
        with self.lock:
            stream = self.streams.get(name)
            return list(stream.docs) if stream else []

    def bulk_sizes(self) -> list[int]:
        return [s.items for s in self.seen if s.path.endswith("_bulk")]

    # ----- request dispatch -------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        with self.lock:
            for rule in list(self.faults.requests):
                if rule[0] in path:
                    rule[2] -= 1
                    if rule[2] <= 0:
                        self.faults.requests.remove(rule)
                    raise _status_error(rule[1])
        if not parts:
            return 200, _info()
        if parts[0] == "_ilm" and len(parts) == 3 and parts[1] == "policy":
            return self._ilm(method, parts[2], body)
        if parts[0] == "_index_template" and len(parts) == 2:
            return self._template(method, parts[1], body)
        if parts[0] == "_data_stream" and len(parts) == 2:
            return self._data_stream(method, parts[1])
        if parts[-1] == "_bulk":
            return self._bulk(parts[0] if len(parts) == 2 else None, body)
        if len(parts) == 2 and parts[1] in ("_search", "_count", "_refresh"):
            targets = self._resolve(parts[0], query.get("ignore_unavailable") == "true")
            request = orjson.loads(body) if body else {}
            if parts[1] == "_refresh":
                return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
            docs = [
                (s.backing_index, doc_id, doc)
                for s in targets
                for doc_id, doc in s.docs.items()
                if _matches(request.get("query", {"match_all": {}}), doc, self._mapping(s))
            ]
            if parts[1] == "_count":
                return 200, {"count": len(docs), "_shards": _shards()}
            return 200, self._search(docs, request, targets)
        raise EsError(400, "illegal_argument_exception", f"no handler for [{method} {path}]")

    def _ilm(self, method: str, name: str, body: bytes) -> tuple[int, Any]:
        with self.lock:
            if method == "PUT":
                policy = orjson.loads(body)["policy"]
                if "phases" not in policy:
                    raise EsError(400, "x_content_parse_exception", "[phases] is required")
                version = self.policies.get(name, {}).get("version", 0) + 1
                self.policies[name] = {"version": version, "policy": policy}
                return 200, {"acknowledged": True}
            if name not in self.policies:
                raise EsError(
                    404, "resource_not_found_exception", f"Lifecycle policy not found: {name}"
                )
            p = self.policies[name]
            return 200, {name: {**p, "modified_date": "2026-11-21T00:00:00.000Z"}}

    def _template(self, method: str, name: str, body: bytes) -> tuple[int, Any]:
        with self.lock:
            if method == "PUT":
                template = orjson.loads(body)
                if not template.get("index_patterns"):
                    raise EsError(
                        400, "action_request_validation_exception", "index patterns are missing"
                    )
                self.templates[name] = template
                return 200, {"acknowledged": True}
            if name not in self.templates:
                raise EsError(
                    404,
                    "resource_not_found_exception",
                    f"index template matching [{name}] not found",
                )
            if method == "DELETE":
                del self.templates[name]
                return 200, {"acknowledged": True}
            return 200, {
                "index_templates": [{"name": name, "index_template": self.templates[name]}]
            }

    def _data_stream(self, method: str, name: str) -> tuple[int, Any]:
        with self.lock:
            if method == "PUT":
                if name in self.streams:
                    raise EsError(
                        400,
                        "resource_already_exists_exception",
                        f"data_stream [{name}] already exists",
                    )
                self._create(name, require_stream=True)
                return 200, {"acknowledged": True}
            if name not in self.streams:
                raise EsError(404, "index_not_found_exception", f"no such index [{name}]")
            if method == "DELETE":
                del self.streams[name]
                return 200, {"acknowledged": True}
            s = self.streams[name]
            template = self.templates.get(s.template or "", {})
            policy = template.get("template", {}).get("settings", {}).get("index.lifecycle.name")
            return 200, {
                "data_streams": [
                    {
                        "name": name,
                        "timestamp_field": {"name": "@timestamp"},
                        "indices": [{"index_name": s.backing_index}],
                        "generation": 1,
                        "status": "GREEN",
                        "template": s.template,
                        "ilm_policy": policy,
                    }
                ]
            }

    def _matching_template(self, name: str) -> tuple[str, dict[str, Any]] | None:
        best: tuple[int, str, dict[str, Any]] | None = None
        for tname, template in self.templates.items():
            if any(_glob(p, name) for p in template["index_patterns"]):
                priority = int(template.get("priority", 0))
                if best is None or priority > best[0]:
                    best = (priority, tname, template)
        return (best[1], best[2]) if best else None

    def _create(self, name: str, *, require_stream: bool) -> Stream:
        match = self._matching_template(name)
        is_stream = match is not None and "data_stream" in match[1]
        if require_stream and not is_stream:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"no matching index template with a data stream template found for [{name}]",
            )
        stream = Stream(name, match[0] if match else None, is_stream)
        self.streams[name] = stream
        return stream

    def _mapping(self, stream: Stream) -> dict[str, Any]:
        template = self.templates.get(stream.template or "", {})
        mapping: dict[str, Any] = template.get("template", {}).get("mappings", {})
        return mapping

    def _resolve(self, target: str, ignore_unavailable: bool) -> list[Stream]:
        with self.lock:
            found: list[Stream] = []
            for part in target.split(","):
                hits = [s for n, s in self.streams.items() if _glob(part, n)]
                if not hits and "*" not in part and not ignore_unavailable:
                    raise EsError(404, "index_not_found_exception", f"no such index [{part}]")
                found += hits
            return found

    # ----- bulk ------------------------------------------------------------------------

    def _bulk(self, default_index: str | None, body: bytes) -> tuple[int, Any]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items: list[dict[str, Any]] = []
        i = 0
        while i < len(lines):
            action = orjson.loads(lines[i])
            op, meta = next(iter(action.items()))
            source = orjson.loads(lines[i + 1]) if op != "delete" else None
            i += 2 if op != "delete" else 1
            items.append({op: self._bulk_item(op, meta, source, default_index)})
        errors = any("error" in next(iter(item.values())) for item in items)
        return 200, {"errors": errors, "took": 1, "items": items}

    def _bulk_item(
        self,
        op: str,
        meta: dict[str, Any],
        source: dict[str, Any] | None,
        default_index: str | None,
    ) -> dict[str, Any]:
        index = meta.get("_index", default_index)
        doc_id = meta.get("_id")
        result: dict[str, Any] = {"_index": index, "_id": doc_id}
        try:
            with self.lock:
                pending = self.faults.items.get(str(doc_id))
                if pending:
                    raise _status_error(pending.popleft())
                if (
                    self.faults.reject is not None
                    and source is not None
                    and self.faults.reject(source)
                ):
                    raise EsError(
                        400, "document_parsing_exception", "failed to parse field [shareguard]"
                    )
                if index is None:
                    raise EsError(400, "action_request_validation_exception", "index is missing")
                stream = self.streams.get(index) or self._create(index, require_stream=False)
                result["_index"] = stream.backing_index
                if stream.data_stream and op != "create":
                    raise EsError(
                        400,
                        "illegal_argument_exception",
                        "only write ops with an op_type of create are allowed in data streams",
                    )
                if op not in ("create", "index") or source is None:
                    raise EsError(400, "illegal_argument_exception", f"unsupported op [{op}]")
                if stream.data_stream:
                    _check_timestamp(source)
                _check_mapping(self._mapping(stream).get("properties", {}), source, "")
                if doc_id is None:
                    self._seq_no += 1
                    doc_id = result["_id"] = f"auto-{self._seq_no}"
                if doc_id in stream.docs and op == "create":
                    raise EsError(
                        409,
                        "version_conflict_engine_exception",
                        f"[{doc_id}]: version conflict, document already exists (current version [1])",
                    )
                stream.docs[str(doc_id)] = source
                self._seq_no += 1
        except EsError as exc:
            result.update(
                status=exc.status, error={"type": exc.type, "reason": exc.reason, "index": index}
            )
            return result
        result.update(
            _version=1,
            result="created",
            _shards={"total": 1, "successful": 1, "failed": 0},
            _seq_no=self._seq_no,
            _primary_term=1,
            status=201,
        )
        return result

    # ----- search ------------------------------------------------------------------------

    def _search(
        self,
        docs: list[tuple[str, str, dict[str, Any]]],
        request: dict[str, Any],
        targets: list[Stream],
    ) -> dict[str, Any]:
        mapping = self._mapping(targets[0]) if targets else {}
        sort = _sort_spec(request.get("sort", []))
        keyed = [
            ((_sort_values(doc, sort, mapping)), index, doc_id, doc) for index, doc_id, doc in docs
        ]
        if sort:
            keyed.sort(key=functools.cmp_to_key(lambda a, b: _compare(a[0], b[0], sort)))
        after = request.get("search_after")
        if after is not None:
            keyed = [k for k in keyed if _compare(k[0], after, sort) > 0]
        start = int(request.get("from", 0))
        size = int(request.get("size", 10))
        if start + size > 10_000:
            raise EsError(400, "illegal_argument_exception", "Result window is too large")
        page = keyed[start : start + size]
        hits: dict[str, Any] = {
            "max_score": None,
            "hits": [
                {
                    "_index": index,
                    "_id": doc_id,
                    "_score": None,
                    "_source": doc,
                    **({"sort": values} if sort else {}),
                }
                for values, index, doc_id, doc in page
            ],
        }
        track = request.get("track_total_hits", 10_000)
        if track is True:
            hits["total"] = {"value": len(keyed), "relation": "eq"}
        elif track is not False:
            limit = int(track)
            hits["total"] = {
                "value": min(len(keyed), limit),
                "relation": "eq" if len(keyed) <= limit else "gte",
            }
        out: dict[str, Any] = {"took": 1, "timed_out": False, "_shards": _shards(), "hits": hits}
        if "aggs" in request or "aggregations" in request:
            aggs = request.get("aggs") or request["aggregations"]
            out["aggregations"] = _aggregate(aggs, [d for _, _, _, d in keyed], mapping)
        return out


# ----- the HTTP layer ---------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, app: FakeElasticsearch, *args: Any) -> None:
        self.app = app
        super().__init__(*args)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.app.lock:
            self.app.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.app.lock:
            self.app.connections.discard(self.connection)

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        items = body.count(b"\n") // 2 if split.path.endswith("_bulk") else 0
        if self.app.faults.delay:
            time.sleep(self.app.faults.delay)
        try:
            status, payload = self.app.handle(self.command, split.path, query, body)
        except EsError as exc:
            status, payload = exc.status, exc.body()
        except Exception as exc:  # a bug here should look like a server error, not hang
            status, payload = 500, EsError(500, "exception", repr(exc)).body()
        self.app.seen.append(Seen(self.command, split.path, items, status))
        if split.path.endswith("_bulk") and status == 200:
            with self.app.lock:
                if self.app.faults.lose_acks > 0:
                    self.app.faults.lose_acks -= 1
                    self.close_connection = True  # stored, but the client never hears so
                    return
        data = b"" if self.command == "HEAD" else orjson.dumps(payload)
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


# ----- helpers: documents, mappings, queries ----------------------------------------------


def _info() -> dict[str, Any]:
    return {
        "name": "fake-node",
        "cluster_name": "shareguard-test",
        "cluster_uuid": "fake-cluster-uuid",
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "lucene_version": "10.2.2",
            "minimum_wire_compatibility_version": "8.19.0",
            "minimum_index_compatibility_version": "8.0.0",
        },
        "tagline": "You Know, for Search",
    }


def _shards() -> dict[str, int]:
    return {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


def _status_error(status: int) -> EsError:
    if status == 429:
        return EsError(
            429, "es_rejected_execution_exception", "rejected execution (queue capacity 200)"
        )
    if status == 503:
        return EsError(503, "unavailable_shards_exception", "primary shard is not active")
    return EsError(status, "exception", f"injected failure {status}")


def _glob(pattern: str, name: str) -> bool:
    return re.fullmatch(".*".join(re.escape(p) for p in pattern.split("*")), name) is not None


def _parse_date(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _check_timestamp(source: dict[str, Any]) -> None:
    if "@timestamp" not in source:
        raise EsError(
            400, "document_parsing_exception", "data stream timestamp field [@timestamp] is missing"
        )


def _check_mapping(properties: dict[str, Any], doc: dict[str, Any], prefix: str) -> None:
    """What Elasticsearch would refuse under explicit mappings; unmapped fields are ignored."""
    for key, value in doc.items():
        spec = properties.get(key)
        name = prefix + key
        if spec is None or value is None:
            continue
        kind = spec.get("type", "object")
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None:
                continue
            if kind == "object":
                if not isinstance(v, dict):
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"object mapping for [{name}] tried to parse field [{key}] as object, but found a concrete value",
                    )
                _check_mapping(spec.get("properties", {}), v, name + ".")
            elif kind == "flattened":
                if not isinstance(v, dict):
                    raise EsError(
                        400,
                        "document_parsing_exception",
                        f"[{name}] flattened field expects an object",
                    )
            elif isinstance(v, dict):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"[{name}] of type [{kind}] cannot hold an object",
                )
            elif kind == "long" and (isinstance(v, bool) or not re.fullmatch(r"-?\d+", str(v))):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"failed to parse field [{name}] of type [long]",
                )
            elif kind == "date" and _parse_date(v) is None:
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"failed to parse field [{name}] of type [date]",
                )
            elif kind == "boolean" and not isinstance(v, bool):
                raise EsError(
                    400,
                    "document_parsing_exception",
                    f"failed to parse field [{name}] of type [boolean]",
                )
            elif kind == "ip" and not spec.get("ignore_malformed"):
                try:
                    ipaddress.ip_address(str(v))
                except ValueError:
                    raise EsError(
                        400, "document_parsing_exception", f"'{v}' is not an IP string literal"
                    ) from None


def _field_type(mapping: dict[str, Any], path: str) -> str | None:
    props = mapping.get("properties", {})
    parts = path.split(".")
    for i, part in enumerate(parts):
        spec = props.get(part)
        if spec is None:
            return None
        kind = spec.get("type", "object")
        if kind == "flattened":
            return "keyword"  # a leaf inside a flattened field is searched as a keyword
        if i == len(parts) - 1:
            return str(kind)
        props = spec.get("properties", {})
    return None


def _values(doc: Any, path: str) -> list[Any]:
    current = [doc]
    for part in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and part in item:
                value = item[part]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return [v for v in current if v is not None]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _as_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _matches(query: dict[str, Any], doc: dict[str, Any], mapping: dict[str, Any]) -> bool:
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        musts = [*_list(spec.get("filter")), *_list(spec.get("must"))]
        if not all(_matches(q, doc, mapping) for q in musts):
            return False
        if any(_matches(q, doc, mapping) for q in _list(spec.get("must_not"))):
            return False
        shoulds = _list(spec.get("should"))
        if shoulds:
            need = int(spec.get("minimum_should_match", 0 if musts else 1))
            return sum(_matches(q, doc, mapping) for q in shoulds) >= need
        return True
    if kind in ("term", "terms"):
        ((path, wanted),) = spec.items()
        if kind == "term":
            wanted = [wanted["value"] if isinstance(wanted, dict) else wanted]
        ftype = _field_type(mapping, path)
        if ftype is None:
            return False
        values = _values(doc, path)
        if ftype == "text":
            values = [t for v in values for t in _tokens(str(v))]
        return any(_same(v, w, ftype) for v in values for w in wanted)
    if kind == "range":
        ((path, bounds),) = spec.items()
        ftype = _field_type(mapping, path)
        if ftype is None:
            return False
        convert: Callable[[Any], Any] = _parse_date if ftype == "date" else _as_number
        for value in _values(doc, path):
            v = convert(value)
            if v is None:
                continue
            ok = True
            for op, bound in bounds.items():
                b = convert(bound)
                if op in ("format", "time_zone"):
                    continue
                if b is None:
                    raise EsError(400, "parse_exception", f"failed to parse [{bound}]")
                ok &= {"gte": v >= b, "gt": v > b, "lte": v <= b, "lt": v < b}[op]
            if ok:
                return True
        return False
    if kind == "exists":
        return bool(_values(doc, spec["field"]))
    if kind == "simple_query_string":
        terms = [t.strip('+-|"*()~') for t in spec["query"].split()]
        terms = [t for t in terms if t]
        fields = spec.get("fields", ["*"])
        hits = [_text_hit(t, doc, fields, mapping) for t in terms]
        if not hits:
            return False
        return all(hits) if spec.get("default_operator", "or").lower() == "and" else any(hits)
    raise EsError(400, "parsing_exception", f"unknown query [{kind}]")


def _text_hit(term: str, doc: dict[str, Any], fields: list[str], mapping: dict[str, Any]) -> bool:
    for path in fields:
        ftype = _field_type(mapping, path)
        values = _values(doc, path)
        if ftype == "text":
            tokens = {t for v in values for t in _tokens(str(v))}
            wanted = _tokens(term)
            if wanted and all(t in tokens for t in wanted):
                return True
        elif ftype == "keyword" and any(str(v) == term for v in values):
            return True
    return False


def _same(value: Any, wanted: Any, ftype: str) -> bool:
    if ftype in ("long", "integer"):
        return _as_number(value) == _as_number(wanted)
    if ftype == "boolean":
        return str(value).lower() == str(wanted).lower()
    return str(value) == str(wanted)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sort_spec(raw: Any) -> list[tuple[str, str]]:
    spec: list[tuple[str, str]] = []
    for item in _list(raw):
        if isinstance(item, str):
            spec.append((item, "asc"))
            continue
        ((path, how),) = item.items()
        order = how.get("order", "asc") if isinstance(how, dict) else how
        spec.append((path, order))
    return spec


def _sort_values(
    doc: dict[str, Any], sort: list[tuple[str, str]], mapping: dict[str, Any]
) -> list[Any]:
    out: list[Any] = []
    for path, order in sort:
        values = _values(doc, path)
        ftype = _field_type(mapping, path)
        if ftype == "date":
            parsed = [_parse_date(v) for v in values]
            values = [int(p.timestamp() * 1000) for p in parsed if p is not None]
        elif ftype in ("long", "integer"):
            values = [int(v) for v in values]
        else:
            values = [str(v) for v in values]
        out.append((min(values) if order == "asc" else max(values)) if values else None)
    return out


def _compare(a: list[Any], b: list[Any], sort: list[tuple[str, str]]) -> int:
    for x, y, (_, order) in zip(a, b, sort, strict=False):
        if x == y:
            continue
        if x is None:  # missing values sort last, either way
            return 1
        if y is None:
            return -1
        result = -1 if x < y else 1
        return result if order == "asc" else -result
    return 0


def _aggregate(
    aggs: dict[str, Any], docs: list[dict[str, Any]], mapping: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in aggs.items():
        sub = spec.get("aggs") or spec.get("aggregations") or {}
        if "terms" in spec:
            t = spec["terms"]
            groups: dict[Any, list[dict[str, Any]]] = {}
            for doc in docs:
                values = _values(doc, t["field"]) or ([t["missing"]] if "missing" in t else [])
                for value in set(map(str, values)):
                    groups.setdefault(value, []).append(doc)
            ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            size = int(t.get("size", 10))
            buckets = [
                {"key": key, "doc_count": len(members), **_aggregate(sub, members, mapping)}
                for key, members in ordered[:size]
            ]
            out[name] = {
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": sum(len(m) for _, m in ordered[size:]),
                "buckets": buckets,
            }
        elif "composite" in spec:
            out[name] = _composite(name, spec["composite"], sub, docs, mapping)
        elif "sum" in spec:
            total = sum(
                _as_number(v) or 0.0 for d in docs for v in _values(d, spec["sum"]["field"])
            )
            out[name] = {"value": float(total)}
        elif "value_count" in spec:
            out[name] = {"value": sum(len(_values(d, spec["value_count"]["field"])) for d in docs)}
        else:
            raise EsError(400, "parsing_exception", f"unknown aggregation in [{name}]")
    return out


def _composite(
    name: str,
    spec: dict[str, Any],
    sub: dict[str, Any],
    docs: list[dict[str, Any]],
    mapping: dict[str, Any],
) -> dict[str, Any]:
    """A composite aggregation over one `terms` source, as Elasticsearch pages it: buckets in key
    order (a missing value, with `missing_bucket`, first), `size` at a time, after `after`."""
    sources = spec.get("sources") or []
    if len(sources) != 1 or len(sources[0]) != 1:
        raise EsError(400, "parsing_exception", f"[{name}]: one source only in this test server")
    [(source, kind)] = sources[0].items()
    if "terms" not in kind:
        raise EsError(400, "parsing_exception", f"[{name}]: terms sources only")
    field_name = kind["terms"]["field"]
    missing = bool(kind["terms"].get("missing_bucket", False))
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for doc in docs:
        values = _values(doc, field_name)
        if not values and missing:
            groups.setdefault(None, []).append(doc)
        for value in set(map(str, values)):
            groups.setdefault(value, []).append(doc)
    keys = sorted(groups, key=lambda k: (k is not None, k or ""))
    if "after" in spec:
        last = spec["after"][source]
        keys = [k for k in keys if (k is not None, k or "") > (last is not None, last or "")]
    page = keys[: int(spec.get("size", 10))]
    buckets = [
        {"key": {source: k}, "doc_count": len(groups[k]), **_aggregate(sub, groups[k], mapping)}
        for k in page
    ]
    return {"after_key": {source: page[-1]}, "buckets": buckets} if page else {"buckets": []}


def main() -> None:
    parser = argparse.ArgumentParser(description="a local stand-in for Elasticsearch (tests only)")
    parser.add_argument("--port", type=int, default=9200)
    args = parser.parse_args()
    server = FakeElasticsearch(args.port).start()
    print(f"fake Elasticsearch on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
