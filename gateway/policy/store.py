"""Casbin policy lines in the state database, through the pycasbin SQLAlchemy adapter.

The stock adapter table has six value columns; ShareGuard's policy lines have eleven, so the
table is declared here with more, and lines are loaded in insertion order (PostgreSQL does not
keep it otherwise) so that the first refusal in policy.csv is the one explained.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from casbin import persist
from sqlalchemy import Column, Engine, Integer, String
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy_adapter import Adapter

VALUE_COLUMNS = 12


class _Base(DeclarativeBase):
    pass


def _str(self: Any) -> str:
    values = [getattr(self, f"v{i}") for i in range(VALUE_COLUMNS)]
    return ", ".join([self.ptype, *(v for v in values if v is not None)])


PolicyLine = type(
    "PolicyLine",
    (_Base,),
    {
        "__tablename__": "casbin_rule",
        "id": Column(Integer, primary_key=True),
        "ptype": Column(String(255)),
        **{f"v{i}": Column(String(255)) for i in range(VALUE_COLUMNS)},
        "__str__": _str,
    },
)


class PolicyAdapter(Adapter):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, db_class=PolicyLine)

    def load_policy(self, model: Any) -> None:
        with self._session_scope() as session:
            for line in session.query(self._db_class).order_by(self._db_class.id):
                persist.load_policy_line(str(line), model)

    def is_empty(self) -> bool:
        with self._session_scope() as session:
            return session.query(self._db_class).first() is None


def read_policy_csv(path: Path) -> list[list[str]]:
    """The lines of a policy.csv, comments and blank lines skipped, fields trimmed."""
    rows: list[list[str]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, skipinitialspace=True):
            if not row or row[0].lstrip().startswith("#"):
                continue
            rows.append([field.strip() for field in row])
    return rows
