"""Report sections kept by other parts of the product: overdue applications and alerts.

A section reads from its own store through a `ReportSource`, found by name in SOURCES as
"module:factory". The factory takes the settings and returns a source; a module that does not
exist (that part of the product is not installed yet) makes the section say "not available"
rather than show an empty table that would read as "none". To wire a section, add a module
with a factory and name it here:

    # gateway/applications/reporting.py
    def report_source(settings: Settings) -> ReportSource: ...
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.settings import Settings

log = logging.getLogger(__name__)

SOURCES: dict[str, str] = {
    # Applications the department was asked to answer and did not, within the deadline
    # counted in working days (issue 3: grants and applications).
    "overdue_applications": "gateway.applications.reporting:report_source",
    # Alerts raised about the department's users (issue 7: detection and response).
    "alerts": "gateway.alerts.reporting:report_source",
}


@dataclass(frozen=True, slots=True)
class Listing:
    """A section's table, or the honest statement that it cannot be produced."""

    available: bool
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    note: str = ""

    @classmethod
    def unavailable(cls, why: str) -> Listing:
        return cls(False, note=why)


class ReportSource(Protocol):
    def listing(self, department: str, since: datetime, until: datetime) -> Listing: ...


Factory = Callable[[Settings], ReportSource]


def listing(
    name: str, settings: Settings, department: str, since: datetime, until: datetime
) -> Listing:
    """The named section for a department and period; never raises for a missing part."""
    spec = SOURCES.get(name)
    if spec is None:
        return Listing.unavailable(f"未知的报告部分 (unknown section) {name}")
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return Listing.unavailable(
                "本系统尚未提供此项数据 (not available: this part of the product is not"
                f" installed; expected {spec})"
            )
        raise
    factory: Factory = getattr(module, attr)
    try:
        return factory(settings).listing(department, since, until)
    except Exception as exc:  # the rest of the report is still worth having
        log.exception("报告部分 %s 读取失败 (report section failed)", name)
        return Listing.unavailable(f"读取失败 (could not be read): {exc}")
