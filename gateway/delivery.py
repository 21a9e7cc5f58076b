"""Accounting for what leaves the gateway: record count, fields, and keyed hashes of data subjects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
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

    def add(self, records: Sequence[dict[str, Any]], subjects: Sequence[Any] | None = None) -> None:
        """Count delivered records; `subjects` are their subjects' raw identifiers if shaping
        replaced them in the records (a pseudonym must not stand for the person in the log)."""
        self.records += len(records)
        self._fields.update(dict.fromkeys(chain.from_iterable(records)))
        subject_field = self.dataset.subject if self.dataset else None
        if subject_field is None:
            return
        if subjects is None:
            subjects = [record.get(subject_field) for record in records]
        room = MAX_SUBJECTS_PER_EVENT - len(self._subjects)
        for value in subjects:
            if isinstance(value, str) and value:
                if room <= 0:
                    self.truncated = True
                    break
                digest = self.hasher(value)
                if digest not in self._subjects:
                    self._subjects[digest] = None
                    room -= 1

    def fill(self, delivery: Delivery) -> None:
        delivery.records = self.records
        delivery.fields = tuple(self._fields)
        delivery.subject_hashes = list(self._subjects)
        delivery.subjects_truncated = self.truncated
