"""Accounting for what leaves the gateway: record count, fields, and keyed hashes of data subjects."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway.audit.journal import MAX_SUBJECTS_PER_EVENT
from gateway.catalog import Dataset
from gateway.context import Delivery


class DeliveryLedger:
    """Adds up delivered records as they pass, in bounded memory."""

    def __init__(self, dataset: Dataset | None, hasher: Callable[[str], str]) -> None:
        self.dataset = dataset
        self.hasher = hasher
        self.records = 0
        self._fields: dict[str, None] = {}
        self._subjects: dict[str, None] = {}
        self.truncated = False

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        subject_field = self.dataset.subject if self.dataset else None
        for record in records:
            self.records += 1
            for name in record:
                if name not in self._fields:
                    self._fields[name] = None
            if subject_field is None:
                continue
            value = record.get(subject_field)
            if isinstance(value, str) and value:
                if len(self._subjects) < MAX_SUBJECTS_PER_EVENT:
                    self._subjects[self.hasher(value)] = None
                else:
                    self.truncated = True

    def fill(self, delivery: Delivery) -> None:
        delivery.records = self.records
        delivery.fields = tuple(self._fields)
        delivery.subject_hashes = list(self._subjects)
        delivery.subjects_truncated = self.truncated
