"""The shaper's generated record function: it delivers exactly what shaping field by field does."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.catalog import Dataset, load_catalog
from gateway.demo.data import DemoStore, generate
from gateway.keys import KeyRing
from gateway.policy.obligations import Obligations
from gateway.settings import REPO_ROOT
from gateway.shaping import Shaper, ShaperFactory, load_masking
from gateway.shaping.shaper import KeepStep

POLICIES = REPO_ROOT / "policies"
CATALOG = load_catalog(POLICIES / "catalog.toml")
POLICY = load_masking(POLICIES / "masking.toml", CATALOG)
TODAY = datetime.date(2026, 1, 1)
ID = "11010519870605123X"
COMBINATIONS = [(p, ds.id) for p in sorted(POLICY.profiles) for ds in CATALOG]
# Field names that would break, or run, code they were pasted into.
ODD_NAMES = (
    'quote"d',
    "it's",
    "line\nbreak",
    "back\\slash",
    "}{",
    "",
    " ",
    "__import__('os').system('exit 3')",
    "f0; raise SystemExit",
    "n0",
    "v0",
    "record",
    "generic",
    "姓名",
    "nul\x00",
)


@functools.cache
def factory() -> ShaperFactory:
    # One key ring for the module: pseudonyms must match between the two shapers compared.
    return ShaperFactory(POLICY, KeyRing(Path(tempfile.mkdtemp(prefix="shaper-test-"))))


@functools.cache
def store() -> DemoStore:
    return generate(scale=0.01)


def shapers(profile: str, dataset: Dataset, fields: frozenset[str] | None = None) -> list[Shaper]:
    """Two shapers on one cached plan: one to run generated, one field by field."""
    obligations = Obligations(dataset.field_names if fields is None else fields)
    return [
        factory().shaper(dataset, obligations, POLICY.profiles[profile], "统计局", TODAY)
        for _ in range(2)
    ]


def outcome(shaper: Shaper, shape: Any, records: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What leaves, in order, with what the audit learns: found types and undeclared fields."""
    try:
        delivered: Any = [list(shape(r).items()) for r in records]
    except Exception as exc:  # an odd value may make an operator refuse: the same way
        delivered = ("refused", type(exc).__name__, str(exc))
    return delivered, dict(shaper.found), sorted(shaper.dropped_fields)


def assert_same(fast: Shaper, reference: Shaper, records: list[dict[str, Any]]) -> None:
    assert outcome(fast, fast.shape, records) == outcome(reference, reference.shape_steps, records)


@pytest.mark.parametrize(("profile", "dataset"), COMBINATIONS)
def test_every_profile_delivers_demo_records_as_field_by_field_shaping_does(
    profile: str, dataset: str
) -> None:
    ds = CATALOG[dataset]
    records = [dict(r) for r in store().records[dataset]]
    # Some records lack a field, some carry one the catalog does not declare.
    for i, r in enumerate(list(records)):
        if i % 3 == 1:
            r.pop(ds.fields[i % len(ds.fields)].name, None)
        if i % 3 == 2:
            r[f"upstream_extra_{i % 2}"] = f"联系电话13812345678 {i}"
    fast, reference = shapers(profile, ds)
    assert fast.shape is not fast.shape_steps
    assert_same(fast, reference, records)


# Values at the scanner's edges: the shortest of their type, numbers, nesting, free text.
TRICKY = (
    "a@b.cn",
    "京A12345",
    "13812345678",
    ID,
    f"家属身份证号{ID}，电话13812345678",
    "联系人张三",
    '{"phone": "13812345678"}',
    "男",
    "",
    None,
    13812345678,
    13812345678.0,
    [ID],
    {"phone": "13812345678"},
    # Longer than the scanner's cache of short strings, with an ID well inside.
    "办理记录：" + "申请人已到窗口提交材料并核对信息。" * 5 + f"其身份证号为{ID}，已核验。",
)


