"""Shaping one record for one recipient: keep only the fields the obligations allow.

The shaper is built once per request (the recipient, dataset, purpose and obligations are
fixed) and then applied to every record, buffered or streamed, so it must be cheap per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.catalog import Dataset
from gateway.policy.obligations import Obligations

Record = dict[str, Any]


class Shaper:
    def __init__(self, dataset: Dataset, obligations: Obligations) -> None:
        self.dataset = dataset
        # Catalog order: a delivered record lists its fields the way the catalog does.
        self.allowed = tuple(f.name for f in dataset.fields if f.name in obligations.fields)
        self.dropped_fields: set[str] = set()

    def shape(self, record: Record) -> Record:
        out = {name: record[name] for name in self.allowed if name in record}
        if len(out) != len(record):
            self.dropped_fields.update(k for k in record if k not in out)
        return out

    def shape_all(self, records: Sequence[Record]) -> list[Record]:
        return [self.shape(r) for r in records]
