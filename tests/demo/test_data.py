"""Tests for gateway.demo.data: validity, cross-dataset consistency and determinism."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.catalog import Field
from gateway.demo.data import (
    BASE_SIZES,
    DEFAULT_SEED,
    KEY_PREFIXES,
    REFERENCE_DATE,
    DemoStore,
    Record,
    digests,
    generate,
    iter_population,
    population_record,
    record_key,
)
from gateway.errors import ConfigError
from gateway.identifiers import is_mobile, is_valid_id_number, is_valid_uscc, make_id_number

# Digit look-arounds, not \b: \b does not separate Chinese characters from digits.
ID_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])")
MOBILE_IN_TEXT = re.compile(r"(?<![0-9])1[0-9]{10}(?![0-9])")
PERSON_DATASETS = {
    "social_insurance": "name",
    "medical_visits": "name",
    "real_estate": "owner",
    "classified_cases": "suspect_name",
}
ETHNIC_GROUPS = {
    "汉", "壮", "维吾尔", "回", "苗", "满", "彝", "土家", "藏", "蒙古", "布依", "侗", "瑶", "白",
    "哈尼", "朝鲜", "黎", "哈萨克", "傣", "东乡", "傈僳", "畲", "仡佬", "拉祜", "水", "佤",
    "纳西", "羌", "土", "仫佬", "锡伯", "柯尔克孜", "景颇", "达斡尔", "撒拉", "布朗", "毛南",
    "塔吉克", "普米", "阿昌", "怒", "鄂温克", "京", "基诺", "德昂", "保安", "俄罗斯", "裕固",
    "乌孜别克", "门巴", "鄂伦春", "独龙", "赫哲", "高山", "珞巴", "塔塔尔",
}  # fmt: skip

# The SHA-256 of the first 20 records of each dataset at the default seed and scale. They
# change only when generation changes (or Faker's zh_CN word lists do, on a Faker upgrade).
# If the change is intended, run
#     .venv/bin/python -c "from gateway.demo.data import *; print(digests(generate()))"
# and paste the output here; say in the commit message why the demo data changed.
PINNED_DIGESTS = {
    "population": "0927293a75e7a4971187224ccb563bb4464a7fb416093306827f86b90d9441b1",
    "legal_entity": "62e7c59439d7bc671b46053eb76a72906976bfa01c0d855a7c0da3456b01e8c6",
    "social_insurance": "c7e49433fb8f12fb0c764145edffb98572116ca385832f5375cf9f2c131fac2b",
    "medical_visits": "4ad58f00e6bf7afb36eb2b628c50b15fefab7cc0714c91861b4165fee895a1a2",
    "real_estate": "f2698fbd8cfdb5a8481e89936baccc950a80603e1a17897b71a04ec73859c538",
    "credit_records": "a69926dd87c506d4dae84beb337787e374f18a1ac4906ef760d90d5d494e5ebf",
    "weather": "75d57c84b181d8861f06ad5f4c55c1439a11589baa09aace8d96f717a3cce05a",
    "classified_cases": "aaa7a2272777a16c308608fa8f98ab707f47a57c33897646effb0ea66c57bba5",
}


@pytest.fixture(scope="module")
def store() -> DemoStore:
    return generate()


def _all_records(store: DemoStore) -> Iterator[tuple[str, Record]]:
    for dataset, records in store.records.items():
        for record in records:
            yield dataset, record


def _store_digest(store: DemoStore) -> str:
    return hashlib.sha256(orjson.dumps({k: list(v) for k, v in store.records.items()})).hexdigest()


def _valid_id(value: str) -> bool:
    return is_valid_id_number(value, not_after=REFERENCE_DATE)


# --- shape ------------------------------------------------------------------------------------


def test_every_dataset_has_its_default_size(store: DemoStore) -> None:
    assert {ds: len(rs) for ds, rs in store.records.items()} == dict(BASE_SIZES)
    assert set(store.records) == {ds.id for ds in store.catalog}


def test_every_record_has_exactly_the_catalog_fields_in_order(store: DemoStore) -> None:
    wrong = [
        (ds, r["record_id"])
        for ds, r in _all_records(store)
        if list(r) != list(store.field_names(ds))
    ]
    assert wrong == []


def test_keys_are_sequential_with_the_dataset_prefix(store: DemoStore) -> None:
    for dataset, records in store.records.items():
        prefix = KEY_PREFIXES[dataset]
        expected = [f"{prefix}{n:08d}" for n in range(1, len(records) + 1)]
        assert [r["record_id"] for r in records] == expected
        assert record_key(dataset, 0) == f"{prefix}00000001"


def test_amounts_are_numbers_and_identifiers_and_dates_are_strings(store: DemoStore) -> None:
    numbers = {
        "registered_capital",
        "contribution_base",
        "cost",
        "area",
        "temperature",
        "humidity",
        "precipitation",
        "wind_speed",
    }
    dates = {"birth_date", "established", "insured_since", "visit_date", "decided"}
    for _, record in _all_records(store):
        for name, value in record.items():
            if name in numbers:
                assert type(value) in (int, float), (name, value)
            else:
                assert isinstance(value, str), (name, value)
            if name in dates:
                assert datetime.date.fromisoformat(value) < REFERENCE_DATE
    for record in store.records["weather"]:
        observed = datetime.datetime.fromisoformat(record["observed_at"])
        assert record["observed_at"].endswith("+08:00")
        assert observed < datetime.datetime(2026, 1, 1, tzinfo=observed.tzinfo)


def test_records_are_found_by_key_and_by_indexed_field(store: DemoStore) -> None:
    person = store.records["population"][1234]
    assert store.get("population", person["record_id"]) is person
    assert store.get("population", "P99999999") is None
    assert store.get("no_such_dataset", "P00000001") is None
    visits = store.matching(
        "medical_visits", "id_number", store.records["medical_visits"][0]["id_number"]
    )
    assert visits and all(
        store.records["medical_visits"][i]["id_number"]
        == store.records["medical_visits"][0]["id_number"]
        for i in visits
    )
    assert store.matching("legal_entity", "uscc", "not a code") == ()


# --- validity ---------------------------------------------------------------------------------


def test_every_id_number_is_valid(store: DemoStore) -> None:
    bad = [
        (ds, r["record_id"], r["id_number"])
        for ds, r in _all_records(store)
        if "id_number" in r and not _valid_id(r["id_number"])
    ]
    assert bad == []


def test_every_uscc_is_valid_and_unique(store: DemoStore) -> None:
    bad = [
        (ds, r["uscc"])
        for ds, r in _all_records(store)
        if "uscc" in r and not is_valid_uscc(r["uscc"])
    ]
    assert bad == []
    codes = [e["uscc"] for e in store.records["legal_entity"]]
    assert len(set(codes)) == len(codes)
    assert {c[:2] for c in codes} >= {"91", "12", "51"}


def test_every_mobile_is_valid_and_many_prefixes_occur(store: DemoStore) -> None:
    mobiles = [p["mobile"] for p in store.records["population"]]
    assert all(is_mobile(m) for m in mobiles)
    assert len({m[:3] for m in mobiles}) >= 40


def test_population_id_numbers_and_mobiles_are_unique(store: DemoStore) -> None:
    people = store.records["population"]
    assert len({p["id_number"] for p in people}) == len(people)
    assert len({p["mobile"] for p in people}) == len(people)


def test_gender_and_birth_date_agree_with_the_id_number(store: DemoStore) -> None:
    for person in store.records["population"]:
        number = person["id_number"]
        assert person["gender"] == ("女" if int(number[16]) % 2 == 0 else "男")
        assert person["birth_date"].replace("-", "") == number[6:14]


def test_population_id_numbers_are_what_make_id_number_builds(store: DemoStore) -> None:
    for person in store.records["population"][:2000]:
        number = person["id_number"]
        birth = datetime.date.fromisoformat(person["birth_date"])
        rebuilt = make_id_number(number[:6], birth, int(number[14:17]), person["gender"] == "女")
        assert rebuilt == number


def test_genders_are_balanced_and_beijing_births_are_common(store: DemoStore) -> None:
    people = store.records["population"]
    women = sum(p["gender"] == "女" for p in people) / len(people)
    beijing = sum(p["id_number"].startswith("11") for p in people) / len(people)
    assert 0.45 < women < 0.55
    assert 0.3 < beijing < 0.6


def test_ethnicities_are_the_56_groups_with_a_realistic_skew(store: DemoStore) -> None:
    counts = Counter(p["ethnicity"] for p in store.records["population"])
    assert {e.removesuffix("族") for e in counts} <= ETHNIC_GROUPS
    assert len(ETHNIC_GROUPS) == 56
    assert 0.85 < counts["汉族"] / sum(counts.values()) < 0.96
    assert len(counts) >= 10


def test_addresses_are_in_beijing_and_certificates_name_the_district(store: DemoStore) -> None:
    assert all(p["address"].startswith("北京市") for p in store.records["population"])
    certificate = re.compile(r"京\((20[12][0-9])\)(\w+区)不动产权第([0-9]{7})号")
    numbers = [r["certificate_no"] for r in store.records["real_estate"]]
    assert len(set(numbers)) == len(numbers)
    for record in store.records["real_estate"]:
        match = certificate.fullmatch(record["certificate_no"])
        assert match, record["certificate_no"]
        assert record["location"].startswith(f"北京市{match.group(2)}")
        assert record["area"] > 0


def test_legal_entity_region_code_matches_its_address_district(store: DemoStore) -> None:
    districts = {"110105": "朝阳区", "110108": "海淀区", "110101": "东城区"}
    checked = 0
    for entity in store.records["legal_entity"]:
        district = districts.get(entity["uscc"][2:8])
        if district:
            assert entity["address"].startswith(f"北京市{district}")
            checked += 1
    assert checked > 100


# --- cross-dataset consistency ----------------------------------------------------------------


@pytest.mark.parametrize("dataset", sorted(PERSON_DATASETS))
def test_people_in_other_datasets_exist_in_population_with_the_same_name(
    store: DemoStore, dataset: str
) -> None:
    names = {p["id_number"]: p["name"] for p in store.records["population"]}
    name_field = PERSON_DATASETS[dataset]
    strangers = [
        r["record_id"] for r in store.records[dataset] if names.get(r["id_number"]) != r[name_field]
    ]
    assert strangers == []


def test_a_social_assistance_applicant_can_be_joined_across_datasets(store: DemoStore) -> None:
    # The 民政局 低保 check: one applicant's population, social insurance and property records.
    owners = {r["id_number"] for r in store.records["real_estate"]}
    insured = {r["id_number"] for r in store.records["social_insurance"]}
    joinable = owners & insured
    assert len(joinable) > 100
    applicant = min(joinable)
    assert store.matching("population", "id_number", applicant)
    assert store.matching("social_insurance", "id_number", applicant)
    assert store.matching("real_estate", "id_number", applicant)


def test_social_insurance_holders_are_distinct_people_of_working_age_or_retired(
    store: DemoStore,
) -> None:
    numbers = [r["id_number"] for r in store.records["social_insurance"]]
    assert len(set(numbers)) == len(numbers)
    for record in store.records["social_insurance"]:
        birth = datetime.date.fromisoformat(record["id_number"][6:10] + "-01-01")
        assert REFERENCE_DATE.year - birth.year >= 16
        assert 6821 <= record["contribution_base"] <= 35283


def test_credit_records_refer_to_legal_entities_by_uscc_and_name(store: DemoStore) -> None:
    companies = {e["uscc"]: e["name"] for e in store.records["legal_entity"]}
    strangers = [
        r["record_id"]
        for r in store.records["credit_records"]
        if companies.get(r["uscc"]) != r["subject_name"]
    ]
    assert strangers == []


def test_medical_visits_happen_after_birth_and_clinics_fit_the_patient(store: DemoStore) -> None:
    people = {p["id_number"]: p for p in store.records["population"]}
    for visit in store.records["medical_visits"]:
        person = people[visit["id_number"]]
        assert person["birth_date"] <= visit["visit_date"] < REFERENCE_DATE.isoformat()
        if visit["clinic"] == "妇产科":
            assert person["gender"] == "女"


# --- free text with undeclared personal data --------------------------------------------------


def test_about_five_percent_of_notes_carry_a_valid_identifier(store: DemoStore) -> None:
    notes = [v["notes"] for v in store.records["medical_visits"]]
    carrying = [n for n in notes if ID_IN_TEXT.search(n) or MOBILE_IN_TEXT.search(n)]
    assert 0.035 < len(carrying) / len(notes) < 0.065
    for note in carrying:
        assert all(_valid_id(v) for v in ID_IN_TEXT.findall(note)), note
        assert all(is_mobile(v) for v in MOBILE_IN_TEXT.findall(note)), note
    # The others hold no digits at all, so a scanner's hits on this dataset are all real.
    assert not any(re.search("[0-9]", n) for n in notes if n not in carrying)


def test_notes_carry_both_kinds_of_identifier(store: DemoStore) -> None:
    notes = [v["notes"] for v in store.records["medical_visits"]]
    assert sum(bool(ID_IN_TEXT.search(n)) for n in notes) > 20
    assert sum(bool(MOBILE_IN_TEXT.search(n)) for n in notes) > 20


def test_classified_summaries_name_the_suspect(store: DemoStore) -> None:
    for case in store.records["classified_cases"]:
        assert case["suspect_name"] in case["summary"]
        assert ID_IN_TEXT.findall(case["summary"]) == [case["id_number"]]


# --- determinism ------------------------------------------------------------------------------


def test_generating_twice_gives_the_same_records(store: DemoStore) -> None:
    assert _store_digest(generate()) == _store_digest(store)


def test_another_seed_gives_other_records(store: DemoStore) -> None:
    other = generate(seed=DEFAULT_SEED + 1, scale=0.1)
    assert other.records["population"][0] != store.records["population"][0]
    assert other.records["legal_entity"][0] != store.records["legal_entity"][0]


def test_the_first_records_match_the_pinned_digests(store: DemoStore) -> None:
    assert digests(store) == PINNED_DIGESTS, (
        "演示数据已变化 (demo data changed); if intended, update PINNED_DIGESTS to "
        f"{digests(store)}"
    )


def test_stored_population_is_the_on_the_fly_population(store: DemoStore) -> None:
    people = store.records["population"]
    assert list(iter_population(0, len(people))) == list(people)
    assert population_record(4321) == people[4321]


def test_scale_multiplies_every_dataset_and_keeps_population_prefix(store: DemoStore) -> None:
    small = generate(scale=0.05)
    assert {ds: len(rs) for ds, rs in small.records.items()} == {
        ds: max(1, round(n * 0.05)) for ds, n in BASE_SIZES.items()
    }
    assert list(small.records["population"]) == list(store.records["population"][:500])


@pytest.mark.parametrize(
    "scale",
    [0, -1, float("nan"), float("inf")],
    ids=[
        "when scale is zero then it raises",
        "when scale is negative then it raises",
        "when scale is NaN then it raises",
        "when scale is infinite then it raises",
    ],
)
def test_generate_rejects_a_bad_scale(scale: float) -> None:
    with pytest.raises(ValueError):
        generate(scale=scale)


def test_when_the_catalog_fields_change_then_generation_refuses(store: DemoStore) -> None:
    weather = store.catalog["weather"]
    renamed = dataclasses.replace(
        weather, fields=(*weather.fields[:-1], Field("wind", "风速", "public"))
    )
    catalog = dataclasses.replace(
        store.catalog, datasets={**store.catalog.datasets, "weather": renamed}
    )
    with pytest.raises(ConfigError, match="weather"):
        generate(scale=0.01, catalog=catalog)


# --- population on the fly --------------------------------------------------------------------


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_distinct_population_indices_get_distinct_people(a: int, b: int) -> None:
    first, second = population_record(a), population_record(b)
    assert _valid_id(first["id_number"])
    assert is_mobile(first["mobile"])
    assert first["record_id"] == f"P{a + 1:08d}"
    if a != b:
        assert first["id_number"] != second["id_number"]
        assert first["mobile"] != second["mobile"]


def test_population_far_beyond_the_store_is_valid_and_unique() -> None:
    people = list(iter_population(10_000_000 - 2_000, 10_000_000))
    assert len({p["id_number"] for p in people}) == 2_000
    assert all(_valid_id(p["id_number"]) for p in people)
    assert people[-1]["record_id"] == "P10000000"


@pytest.mark.parametrize(
    ("start", "stop"),
    [(-1, 5), (5, 4), (0, 10**12)],
    ids=[
        "when the range starts below zero then it raises",
        "when the range ends before it starts then it raises",
        "when the range exceeds the space of distinct ID numbers then it raises",
    ],
)
def test_iter_population_rejects_a_bad_range(start: int, stop: int) -> None:
    with pytest.raises(ValueError):
        next(iter_population(start, stop))


def test_population_record_rejects_a_negative_index() -> None:
    with pytest.raises(ValueError):
        population_record(-1)