@pytest.mark.parametrize(("profile", "dataset"), COMBINATIONS)
def test_every_field_holding_a_value_at_the_scanners_edges_is_shaped_as_field_by_field(
    profile: str, dataset: str
) -> None:
    ds = CATALOG[dataset]
    fast, reference = shapers(profile, ds)
    for value in TRICKY:
        assert_same(fast, reference, [{f.name: value for f in ds.fields}])


_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            ID,
            "13812345678",
            "138 1234 5678",
            f"家属身份证号{ID}，电话13812345678",
            '{"phone": "13812345678"}',
            "[1, 13812345678]",
            "联系电话１３８１２３４５６７８",
            "zhang@example.cn",
            "a@b.cn",
            "京A12345",
            "E12345678",
            "91110000600037341L",
            "6222020200112233445",
            "联系人张三",
            "2012-07-01",
            "1987-06-05",
            "北京市朝阳区望京西路1号",
            "正常参保",
            "男",
        ]
    ),
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**19), max_value=10**19),
    st.sampled_from([13812345678, 13812345678.0, 722.0, 722.1, -13812345678]),
    st.floats(allow_nan=False),
    _TEXT,
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def case(draw: st.DrawFn) -> tuple[str, Dataset, frozenset[str], list[dict[str, Any]]]:
    profile, dataset = draw(st.sampled_from(COMBINATIONS))
    ds = CATALOG[dataset]
    names = [f.name for f in ds.fields]
    granted = frozenset(draw(st.lists(st.sampled_from(names), unique=True, min_size=1)))
    records = []
    for _ in range(draw(st.integers(1, 4))):
        record = {
            name: draw(_VALUE)
            for name in draw(st.lists(st.sampled_from(names), unique=True, min_size=0))
        }
        if draw(st.booleans()):
            record.update(draw(st.dictionaries(st.text(max_size=8), _VALUE, max_size=2)))
        records.append(record)
    return profile, ds, granted, records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_any_record_under_any_profile_is_shaped_as_field_by_field(
    drawn: tuple[str, Dataset, frozenset[str], list[dict[str, Any]]],
) -> None:
    profile, ds, granted, records = drawn
    fast, reference = shapers(profile, ds, granted)
    assert_same(fast, reference, records)


def odd_dataset() -> Dataset:
    population = CATALOG["population"]
    # The population fields (a mix of kept, masked, pseudonymised and dropped ones) under odd
    # names; the qualified per-field rules of the profiles do not apply to this dataset.
    fields = tuple(
        dataclasses.replace(f, name=name)
        for f, name in zip(itertools.cycle(population.fields), ODD_NAMES, strict=False)
    )
    return dataclasses.replace(
        population, id="odd", fields=fields, field_names=frozenset(f.name for f in fields)
    )


@pytest.mark.parametrize("profile", sorted(POLICY.profiles))
def test_when_field_names_look_like_code_then_they_are_only_ever_data(profile: str) -> None:
    ds = odd_dataset()
    person = store().records["population"][0]
    values = list(person.values())
    record = {f.name: values[i % len(values)] for i, f in enumerate(ds.fields)}
    fast, reference = shapers(profile, ds)
    assert_same(fast, reference, [record, {**record, "extra'\n": 1}, {"": record.get("")}])
    delivered = fast.shape(record)
    assert set(delivered) == {p.name for p in fast.plan.fields}
    # The generated code holds no field name: they reach it as values.
    code = fast.shape.__code__
    written = {*code.co_consts, *code.co_names, *code.co_varnames, *code.co_freevars}
    assert not written & {n for n in ODD_NAMES if not n.isidentifier()}


def test_a_field_named_as_a_catalog_field_elsewhere_is_not_mixed_up() -> None:
    # Fields are read by position in the plan, not by a name written into the code: two plans
    # of the same shape share one generated function and still read their own fields.
    population = CATALOG["population"]
    fast, _ = shapers("statistics", population)
    renamed = dataclasses.replace(
        population,
        id="renamed",
        fields=tuple(dataclasses.replace(f, name=f.name + "_2") for f in population.fields),
        field_names=frozenset(f.name + "_2" for f in population.fields),
    )
    other, reference = shapers("statistics", renamed)
    assert fast.shape.__code__ is other.shape.__code__
    record = dict(store().records["population"][0])
    moved = {k + "_2": v for k, v in record.items()}
    assert list(other.shape(moved)) == [k + "_2" for k in fast.shape(record)]
    assert_same(other, reference, [moved])


