"""Elasticsearch for the audit log: the client, its resources (lifecycle policy, index template, data
stream), the shipped form of an event, and search over the data stream.

The index template and the lifecycle policy are data in `policies/elasticsearch/`, where an
admin can read and adjust them; the data stream's name comes from the settings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from gateway.audit.search import AuditQuery, SearchResult, iso, subject_digest
from gateway.audit.stores import GROUP_FIELDS, Group, Hasher, Slice
from gateway.settings import REPO_ROOT, Settings

RESOURCES = REPO_ROOT / "policies" / "elasticsearch"
ILM_POLICY = "shareguard-audit"
SCAN_PAGE = 1_000
GROUP_PAGE = 1_000  # report groups per request
# The fields free text is looked for in: the one-line summary (analysed text) and the
# identifiers an auditor is likely to type (exact keywords).
TEXT_FIELDS = (
    "message",
    "user.id",
    "user.name",
    "organization.id",
    "url.path",
    "event.action",
    "shareguard.request_id",
    "shareguard.dataset",
    "shareguard.purpose",
    "shareguard.reason",
    "shareguard.rule",
    "shareguard.grant_id",
    "shareguard.case_id",
    "shareguard.target",
)


def make_client(
    url: str,
    *,
    api_key: str | None = None,
    ca_certs: str | None = None,
    request_timeout: float = 10.0,
) -> Elasticsearch:
    """The official client. The transport retries 502/503/504 and timeouts itself; bulk
    shipping adds its own backoff on top (see shipper.py)."""
    kwargs: dict[str, Any] = {
        "request_timeout": request_timeout,
        "max_retries": 2,
        "retry_on_status": (502, 503, 504),
        "retry_on_timeout": True,
    }
    if api_key:
        kwargs["api_key"] = api_key
    if ca_certs:
        kwargs["ca_certs"] = ca_certs
    return Elasticsearch(url, **kwargs)


def client_from_settings(settings: Settings, request_timeout: float = 10.0) -> Elasticsearch:
    if not settings.elasticsearch_url:
        raise ValueError("未配置 Elasticsearch (SHAREGUARD_ELASTICSEARCH_URL is not set)")
    return make_client(
        settings.elasticsearch_url,
        api_key=settings.elasticsearch_api_key,
        ca_certs=settings.elasticsearch_ca_certs,
        request_timeout=request_timeout,
    )


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESOURCES / name).read_text(encoding="utf-8"))
    return data


def ilm_policy() -> dict[str, Any]:
    return _load("ilm-policy.json")


def index_template(data_stream: str) -> dict[str, Any]:
    """The composable index template for the data stream, bound to the lifecycle policy."""
    body = _load("index-template.json")
    template = body["template"]
    template["settings"]["index.lifecycle.name"] = ILM_POLICY
    return {
        "index_patterns": [data_stream],
        "data_stream": {},
        "priority": body["priority"],
        "template": template,
        "meta": body["_meta"],
    }


def mappings() -> dict[str, Any]:
    template: dict[str, Any] = _load("index-template.json")["template"]
    return dict(template["mappings"])


def ensure_resources(client: Elasticsearch, data_stream: str) -> None:
    """Create or update the lifecycle policy and index template, and create the data stream."""
    client.ilm.put_lifecycle(name=ILM_POLICY, policy=ilm_policy())
    client.indices.put_index_template(name=data_stream, **index_template(data_stream))
    try:
        client.indices.create_data_stream(name=data_stream)
    except BadRequestError as exc:
        if exc.error != "resource_already_exists_exception":
            raise


def document_id(journal_id: str, seq: int) -> str:
    """The same record always gets the same id, so a resent batch creates nothing twice."""
    return f"{journal_id}-{seq}"


def shipped_document(doc: str, seq: int, journal_id: str) -> dict[str, Any]:
    """The event as stored in the journal, plus where it came from (journal and position)."""
    event: dict[str, Any] = orjson.loads(doc)
    sg = event.setdefault("shareguard", {})
    sg["seq"] = seq
    sg["journal_id"] = journal_id
    return event


def es_query(q: AuditQuery, hasher: Hasher) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    for field, value in (
        ("user.id", q.user),
        ("organization.id", q.department),
        ("shareguard.dataset", q.dataset),
        ("shareguard.purpose", q.purpose),
        ("shareguard.decision", q.decision),
        ("shareguard.request_id", q.request_id),
        ("shareguard.event_type", q.kind),
    ):
        if value is not None:
            filters.append({"term": {field: value}})
    digest = subject_digest(q, hasher)
    if digest is not None:
        filters.append({"term": {"shareguard.data_subjects.hashes": digest}})
    span: dict[str, str] = {}
    if q.since is not None:
        span["gte"] = iso(q.since)
    if q.until is not None:
        span["lte"] = iso(q.until)
    if span:
        filters.append({"range": {"@timestamp": span}})
    must: list[dict[str, Any]] = []
    if q.text:
        must.append(
            {
                "simple_query_string": {
                    "query": q.text,
                    "fields": list(TEXT_FIELDS),
                    "default_operator": "and",
                    "lenient": True,
                }
            }
        )
    return {"bool": {"filter": filters, "must": must}}


def _no_seq_cursor(query: AuditQuery) -> None:
    """Record numbers are per journal, and the cluster holds several gateways' journals: a seq
    cursor is refused here, never ignored (ignored, it would answer the first page again)."""
    if query.before_seq is not None or query.after_seq is not None:
        raise ValueError(
            "before_seq/after_seq 仅支持本地日志，请用 store=journal"
            " (seq cursors need the journal store)"
        )


def _sort(newest_first: bool) -> list[dict[str, Any]]:
    order = "desc" if newest_first else "asc"
    return [
        {"@timestamp": {"order": order}},
        {"shareguard.journal_id": {"order": order}},
        {"shareguard.seq": {"order": order}},
    ]


class DataStreamMissing(NotFoundError):
    """The audit data stream is gone: events were shipped to it, its index template (which the
    shipper puts up with it) is still there, or it went away while it was read."""

    def __init__(self, data_stream: str, why: str, cause: NotFoundError) -> None:
        super().__init__(cause.message, cause.meta, cause.body)
        self.data_stream = data_stream
        self.why = why

    def __str__(self) -> str:
        return (
            f"Elasticsearch 审计数据流 {self.data_stream} 不存在，可能被删除或改名：{self.why}"
            f" (the audit data stream {self.data_stream} is missing: deleted or renamed)"
        )


class ElasticStore:
    """Search, exports and report counts over the data stream."""

    name = "elasticsearch"

    def __init__(
        self,
        client: Elasticsearch,
        data_stream: str,
        hasher: Hasher,
        pending: Callable[[], int] = lambda: 0,
        shipped: Callable[[], int] = lambda: 0,
    ) -> None:
        """`pending`: events durable in the journal that the data stream does not hold yet;
        `shipped`: the newest journal record shipped to this data stream (0: none yet)."""
        self.client = client
        self.data_stream = data_stream
        self.hasher = hasher
        self.pending = pending
        self.shipped = shipped

    def _no_stream(self, exc: NotFoundError, *, reading: bool = False) -> None:
        """The data stream does not exist (any other 404 is raised as it is). Before anything
        was shipped to it, that is an empty store (its backlog says what is on the way); after,
        it was deleted or renamed, and answering "no events" would hide the whole history from
        the auditor. `reading`: an earlier page of the same answer came from it, so it went
        away meanwhile, and a shortened answer must not pass for a whole one."""
        if exc.error != "index_not_found_exception":
            raise exc
        if reading:
            why = "读取期间消失 (it disappeared while it was read)"
        elif (shipped := self.shipped()) > 0:
            why = f"日志已发送至第 {shipped} 条记录 (events up to record {shipped} were shipped to it)"
        elif self.client.indices.exists_index_template(name=self.data_stream):
            # The shipper creates the template and the stream together (ensure_resources): this
            # holds whichever machine shipped, which the local shipping state cannot know.
            why = "其索引模板仍在 (its index template, created with it, is still there)"
        else:
            return
        raise DataStreamMissing(self.data_stream, why, exc) from exc

    @classmethod
    def from_settings(cls, settings: Settings, hasher: Hasher) -> ElasticStore:
        from gateway.audit.shipper import backlog

        return cls(
            client_from_settings(settings),
            settings.elasticsearch_data_stream,
            hasher,
            pending=lambda: backlog(settings).backlog,
            shipped=lambda: backlog(settings).position,
        )

    def search(self, query: AuditQuery) -> SearchResult:
        _no_seq_cursor(query)
        try:
            resp = self.client.search(
                index=self.data_stream,
                query=es_query(query, self.hasher),
                sort=_sort(query.newest_first),
                from_=query.offset,
                size=query.limit,
                track_total_hits=True,
            )
        except NotFoundError as exc:
            self._no_stream(exc)
            return SearchResult(0, [], self.name, self.pending())
        hits = resp["hits"]
        events = [hit["_source"] for hit in hits["hits"]]
        return SearchResult(int(hits["total"]["value"]), events, self.name, self.pending())

    def scan(self, query: AuditQuery) -> Iterator[dict[str, Any]]:
        """Every match, page by page with search_after on a sort that is unique per event."""
        _no_seq_cursor(query)
        return self._scan(query)

    def _scan(self, query: AuditQuery) -> Iterator[dict[str, Any]]:
        after: list[Any] | None = None
        while True:
            extra: dict[str, Any] = {"search_after": after} if after is not None else {}
            try:
                resp = self.client.search(
                    index=self.data_stream,
                    query=es_query(query, self.hasher),
                    sort=_sort(query.newest_first),
                    size=SCAN_PAGE,
                    track_total_hits=False,
                    **extra,
                )
            except NotFoundError as exc:
                self._no_stream(exc, reading=after is not None)
                return
            hits = resp["hits"]["hits"]
            for hit in hits:
                yield hit["_source"]
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def groups(self, part: Slice, by: str) -> list[Group]:
        if part.datasets == ():
            return []
        filters: list[dict[str, Any]] = [
            {"term": {"shareguard.event_type": "access"}},
            {"term": {"shareguard.phase": "complete"}},
            {"range": {"@timestamp": {"gte": iso(part.since), "lt": iso(part.until)}}},
        ]
        if part.department is not None:
            filters.append({"term": {"organization.id": part.department}})
        if part.datasets is not None:
            filters.append({"terms": {"shareguard.dataset": list(part.datasets)}})
        if part.decision is not None:
            filters.append({"term": {"shareguard.decision": part.decision}})
        # A composite aggregation, paged: every group, with exact counts (a terms aggregation
        # lists only its `size` largest, and a report must not drop any).
        source = {"key": {"terms": {"field": GROUP_FIELDS[by], "missing_bucket": True}}}
        groups: list[Group] = []
        after: dict[str, Any] | None = None
        while True:
            composite: dict[str, Any] = {"size": GROUP_PAGE, "sources": [source]}
            if after is not None:
                composite["after"] = after
            try:
                resp = self.client.search(
                    index=self.data_stream,
                    query={"bool": {"filter": filters}},
                    size=0,
                    aggs={
                        "groups": {
                            "composite": composite,
                            "aggs": {"records": {"sum": {"field": "shareguard.records"}}},
                        }
                    },
                )
            except NotFoundError as exc:
                self._no_stream(exc, reading=after is not None)
                return []
            page = resp["aggregations"]["groups"]
            for b in page["buckets"]:
                key = b["key"]["key"]
                groups.append(
                    Group(
                        None if key is None else str(key),
                        int(b["doc_count"]),
                        int(b["records"]["value"] or 0),
                    )
                )
            # Elasticsearch documents the end as a page without buckets (a short page need not
            # be the last when sub-aggregations drop buckets): one request more, not a guess.
            after = page.get("after_key")
            if not page["buckets"] or after is None:
                break
        return sorted(groups, key=lambda g: (-g.requests, g.key or ""))
