"""The grant the admin tests start from, and the admin who makes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.grants.admin import Actor
from gateway.grants.model import GrantSpec

ADMIN = Actor("admin", ("admin",), "10.0.0.5")
NOW = datetime.now(UTC)
# 统计局 reads two social-insurance fields for statistics, from a minute ago for thirty days.
SPEC = GrantSpec(
    dataset="social_insurance",
    fields=("id_number", "employer"),
    valid_from=NOW - timedelta(minutes=1),
    valid_until=NOW + timedelta(days=30),
    department="统计局",
    purposes=("statistics",),
    masking_profile="administration",
)
