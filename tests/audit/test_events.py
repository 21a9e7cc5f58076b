"""The event's document: its timestamp text (the journal compares `ts` as text, so every shape
must match), its personal-data counts from any mapping, and nothing shared between documents
that one could change for another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit.events import _iso
from tests.factories import access_event

ZONES = st.sampled_from(
    [
        UTC,
        None,
        timezone(timedelta(hours=8)),
        timezone(timedelta(hours=-3.5)),
        timezone(timedelta(seconds=30)),  # orjson would write +00:01
        timezone(timedelta(microseconds=1)),  # and Z
    ]
)


@given(st.datetimes(timezones=ZONES))
def test_the_timestamp_text_is_always_isoformat_with_microseconds_and_z(moment: datetime) -> None:
    expected = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert _iso(moment) == expected


def test_a_whole_second_keeps_its_zero_fraction() -> None:
    moment = datetime(2026, 11, 21, 8, 0, 0, tzinfo=UTC)
    assert _iso(moment) == "2026-11-21T08:00:00.000000Z"
    assert _iso(moment.replace(microsecond=5)) == "2026-11-21T08:00:00.000005Z"


def test_undeclared_counts_in_any_mapping_serialize_as_from_a_dict() -> None:
    counts = {"mobile": 2, "email": 1}
    as_dict = orjson.loads(orjson.dumps(access_event(1, undeclared=counts).to_document()))
    proxied = access_event(1, undeclared=MappingProxyType(counts)).to_document()
    assert orjson.loads(orjson.dumps(proxied)) == as_dict
    assert as_dict["shareguard"]["undeclared_personal_data"] == {"total": 3, "by_type": counts}


def test_documents_share_nothing_that_can_be_changed() -> None:
    first, second = access_event(1).to_document(), access_event(2).to_document()
    first["ecs"]["version"] = "changed"
    first["shareguard"]["undeclared_personal_data"]["by_type"]["mobile"] = 1
    assert second["ecs"] == {"version": "8.11.0"}
    assert second["shareguard"]["undeclared_personal_data"]["by_type"] == {}