def test_when_a_record_lacks_a_field_or_carries_an_undeclared_one_then_the_audit_hears_of_it() -> (
    None
):
    population = CATALOG["population"]
    fast, _ = shapers("statistics", population)
    record = dict(store().records["population"][0])
    record.pop("address")
    record["smuggled"] = ID
    delivered = fast.shape(record)
    assert "address" not in delivered and "smuggled" not in delivered
    assert ID not in str(delivered)
    assert fast.dropped_fields == {"smuggled"}


@pytest.mark.parametrize(("profile", "dataset"), COMBINATIONS)
def test_each_kept_field_skips_only_strings_shorter_than_the_scanner_could_read(
    profile: str, dataset: str
) -> None:
    # The generated function and the field-by-field path both read `shortest` from the plan, so
    # comparing them cannot catch a wrong one: check it against the scanner itself.
    fast, _ = shapers(profile, CATALOG[dataset])
    scanner = fast.plan.scanner
    for _, step in fast.plan.steps:
        if isinstance(step, KeepStep):
            assert step.shortest == scanner.min_length(step.only, step.free_text)


def test_a_name_after_a_role_word_in_free_text_is_masked_however_short() -> None:
    fast, reference = shapers("health", CATALOG["medical_visits"])
    record = {f.name: None for f in CATALOG["medical_visits"].fields} | {"notes": "家属张三"}
    for shape in (fast.shape, reference.shape_steps):
        assert shape(record)["notes"] == "家属张*"


def test_when_no_delivered_field_is_left_then_records_leave_empty_and_the_rest_is_noted() -> None:
    population = CATALOG["population"]
    # Fields the statistics profile drops: nothing of them may leave.
    dropped = frozenset({"name", "mobile"})
    fast, reference = shapers("statistics", population, dropped)
    assert fast.plan.steps == ()
    record = dict(store().records["population"][0]) | {"smuggled": ID}
    assert fast.shape(record) == {} == reference.shape_steps(record)
    assert fast.dropped_fields == {"smuggled"}


def test_the_recipients_keys_are_kept_no_longer_than_the_plans_that_use_them() -> None:
    import gateway.shaping.shaper as shaper_module

    made = factory()
    first = made.pseudonym_key("recipient-0", "population", 1)
    assert made.pseudonym_key("recipient-0", "population", 1) is first  # derived once
    for n in range(1, shaper_module.PLAN_CACHE_SIZE + 100):
        made.pseudonym_key(f"recipient-{n}", "population", 1)
    assert made.pseudonym_key.cache_info().currsize == shaper_module.PLAN_CACHE_SIZE  # type: ignore[attr-defined]
    again = made.pseudonym_key("recipient-0", "population", 1)
    assert again is not first  # derived again, and the same key
    assert again.token("11010519491231002X") == first.token("11010519491231002X")


def test_a_kept_string_worth_reading_is_prefiltered_once_on_either_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gateway.shaping.scanner as scanner_module

    dataset = CATALOG["population"]
    fast, reference = shapers("administration", dataset)
    kept = [
        name
        for name, step in fast.plan.steps
        if isinstance(step, KeepStep) and not step.free_text and step.only is None
    ]
    assert kept, "the administration profile keeps a scanned text field of population"
    calls: list[str] = []
    prefilter = scanner_module._PREFILTER

    class Counting:
        def search(self, text: str) -> object:
            calls.append(text)
            return prefilter.search(text)

    monkeypatch.setattr(scanner_module, "_PREFILTER", Counting())
    value = "请联系家属，电话 13812345678，工作日九点后拨打"  # longer than any remembered value
    record = {f.name: None for f in dataset.fields} | {kept[0]: value}
    for shape in (fast.shape, reference.shape_steps):
        calls.clear()
        assert "13812345678" not in str(shape(record)[kept[0]])
        assert calls.count(value) == 1, calls
