"""The department report's section on applications the department answered late or not at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.applications.model import ApplicationSpec
from gateway.applications.reporting import report_source
from gateway.grants.admin import Actor
from gateway.service import Gateway

CLERK = Actor("admin", ("admin",))


def test_an_application_left_past_its_deadline_is_listed_for_the_provider(gateway: Gateway) -> None:
    submitted = datetime(2026, 9, 1, 2, 0, tzinfo=UTC)
    app = gateway.desk.submit(
        CLERK,
        ApplicationSpec(
            kind="share",
            applicant="sw_officer",
            dataset="social_insurance",
            fields=("id_number", "employer"),
            valid_from=submitted,
            valid_until=submitted + timedelta(days=400),
            reason="涉税核验",
            purposes=("tax_administration",),
        ),
        now=submitted,
    )
    period = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    provider = report_source(gateway.settings).listing("人社局", *period)
    assert [row[0] for row in provider.rows] == [app.id]
    assert "overdue" in provider.rows[0][-1]
    other = report_source(gateway.settings).listing("公安局", *period)
    assert other.available and other.rows == ()
