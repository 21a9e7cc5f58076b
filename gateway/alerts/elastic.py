"""Alerts indexed in Elasticsearch (for Kibana), when an Elasticsearch URL is set.

The state database stays the alerts' home; Elasticsearch gets a copy, one document per alert,
replaced whenever the alert changes. Copies are sent by a thread of their own through a bounded
queue, with backoff on 429 and 5xx, so neither detection nor triage ever waits on the cluster.
A copy that cannot be sent is counted, and sent again the next time the alert changes.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError, helpers

from gateway.alerts.store import AlertError, AlertStore

log = logging.getLogger(__name__)

INDEX = "shareguard-alerts"
TEMPLATE = (
    Path(__file__).resolve().parents[2] / "policies" / "elasticsearch" / "alerts-template.json"
)
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)


def index_template() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    return {
        "index_patterns": [INDEX],
        "priority": body["priority"],
        "template": body["template"],
        "meta": body["_meta"],
    }


class AlertIndexer:
    def __init__(
        self,
        client: Elasticsearch,
        store: AlertStore,
        *,
        delays: tuple[float, ...] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
        queue_size: int = 10_000,
    ) -> None:
        self.client = client
        self.store = store
        self.delays = delays
        self._sleep = sleep
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self.indexed = 0
        self.failed = 0
        self.dropped = 0
        self._ready = False
        self._thread = threading.Thread(target=self._run, name="alert-indexer", daemon=True)
        self._thread.start()

    def changed(self, alert_id: str) -> None:
        """Called by the alert store after every change; never blocks."""
        try:
            self._queue.put_nowait(alert_id)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            alert_id = self._queue.get()
            try:
                if alert_id is None:
                    return
                if self._send(alert_id):
                    self.indexed += 1
                else:
                    self.failed += 1
            except Exception:
                # An unexpected error (the database, the client) must not end the thread:
                # every later copy would be queued and never sent.
                self.failed += 1
                log.exception("告警写入 Elasticsearch 出错 (alert copy failed): %s", alert_id)
            finally:
                self._queue.task_done()

    def _send(self, alert_id: str) -> bool:
        try:
            alert = self.store.get(alert_id)
        except AlertError:
            return False
        action = {"_op_type": "index", "_index": INDEX, "_id": alert.id, "_source": alert.to_json()}
        for attempt, delay in enumerate((0.0, *self.delays)):
            if delay:
                self._sleep(delay)
            try:
                if not self._ready:
                    self.client.indices.put_index_template(name=INDEX, **index_template())
                    self._ready = True
                helpers.bulk(self.client, [action], raise_on_error=True, max_retries=0)
                return True
            except helpers.BulkIndexError as exc:
                status = int(exc.errors[0].get("index", {}).get("status", 0)) if exc.errors else 0
                if status and status < 500 and status != 429:
                    log.error(
                        "告警写入 Elasticsearch 被拒 (alert refused) %s: %s",
                        alert_id,
                        exc.errors[:1],
                    )
                    return False
            except (ApiError, TransportError) as exc:
                log.warning(
                    "告警写入 Elasticsearch 失败，第 %d 次 (attempt %d): %s",
                    attempt + 1,
                    attempt + 1,
                    exc,
                )
        log.error("告警写入 Elasticsearch 放弃 (gave up): %s", alert_id)
        return False

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=30)
