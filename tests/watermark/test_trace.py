"""Tracing leaks made from served responses: the robustness suite at test size, and no false accusations."""

from __future__ import annotations

import itertools
import math
import random
import zlib

import pytest

from bench import leaks
from gateway.watermark.trace import log10_weighted_tail
from gateway.watermark.tracing import ALERT_THRESHOLD
from tests.watermark.conftest import World

PSEUDONYMS = "统计局 population (pseudonyms)"
PLAIN = "民政局 population"  # no pseudonymised field: the fingerprint carries it


def test_one_leaked_record_with_a_pseudonymised_field_names_its_request_below_1e_9(
    world: World,
) -> None:
    served = world.served[PSEUDONYMS]
    result = world.tracer.trace(leaks.leak(served, 1, "JSON → CSV → XLSX", random.Random(1)))
    top = result.candidates[0]
    assert top.entry.request_id == served.request_id and top.entry.recipient == "统计局"
    assert top.probability < 1e-9
    assert [e.layer for e in top.evidence] == ["pseudonym"]


def test_200_leaked_records_without_pseudonyms_name_their_request_below_1e_9(world: World) -> None:
    served = world.served[PLAIN]
    result = world.tracer.trace(leaks.leak(served, 200, "JSON → CSV → XLSX", random.Random(2)))
    top = result.candidates[0]
    assert top.entry.request_id == served.request_id and top.probability < 1e-9
    assert {e.layer for e in top.evidence} == {"fingerprint"}
    assert [c.entry.request_id for c in result.candidates] == [served.request_id]
    # The people whose records were in the matched response, from the audit log.
    assert len(result.affected_subjects) == 1000 and top.subjects == 1000


@pytest.mark.parametrize("transform", list(leaks.TRANSFORMS))
@pytest.mark.parametrize("name", [PSEUDONYMS, PLAIN, "公众 weather", "统计局 legal_entity"])
def test_when_a_20_percent_leak_is_transformed_then_the_right_request_is_still_first(
    world: World, name: str, transform: str
) -> None:
    served = world.served[name]
    table = leaks.leak(
        served, 200, transform, random.Random(zlib.crc32(f"{name}|{transform}".encode()))
    )
    result = world.tracer.trace(table)
    assert result.candidates, "nothing traced"
    top = result.candidates[0]
    assert top.entry.request_id == served.request_id
    assert top.probability < 1e-9


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (PLAIN, "税务局 population"),
        (PSEUDONYMS, PLAIN),
        ("统计局 legal_entity", "税务局 legal_entity"),
    ],
)
def test_when_two_recipients_extracts_are_merged_then_both_are_named(
    world: World, first: str, second: str
) -> None:
    a, b = world.served[first], world.served[second]
    result = world.tracer.trace(leaks.merged(a, b, 400, random.Random(3)))
    named = {c.entry.request_id: c for c in result.candidates}
    assert a.request_id in named and b.request_id in named
    assert named[a.request_id].entry.recipient != named[b.request_id].entry.recipient
    # Both traced (the alert is raised). Not held to 1e-9: half the rows are fair coins to each
    # response's code word, and the evidence is counted per code-word position (at most 128),
    # so 200 rows of each in 400 give about 1e-15, and now and then only 1e-9.
    assert all(c.probability < ALERT_THRESHOLD for c in named.values())
    assert len(named) == 2


def test_when_extracts_were_never_served_or_were_stripped_then_no_one_is_accused(
    world: World,
) -> None:
    rng = random.Random(4)
    lowest = 1.0
    served = list(world.served.values())
    for i in range(40):
        s = served[i % len(served)]
        for table in (leaks.fresh_extract(s, 120, rng), leaks.strip_marks(s, 120, rng)):
            for candidate in world.tracer.trace(table).candidates:
                lowest = min(lowest, candidate.probability)
    assert lowest >= 1e-6


def test_a_leak_without_its_only_carrier_column_claims_nothing_false(world: World) -> None:
    # legal_entity carries the fingerprint in its address alone: drop it, and only a decoy row
    # that happens to be in the leak can still speak; nothing else may be named.
    served = world.served["统计局 legal_entity"]
    raw = {r["record_id"] for r in served.raw}
    real = [r for r in served.records if r["record_id"] in raw]
    leaked = [{k: v for k, v in r.items() if k != "address"} for r in real[:300]]
    result = world.tracer.trace(leaks.table_of(leaked, "csv"))
    assert all(c.entry.request_id == served.request_id for c in result.candidates)
    assert all(e.layer != "fingerprint" for c in result.candidates for e in c.evidence)
    with_address = leaks.table_of(real[:300], "csv")
    assert world.tracer.trace(with_address).candidates[0].entry.request_id == served.request_id


def test_invisible_marks_alone_name_the_response(world: World) -> None:
    served = world.served["卫健委 medical_visits"]
    with_notes = [r for r in served.records if r.get("notes")]
    table = leaks.table_of(with_notes[:1], "txt")
    result = world.tracer.trace(table, layers=("invisible",))
    assert result.candidates[0].entry.request_id == served.request_id
    assert result.candidates[0].probability < 1e-9


def test_a_decoy_row_names_the_response_it_was_made_for(world: World) -> None:
    served = world.served["统计局 legal_entity"]
    raw = {r["record_id"] for r in served.raw}
    decoys = [r for r in served.records if r["record_id"] not in raw]
    assert decoys, "statistics responses of 1,000 records get decoys"
    result = world.tracer.trace(leaks.table_of(decoys[:1], "csv"), layers=("decoy",))
    assert result.candidates[0].entry.request_id == served.request_id
    assert result.candidates[0].probability < 1e-9


def test_the_weighted_tail_is_exact_where_it_can_be_checked_by_hand() -> None:
    # Unit weights: the binomial tail.
    assert log10_weighted_tail([1] * 10, 10) == pytest.approx(-10 * math.log10(2))
    assert log10_weighted_tail([1] * 3, 2) == pytest.approx(math.log10(0.5))
    assert log10_weighted_tail([1] * 100, 0) == 0.0
    assert log10_weighted_tail([1] * 5, 6) == -math.inf
    # Weights 3, 1, 1 (and a tie, weighing nothing): sums ≥ 4 are {3+1, 3+1, 3+1+1} of 8.
    assert log10_weighted_tail([3, 1, 1, 0], 4) == pytest.approx(math.log10(3 / 8))
    # 128 positions all agreeing: 2^-128, however many votes each position had.
    assert log10_weighted_tail([64] * 128, 64 * 128) == pytest.approx(-128 * math.log10(2))


def test_the_weighted_tail_matches_counting_every_subset() -> None:
    rng = random.Random(5)
    for _ in range(100):
        weights = [rng.randrange(0, 7) for _ in range(rng.randrange(1, 11))]
        score = rng.randrange(0, sum(weights) + 2)
        hits = sum(
            1
            for bits in itertools.product((0, 1), repeat=len(weights))
            if sum(w * b for w, b in zip(weights, bits, strict=True)) >= score
        )
        expected = math.log10(hits / 2 ** len(weights)) if hits else -math.inf
        assert log10_weighted_tail(weights, score) == pytest.approx(expected), weights
