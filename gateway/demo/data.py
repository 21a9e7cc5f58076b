"""Synthetic, deterministic records for the eight demo datasets of the exchange platform.

Everything is drawn from fixed seeds against a fixed reference date, so every machine and every
run produces the same records. Population records are a pure function of their index (see
`population_record`), which lets the platform stream exports far larger than what it stores;
the other datasets are drawn once with `random.Random` and refer to population people and
legal-entity companies, so cross-dataset joins on id_number and uscc work as they do in life.

Names and company-name stems come from Faker's zh_CN data through a seeded Faker instance;
addresses are built from a table of Beijing districts and roads instead of Faker's, because
Faker's zh_CN addresses mix provinces and cities at random and the district of an address
must agree with its 不动产权证号 and the region code of a 统一社会信用代码.
"""

from __future__ import annotations

import bisect
import datetime
import functools
import hashlib
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
from faker import Faker
from faker.providers.ssn.zh_CN import Provider as _SsnProvider

from gateway.catalog import Catalog, load_catalog
from gateway.errors import ConfigError
from gateway.identifiers import (
    MOBILE_PREFIXES,
    id_number_check_char,
    make_id_number,
    make_mobile,
    make_uscc,
)

__all__ = [
    "BASE_SIZES",
    "DEFAULT_CATALOG_PATH",
    "DEFAULT_SEED",
    "INDEXED_FIELDS",
    "KEY_PREFIXES",
    "REFERENCE_DATE",
    "DemoStore",
    "Record",
    "digests",
    "generate",
    "iter_population",
    "population_record",
    "record_key",
]

Record = dict[str, Any]

REFERENCE_DATE = datetime.date(2026, 1, 1)  # "today" for the demo; never date.today()
DEFAULT_SEED = 20260101
DEFAULT_CATALOG_PATH = Path(__file__).resolve().parents[2] / "policies" / "catalog.toml"

BASE_SIZES: Mapping[str, int] = MappingProxyType(
    {
        "population": 10_000,
        "legal_entity": 2_000,
        "social_insurance": 6_000,
        "medical_visits": 5_000,
        "real_estate": 3_000,
        "credit_records": 500,
        "weather": 2_000,
        "classified_cases": 50,
    }
)
# Sequential keys are deliberate: a gateway detector looks for sequential key probing.
KEY_PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "population": "P",
        "legal_entity": "E",
        "social_insurance": "S",
        "medical_visits": "M",
        "real_estate": "R",
        "credit_records": "C",
        "weather": "W",
        "classified_cases": "X",
    }
)
# Fields the platform can filter on exactly (a caseworker looks up one applicant).
INDEXED_FIELDS = ("id_number", "uscc")


def record_key(dataset: str, index: int) -> str:
    """The key of the record at 0-based `index`: P00000001 is the first population record."""
    return f"{KEY_PREFIXES[dataset]}{index + 1:08d}"


# ---------------------------------------------------------------------------------------------
# Reference tables
# ---------------------------------------------------------------------------------------------


class _District(NamedTuple):
    name: str
    code: str  # GB/T 2260
    weight: int  # resident population, 万人 (2020 census, rounded)
    roads: tuple[str, ...]


_DISTRICTS = (
    _District("东城区", "110101", 71, ("东直门内大街", "朝阳门北大街", "东四十条", "和平里东街")),
    _District(
        "西城区", "110102", 111, ("西直门外大街", "阜成门内大街", "德胜门外大街", "月坛北街")
    ),
    _District("朝阳区", "110105", 345, ("望京西路", "朝阳北路", "建国路", "劲松路", "安立路")),
    _District("丰台区", "110106", 202, ("丰台北路", "方庄路", "马家堡西路", "卢沟桥路")),
    _District("石景山区", "110107", 57, ("鲁谷路", "石景山路", "八角西街", "古城大街")),
    _District("海淀区", "110108", 313, ("中关村大街", "学院路", "万寿路", "上地西路", "清河中街")),
    _District("门头沟区", "110109", 39, ("新桥大街", "滨河路", "石龙路", "黑山大街")),
    _District("房山区", "110111", 131, ("拱辰大街", "长虹西路", "良乡西路", "迎风街")),
    _District("通州区", "110112", 184, ("新华大街", "通胡大街", "玉带河东街", "梨园北街")),
    _District("顺义区", "110113", 132, ("府前东街", "新顺南大街", "站前街", "仁和路")),
    _District("昌平区", "110114", 227, ("回龙观西大街", "政府街", "鼓楼南街", "北清路")),
    _District("大兴区", "110115", 199, ("兴华大街", "黄村西大街", "荣华中路", "旧宫东路")),
    _District("怀柔区", "110116", 44, ("青春路", "府前街", "迎宾路", "开放路")),
    _District("平谷区", "110117", 46, ("府前街", "新平北路", "林荫北街", "平翔路")),
    _District("密云区", "110118", 53, ("鼓楼大街", "新中街", "滨河路", "檀营路")),
    _District("延庆区", "110119", 35, ("妫水北街", "高塔街", "东外大街", "湖南路")),
)
_DISTRICT_CUMULATIVE = tuple(
    sum(d.weight for d in _DISTRICTS[: i + 1]) for i in range(len(_DISTRICTS))
)

# 民族: the 56 recognised ethnic groups with their 2020 census population in 千人 (rounded),
# so draws follow the real skew (汉族 about 91%) and every group can still occur.
_ETHNICITIES = (
    ("汉族", 1_286_310), ("壮族", 19_569), ("维吾尔族", 11_774), ("回族", 11_377),
    ("苗族", 11_067), ("满族", 10_423), ("彝族", 9_830), ("土家族", 9_588), ("藏族", 7_060),
    ("蒙古族", 6_290), ("布依族", 3_577), ("侗族", 3_495), ("瑶族", 3_309), ("白族", 2_091),
    ("哈尼族", 1_733), ("朝鲜族", 1_702), ("黎族", 1_602), ("哈萨克族", 1_562), ("傣族", 1_330),
    ("东乡族", 775), ("傈僳族", 762), ("畲族", 746), ("仡佬族", 677), ("拉祜族", 500),
    ("水族", 496), ("佤族", 431), ("纳西族", 323), ("羌族", 313), ("土族", 282),
    ("仫佬族", 278), ("锡伯族", 192), ("柯尔克孜族", 204), ("景颇族", 160), ("达斡尔族", 132),
    ("撒拉族", 165), ("布朗族", 127), ("毛南族", 124), ("塔吉克族", 50), ("普米族", 45),
    ("阿昌族", 44), ("怒族", 37), ("鄂温克族", 34), ("京族", 33), ("基诺族", 26),
    ("德昂族", 22), ("保安族", 24), ("俄罗斯族", 16), ("裕固族", 15), ("乌孜别克族", 13),
    ("门巴族", 11), ("鄂伦春族", 9), ("独龙族", 7), ("赫哲族", 5), ("高山族", 4),
    ("珞巴族", 4), ("塔塔尔族", 4),
)  # fmt: skip
_ETHNICITY_NAMES = tuple(name for name, _ in _ETHNICITIES)
_ETHNICITY_CUMULATIVE = tuple(
    sum(n for _, n in _ETHNICITIES[: i + 1]) for i in range(len(_ETHNICITIES))
)

# Birthplace area codes for ID numbers: county-level codes (not ending in 00) from Faker's
# zh_CN table, plus Beijing's two districts created in 2015 that the table predates.
_BEIJING_BIRTH_CODES = tuple(
    sorted(
        {c for c in _SsnProvider.area_codes if c.startswith("11") and not c.endswith("00")}
        | {"110118", "110119"}
    )
)
_OTHER_BIRTH_CODES = tuple(
    c for c in _SsnProvider.area_codes if not c.startswith("11") and not c.endswith("00")
)
# The (birthplace, 顺序码) pairs: every sequence number for Beijing codes but only eight for
# each other county, so about 40% of residents are Beijing-born, as in a Beijing register.
_SEQ_PER_OTHER_CODE = 8
_BEIJING_PAIRS = len(_BEIJING_BIRTH_CODES) * 1000
_ID_PAIRS = _BEIJING_PAIRS + len(_OTHER_BIRTH_CODES) * _SEQ_PER_OTHER_CODE
_OLDEST_BIRTH = datetime.date(1936, 1, 1)
_BIRTH_DAYS = (REFERENCE_DATE - _OLDEST_BIRTH).days  # ages 0-89, uniform
_ID_SPACE = _ID_PAIRS * _BIRTH_DAYS  # population indices below this get distinct ID numbers

_MOBILE_PREFIX_LIST = tuple(sorted(MOBILE_PREFIXES))
_MOBILE_SPACE = len(_MOBILE_PREFIX_LIST) * 10**8

_NAME_POOL_SIZE = 2048

_INDUSTRIES = (
    "科技", "信息技术", "商贸", "建筑工程", "餐饮管理", "物业管理", "文化传媒", "医药",
    "物流", "教育咨询", "环保科技", "房地产开发", "汽车销售", "农业发展", "电子", "机械设备",
    "食品", "服装", "广告", "人力资源服务", "软件", "生物技术", "装饰工程", "旅游",
    "家政服务", "网络科技", "供应链管理", "新能源", "投资管理", "劳务派遣",
)  # fmt: skip
_BRAND_CHARS = "华鑫泰创瑞博恒盛达远嘉信通汇联中天宏安兴德新金昌源合润晟益聚"
_PUBLIC_INSTITUTIONS = (
    "青少年活动中心", "档案馆", "信息中心", "政务服务中心", "职业技能鉴定中心", "文化馆",
    "体育运动学校", "社区卫生服务中心", "劳动保障事务所", "环境监测站", "图书馆",
    "疾病预防控制中心",
)  # fmt: skip
_ASSOCIATIONS = (
    "餐饮行业协会", "个体劳动者协会", "物业管理协会", "软件行业协会", "书法家协会",
    "摄影家协会", "老年人体育协会", "家政服务协会", "养老服务协会", "建筑业协会",
    "志愿者协会", "残疾人福利基金会",
)  # fmt: skip

_HOSPITALS = (
    "北京协和医院", "北京大学第一医院", "北京大学人民医院", "北京大学第三医院",
    "首都医科大学附属北京朝阳医院", "首都医科大学宣武医院", "首都医科大学附属北京友谊医院",
    "首都医科大学附属北京天坛医院", "中日友好医院", "北京积水潭医院", "北京市海淀医院",
    "北京市丰台区铁营医院", "北京市通州区中西医结合医院", "北京市昌平区医院",
    "北京市大兴区人民医院", "北京市朝阳区双井社区卫生服务中心",
)  # fmt: skip
# 科室 → common diagnoses, so the two agree; 儿科 and 妇产科 are only drawn where they fit.
_CLINICS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "内科": ("原发性高血压", "2型糖尿病", "急性上呼吸道感染", "急性支气管炎", "慢性胃炎"),
        "外科": ("急性阑尾炎", "腹股沟疝", "胆囊结石", "软组织挫伤"),
        "儿科": ("小儿急性上呼吸道感染", "小儿支气管肺炎", "手足口病", "小儿腹泻"),
        "妇产科": ("早孕", "子宫肌瘤", "慢性盆腔炎"),
        "眼科": ("老年性白内障", "屈光不正", "急性结膜炎"),
        "口腔科": ("龋齿", "慢性牙周炎"),
        "骨科": ("腰椎间盘突出症", "膝关节骨性关节炎", "桡骨远端骨折"),
        "皮肤科": ("湿疹", "荨麻疹", "痤疮"),
        "耳鼻喉科": ("过敏性鼻炎", "慢性咽炎"),
        "神经内科": ("偏头痛", "脑梗死", "失眠"),
        "心内科": ("冠状动脉粥样硬化性心脏病", "心律失常", "高脂血症"),
        "精神心理科": ("抑郁状态", "焦虑障碍"),
    }
)
_ADULT_CLINICS = tuple(c for c in _CLINICS if c not in ("儿科", "妇产科"))
_ROUTINE_NOTES = (
    "患者自述症状三天，予对症治疗，嘱一周后复诊。",
    "建议低盐低脂饮食，规律服药，定期监测血压。",
    "血常规未见明显异常，继续观察。",
    "已开具处方，嘱按时服药，如症状加重及时就诊。",
    "门诊随访，病情稳定，维持原治疗方案。",
    "完善相关检查后择期复诊。",
    "患者对治疗方案知情并同意。",
    "",
)
# Where undeclared personal data turns up in the wild: a relative's phone or ID number typed
# into free text. About NOTES_WITH_IDENTIFIERS of the notes carry one, always a valid value.
NOTES_WITH_IDENTIFIERS = 0.05

_CREDIT_TYPES = (
    ("失信被执行人", "court"),
    ("重大税收违法失信主体", "国家税务总局北京市税务局"),
    ("拖欠农民工工资失信联合惩戒对象", "北京市人力资源和社会保障局"),
    ("严重违法失信名单", "北京市市场监督管理局"),
    ("政府采购严重违法失信行为记录", "北京市财政局"),
    ("安全生产失信联合惩戒对象", "北京市应急管理局"),
    ("经营异常名录", "district_market"),
)

_WEATHER_STATIONS = (
    ("北京南郊观象台(54511)", 0.0),
    ("海淀(54399)", -0.3),
    ("朝阳(54433)", 0.2),
    ("丰台(54514)", 0.1),
    ("通州(54431)", -0.5),
    ("顺义(54398)", -0.8),
    ("昌平(54499)", -1.0),
    ("门头沟(54505)", -1.5),
    ("密云(54416)", -2.2),
    ("延庆(54406)", -3.5),
)

_CASE_TITLES = (
    "涉嫌非法获取国家秘密案",
    "涉嫌故意泄露国家秘密案",
    "涉嫌为境外非法提供国家秘密、情报案",
    "涉嫌非法持有国家绝密、机密文件、资料案",
    "涉嫌侵犯公民个人信息案",
    "涉嫌非法侵入计算机信息系统案",
)


# ---------------------------------------------------------------------------------------------
# Population: a pure function of (seed, index)
# ---------------------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_CST = datetime.timezone(datetime.timedelta(hours=8))  # timestamps carry +08:00


def _mix64(x: int) -> int:
    # splitmix64's finaliser: cheap, well spread, and the same on every platform.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _coprime_multiplier(seed: int, modulus: int) -> int:
    a = _mix64(seed) % modulus
    while a < 2 or math.gcd(a, modulus) != 1:
        a += 1
    return a


@dataclass(frozen=True, slots=True)
class _Pools:
    """What population_record draws from for one seed; built once per seed."""

    seed_key: int
    id_mul: int
    id_add: int
    mobile_mul: int
    mobile_add: int
    male_names: tuple[str, ...]
    female_names: tuple[str, ...]
    company_stems: tuple[str, ...]
    birth_days: tuple[tuple[str, str], ...]


@functools.lru_cache(maxsize=8)
def _pools(seed: int) -> _Pools:
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    # Faker's zh_CN name_male() and name_female() draw given names of either gender; the
    # pools are built from the gendered given-name lists so names agree with the ID number.
    male = tuple(fake.last_name() + fake.first_name_male() for _ in range(_NAME_POOL_SIZE))
    female = tuple(fake.last_name() + fake.first_name_female() for _ in range(_NAME_POOL_SIZE))
    stems = tuple(dict.fromkeys(fake.company_prefix() for _ in range(200)))
    return _Pools(
        seed_key=_mix64(seed),
        # index → (index * mul + add) mod space is a bijection when mul is coprime to space:
        # distinct indices get distinct ID numbers and mobiles, without any bookkeeping.
        id_mul=_coprime_multiplier(seed ^ 0x1D, _ID_SPACE),
        id_add=_mix64(seed ^ 0x2E) % _ID_SPACE,
        mobile_mul=_coprime_multiplier(seed ^ 0x3F, _MOBILE_SPACE),
        mobile_add=_mix64(seed ^ 0x40) % _MOBILE_SPACE,
        male_names=male,
        female_names=female,
        company_stems=stems,
        birth_days=_birth_days(),
    )


def _area_and_sequence(pair: int) -> tuple[str, int]:
    if pair < _BEIJING_PAIRS:
        return _BEIJING_BIRTH_CODES[pair // 1000], pair % 1000
    area_index, k = divmod(pair - _BEIJING_PAIRS, _SEQ_PER_OTHER_CODE)
    # k picks one of eight disjoint blocks of 125 sequence numbers, so the eight stay distinct;
    # the offset inside the block varies by county so the numbers do not look patterned.
    return _OTHER_BIRTH_CODES[area_index], k * 125 + (area_index * 37 + k * 11) % 125


@functools.cache
def _birth_days() -> tuple[tuple[str, str], ...]:
    """(YYYY-MM-DD, YYYYMMDD) of each birth-day slot: date arithmetic is the slow part."""
    days = []
    for day in range(_BIRTH_DAYS):
        iso = (REFERENCE_DATE - datetime.timedelta(days=1 + day)).isoformat()
        days.append((iso, iso.replace("-", "")))
    return tuple(days)


_ROAD_PREFIXES = tuple(tuple(f"北京市{d.name}{road}" for road in d.roads) for d in _DISTRICTS)


def _residential_address(h: int) -> str:
    district = bisect.bisect_right(_DISTRICT_CUMULATIVE, h % _DISTRICT_CUMULATIVE[-1])
    roads = _ROAD_PREFIXES[district]
    h >>= 10
    return (
        f"{roads[h % len(roads)]}{1 + (h >> 4) % 199}号院{1 + (h >> 12) % 24}号楼"
        f"{1 + (h >> 17) % 6}单元{1 + (h >> 20) % 27}{1 + (h >> 25) % 4:02d}室"
    )


def population_record(index: int, seed: int = DEFAULT_SEED) -> Record:
    """The population record at 0-based `index`: the same on every call, machine and run.

    ID numbers and mobiles are distinct for all indices below about 1.2 billion; gender and
    birth_date always agree with the ID number.
    """
    if not 0 <= index < _ID_SPACE:
        raise ValueError(f"人口记录序号超出范围 (population index out of range): {index}")
    return _population_record(index, _pools(seed))


def iter_population(start: int, stop: int, seed: int = DEFAULT_SEED) -> Iterator[Record]:
    """population_record(i, seed) for i in range(start, stop), without per-call look-ups."""
    if not 0 <= start <= stop <= _ID_SPACE:
        raise ValueError(f"人口记录范围无效 (bad population range): {start}..{stop}")
    pools = _pools(seed)
    for index in range(start, stop):
        yield _population_record(index, pools)


def _population_record(index: int, pools: _Pools) -> Record:
    # The export streams millions of these: the ID number is assembled here from precomputed
    # date strings rather than through make_id_number, which the tests hold it equal to.
    pair, day = divmod((index * pools.id_mul + pools.id_add) % _ID_SPACE, _BIRTH_DAYS)
    area, sequence = _area_and_sequence(pair)
    birth_date, birth_digits = pools.birth_days[day]
    first17 = f"{area}{birth_digits}{sequence:03d}"
    female = sequence % 2 == 0
    mobile = (index * pools.mobile_mul + pools.mobile_add) % _MOBILE_SPACE
    h = _mix64(pools.seed_key ^ index)
    names = pools.female_names if female else pools.male_names
    ethnicity = bisect.bisect_right(_ETHNICITY_CUMULATIVE, (h >> 11) % _ETHNICITY_CUMULATIVE[-1])
    return {
        "record_id": f"P{index + 1:08d}",
        "name": names[h % _NAME_POOL_SIZE],
        "id_number": first17 + id_number_check_char(first17),
        "gender": "女" if female else "男",
        "birth_date": birth_date,
        "ethnicity": _ETHNICITY_NAMES[ethnicity],
        "address": _residential_address(_mix64(h)),
        "mobile": f"{_MOBILE_PREFIX_LIST[mobile // 10**8]}{mobile % 10**8:08d}",
    }


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoStore:
    """Every dataset's records in key order, with a key index and exact-match field indexes.

    Records are plain JSON-ready dicts in catalog field order. They are shared, not copied:
    callers must not modify them.
    """

    seed: int
    scale: float
    catalog: Catalog
    records: Mapping[str, Sequence[Record]]
    positions: Mapping[str, Mapping[str, int]]
    indexes: Mapping[str, Mapping[str, Mapping[str, Sequence[int]]]]

    def get(self, dataset: str, key: str) -> Record | None:
        position = self.positions.get(dataset, {}).get(key)
        return None if position is None else self.records[dataset][position]

    def matching(self, dataset: str, field: str, value: str) -> Sequence[int]:
        """Positions of the records whose `field` equals `value` (an index lookup)."""
        return self.indexes[dataset][field].get(value, ())

    def field_names(self, dataset: str) -> tuple[str, ...]:
        return tuple(f.name for f in self.catalog[dataset].fields)


def generate(
    seed: int = DEFAULT_SEED, scale: float = 1.0, catalog: Catalog | None = None
) -> DemoStore:
    """Build all datasets. `scale` multiplies every dataset's size (at least one record each)."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"规模须为正数 (scale must be positive): {scale}")
    catalog = catalog or load_catalog(DEFAULT_CATALOG_PATH)
    sizes = {ds: max(1, round(n * scale)) for ds, n in BASE_SIZES.items()}
    pools = _pools(seed)
    population = list(iter_population(0, sizes["population"], seed))
    people = _People(population)
    entities = _legal_entities(_rng(seed, "legal_entity"), sizes["legal_entity"], pools, people)
    records: dict[str, Sequence[Record]] = {
        "population": population,
        "legal_entity": entities,
        "social_insurance": _social_insurance(
            _rng(seed, "social_insurance"), sizes["social_insurance"], people, entities
        ),
        "medical_visits": _medical_visits(
            _rng(seed, "medical_visits"), sizes["medical_visits"], people, pools
        ),
        "real_estate": _real_estate(_rng(seed, "real_estate"), sizes["real_estate"], people),
        "credit_records": _credit_records(
            _rng(seed, "credit_records"), sizes["credit_records"], entities
        ),
        "weather": _weather(_rng(seed, "weather"), sizes["weather"]),
        "classified_cases": _classified_cases(
            _rng(seed, "classified_cases"), sizes["classified_cases"], people
        ),
    }
    _check_against_catalog(records, catalog)
    return DemoStore(
        seed=seed,
        scale=scale,
        catalog=catalog,
        records=MappingProxyType(records),
        positions=MappingProxyType(
            {ds: {r["record_id"]: i for i, r in enumerate(rs)} for ds, rs in records.items()}
        ),
        indexes=MappingProxyType(
            {ds: _field_indexes(rs, catalog[ds].field_names) for ds, rs in records.items()}
        ),
    )


def digests(store: DemoStore, first: int = 20) -> dict[str, str]:
    """SHA-256 of the first records of each dataset, to pin generation in a test."""
    return {
        ds: hashlib.sha256(orjson.dumps(list(rs[:first]))).hexdigest()
        for ds, rs in store.records.items()
    }


def _rng(seed: int, dataset: str) -> random.Random:
    # One stream per dataset: changing how one dataset is drawn leaves the others unchanged.
    # A str seed is hashed with SHA-512, independent of PYTHONHASHSEED.
    return random.Random(f"{seed}:{dataset}")


def _check_against_catalog(records: Mapping[str, Sequence[Record]], catalog: Catalog) -> None:
    problems = []
    for ds, rs in records.items():
        spec = catalog.get(ds)
        if spec is None:
            problems.append(f"{ds}: not in the catalog")
        elif rs and list(rs[0]) != [f.name for f in spec.fields]:
            catalog_fields = [f.name for f in spec.fields]
            problems.append(f"{ds}: generated {list(rs[0])}, catalog has {catalog_fields}")
    problems += [f"{ds.id}: the demo has no generator" for ds in catalog if ds.id not in records]
    if problems:
        raise ConfigError(
            "演示数据与目录不一致 (demo data disagrees with the catalog): " + "; ".join(problems)
        )


def _field_indexes(
    records: Sequence[Record], fields: frozenset[str]
) -> dict[str, dict[str, Sequence[int]]]:
    indexes: dict[str, dict[str, Sequence[int]]] = {}
    for field in INDEXED_FIELDS:
        if field not in fields:
            continue
        index: dict[str, list[int]] = {}
        for position, record in enumerate(records):
            index.setdefault(record[field], []).append(position)
        indexes[field] = {value: tuple(ps) for value, ps in index.items()}
    return indexes


class _People:
    """Population records with what the other generators select people by."""

    def __init__(self, population: Sequence[Record]) -> None:
        self.records = population
        self.ages = [_age(datetime.date.fromisoformat(p["birth_date"])) for p in population]

    def aged(self, low: int, high: int = 200) -> list[int]:
        """Positions of people aged `low` to `high` (inclusive); everyone if nobody is."""
        chosen = [i for i, age in enumerate(self.ages) if low <= age <= high]
        return chosen or list(range(len(self.records)))


def _age(birth: datetime.date) -> int:
    before_birthday = (REFERENCE_DATE.month, REFERENCE_DATE.day) < (birth.month, birth.day)
    return REFERENCE_DATE.year - birth.year - before_birthday


def _date_between(rng: random.Random, low: datetime.date, high: datetime.date) -> datetime.date:
    if high <= low:
        return low
    return low + datetime.timedelta(days=rng.randrange((high - low).days + 1))


def _years_after(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _draw_district(rng: random.Random) -> _District:
    return rng.choices(_DISTRICTS, cum_weights=_DISTRICT_CUMULATIVE)[0]


def _street_address(rng: random.Random, district: _District) -> str:
    road = rng.choice(district.roads)
    return f"北京市{district.name}{road}{rng.randint(1, 300)}号"


def _legal_entities(rng: random.Random, size: int, pools: _Pools, people: _People) -> list[Record]:
    adults = people.aged(22, 75)
    names: set[str] = set()
    usccs: set[str] = set()
    records: list[Record] = []
    while len(records) < size:
        district = _draw_district(rng)
        roll = rng.random()
        if roll < 0.92:
            authority, kind = "9", "1"  # 企业
            brand = (
                rng.choice(pools.company_stems)
                if rng.random() < 0.4
                else "".join(rng.sample(_BRAND_CHARS, 2))
            )
            form = rng.choices(("有限公司", "有限责任公司", "股份有限公司"), (70, 25, 5))[0]
            name = f"北京{brand}{rng.choice(_INDUSTRIES)}{form}"
        elif roll < 0.96:
            authority, kind = "1", "2"  # 事业单位
            name = f"北京市{district.name}{rng.choice(_PUBLIC_INSTITUTIONS)}"
        else:
            authority, kind = "5", "1"  # 社会团体
            name = f"北京市{district.name}{rng.choice(_ASSOCIATIONS)}"
        uscc = make_uscc(rng, authority=authority, kind=kind, region=district.code)
        if name in names or uscc in usccs:
            continue
        names.add(name)
        usccs.add(uscc)
        capital = rng.choices((3, 10, 50, 100, 200, 500, 1000, 5000), (5, 20, 20, 25, 10, 10, 7, 3))
        records.append(
            {
                "record_id": record_key("legal_entity", len(records)),
                "name": name,
                "uscc": uscc,
                "legal_representative": people.records[rng.choice(adults)]["name"],
                "address": _street_address(rng, district),
                "registered_capital": float(capital[0] * rng.choice((1, 1, 1, 1.5, 2.8))),
                "status": rng.choices(("存续", "在业", "注销", "吊销", "迁出"), (75, 10, 8, 5, 2))[
                    0
                ],
                "established": _date_between(
                    rng, datetime.date(1992, 1, 1), datetime.date(2025, 12, 31)
                ).isoformat(),
            }
        )
    return records


def _social_insurance(
    rng: random.Random, size: int, people: _People, entities: Sequence[Record]
) -> list[Record]:
    candidates = people.aged(16)
    employers = [e["name"] for e in entities if e["status"] in ("存续", "在业")] or [
        e["name"] for e in entities
    ]
    chosen = rng.sample(candidates, min(size, len(candidates)))
    # With a tiny population there may be fewer adults than records: people then reappear.
    chosen += rng.choices(candidates, k=size - len(chosen))
    records = []
    for n, position in enumerate(chosen):
        person = people.records[position]
        birth = datetime.date.fromisoformat(person["birth_date"])
        retired = people.ages[position] >= (55 if person["gender"] == "女" else 60)
        status = (
            "退休" if retired else rng.choices(("正常参保", "暂停参保", "终止参保"), (82, 10, 8))[0]
        )
        # 缴费基数 lies between Beijing's floor and ceiling (2024-25: 6821 and 35283 元).
        base = min(35_283, max(6_821, round(rng.lognormvariate(math.log(9_500), 0.5))))
        since_low = max(_years_after(birth, 16), datetime.date(1992, 1, 1))
        records.append(
            {
                "record_id": record_key("social_insurance", n),
                "id_number": person["id_number"],
                "name": person["name"],
                "employer": rng.choice(employers),
                "contribution_base": base,
                "status": status,
                "insured_since": _date_between(
                    rng, since_low, datetime.date(2025, 12, 31)
                ).isoformat(),
            }
        )
    return records


def _relative(rng: random.Random, person: Record, age: int, pools: _Pools) -> tuple[str, str, str]:
    """A relative of `person`: (relation, name, valid ID number)."""
    birth = datetime.date.fromisoformat(person["birth_date"])
    options: list[tuple[str, bool, int]] = []  # relation, female, older (1) or younger (-1)
    if age >= 40:
        options += [("儿子", False, -1), ("女儿", True, -1)]
    if age <= 60:
        options += [("父亲", False, 1), ("母亲", True, 1)]
    if age >= 20:
        options.append(("配偶", person["gender"] == "男", 0))
    relation, female, direction = rng.choice(options)
    if direction == 0:
        offset = rng.randint(-5 * 365, 5 * 365)
    else:
        offset = -direction * rng.randint(22 * 365, 38 * 365)
    relative_birth = min(
        max(birth + datetime.timedelta(days=offset), datetime.date(1920, 1, 1)),
        REFERENCE_DATE - datetime.timedelta(days=1),
    )
    area = person["id_number"][:6]
    id_number = make_id_number(area, relative_birth, rng.randrange(1000), female)
    name = rng.choice(pools.female_names if female else pools.male_names)
    return relation, name, id_number


def _note(rng: random.Random, person: Record, age: int, pools: _Pools) -> str:
    if rng.random() >= NOTES_WITH_IDENTIFIERS:
        return rng.choice(_ROUTINE_NOTES)
    relation, name, id_number = _relative(rng, person, age, pools)
    mobile = make_mobile(rng)
    return rng.choice(
        (
            f"患者由其{relation}陪同就诊，联系电话{mobile}。",
            f"已电话通知家属（{relation}{name}），手机{mobile}，嘱按时复诊。",
            f"家属{relation}{name}（身份证号{id_number}）代为签署知情同意书。",
            f"代取药人：{name}，身份证号码{id_number}，系患者{relation}。",
        )
    )


def _medical_visits(rng: random.Random, size: int, people: _People, pools: _Pools) -> list[Record]:
    records = []
    positions = range(len(people.records))
    for n in range(size):
        position = rng.choice(positions)
        person, age = people.records[position], people.ages[position]
        if age < 14:
            clinic = "儿科" if rng.random() < 0.8 else rng.choice(("眼科", "口腔科", "皮肤科"))
        elif person["gender"] == "女" and 18 <= age <= 55 and rng.random() < 0.15:
            clinic = "妇产科"
        else:
            clinic = rng.choice(_ADULT_CLINICS)
        birth = datetime.date.fromisoformat(person["birth_date"])
        visit = _date_between(
            rng, max(birth, datetime.date(2024, 1, 1)), datetime.date(2025, 12, 31)
        )
        records.append(
            {
                "record_id": record_key("medical_visits", n),
                "id_number": person["id_number"],
                "name": person["name"],
                "hospital": rng.choice(_HOSPITALS),
                "visit_date": visit.isoformat(),
                "clinic": clinic,
                "diagnosis": rng.choice(_CLINICS[clinic]),
                "cost": round(min(80_000.0, rng.lognormvariate(math.log(350), 1.0)), 2),
                "notes": _note(rng, person, age, pools),
            }
        )
    return records


def _real_estate(rng: random.Random, size: int, people: _People) -> list[Record]:
    owners = people.aged(20)
    serials: dict[tuple[int, str], int] = {}
    records = []
    for n in range(size):
        # Drawn with replacement: some people own several properties, which the 低保 check
        # is meant to find.
        person = people.records[rng.choice(owners)]
        district = _draw_district(rng)
        year = rng.randint(2016, 2025)
        serial = serials.get((year, district.name)) or rng.randint(1000, 60000)
        serials[(year, district.name)] = serial + rng.randint(1, 40)
        usage = rng.choices(("住宅", "车位", "商业", "办公"), (80, 10, 6, 4))[0]
        road = rng.choice(district.roads)
        compound = f"北京市{district.name}{road}{rng.randint(1, 199)}号院"
        if usage == "住宅":
            building, unit = rng.randint(1, 24), rng.randint(1, 6)
            room = f"{rng.randint(1, 27)}{rng.randint(1, 4):02d}"
            location = f"{compound}{building}号楼{unit}单元{room}室"
            area = rng.lognormvariate(math.log(85), 0.35)
        elif usage == "车位":
            location = f"{compound}地下车库B{rng.randint(1, 3)}-{rng.randint(1, 400):03d}号车位"
            area = rng.uniform(12, 20)
        else:
            location = (
                f"{compound}{rng.randint(1, 12)}号楼{rng.randint(1, 20)}{rng.randint(1, 30):02d}"
            )
            area = rng.lognormvariate(math.log(120), 0.6)
        records.append(
            {
                "record_id": record_key("real_estate", n),
                "certificate_no": f"京({year}){district.name}不动产权第{serial:07d}号",
                "owner": person["name"],
                "id_number": person["id_number"],
                "location": location,
                "area": round(min(area, 2_000.0), 2),
                "usage": usage,
            }
        )
    return records


def _credit_records(rng: random.Random, size: int, entities: Sequence[Record]) -> list[Record]:
    companies = [e for e in entities if e["uscc"][:2] == "91"] or list(entities)
    records = []
    for n in range(size):
        company = rng.choice(companies)
        record_type, authority = rng.choice(_CREDIT_TYPES)
        district = next(d for d in _DISTRICTS if d.code == company["uscc"][2:8])
        decided = _date_between(rng, datetime.date(2019, 1, 1), datetime.date(2025, 12, 31))
        if authority == "court":
            authority = f"北京市{district.name}人民法院"
            case = f"({decided.year})京{district.code[2:]}执{rng.randint(100, 29999)}号"
            description = (
                f"该单位未履行生效法律文书{case}确定的给付义务，"
                f"未履行金额{rng.uniform(2, 900):.2f}万元。"
            )
        elif authority == "district_market":
            authority = f"北京市{district.name}市场监督管理局"
            description = "该单位通过登记的住所或者经营场所无法联系，列入经营异常名录。"
        elif record_type.startswith("重大税收"):
            description = (
                f"该单位虚开增值税专用发票，涉案税款{rng.uniform(50, 3000):.2f}万元，已依法处罚。"
            )
        elif record_type.startswith("拖欠"):
            description = (
                f"该单位拖欠{rng.randint(5, 200)}名劳动者工资共计{rng.uniform(10, 800):.1f}万元，"
                f"经责令限期支付后仍未支付。法定代表人{company['legal_representative']}。"
            )
        elif record_type.startswith("政府采购"):
            description = "该单位在政府采购活动中提供虚假材料谋取中标，禁止参加政府采购活动三年。"
        elif record_type.startswith("安全生产"):
            description = (
                f"该单位发生一般生产安全事故，造成{rng.randint(1, 3)}人受伤，未按规定整改。"
            )
        else:
            description = "该单位因隐瞒真实情况、弄虚作假取得登记，被依法列入严重违法失信名单。"
        records.append(
            {
                "record_id": record_key("credit_records", n),
                "subject_name": company["name"],
                "uscc": company["uscc"],
                "record_type": record_type,
                "authority": authority,
                "decided": decided.isoformat(),
                "description": description,
            }
        )
    return records


def _weather(rng: random.Random, size: int) -> list[Record]:
    # Hourly readings from every station, ending at the last hour before the reference date.
    hours = -(-size // len(_WEATHER_STATIONS))
    start = datetime.datetime.combine(REFERENCE_DATE, datetime.time(), _CST) - datetime.timedelta(
        hours=hours
    )
    daily_shift = [rng.gauss(0, 3) for _ in range(hours // 24 + 2)]
    records: list[Record] = []
    for hour in range(hours):
        at = start + datetime.timedelta(hours=hour)
        # Winter in Beijing: about -3 ℃ on average, coldest near dawn, warmest mid-afternoon.
        diurnal = 5 * math.cos((at.hour - 15) / 24 * 2 * math.pi)
        base = -3 + diurnal + daily_shift[hour // 24]
        for station, offset in _WEATHER_STATIONS:
            if len(records) == size:
                break
            snowing = rng.random() < 0.04
            records.append(
                {
                    "record_id": record_key("weather", len(records)),
                    "station": station,
                    "observed_at": at.isoformat(),
                    "temperature": round(base + offset + rng.gauss(0, 0.6), 1),
                    "humidity": min(100, max(10, round(rng.gauss(75 if snowing else 40, 12)))),
                    "precipitation": round(rng.uniform(0.1, 2.5), 1) if snowing else 0.0,
                    "wind_speed": round(max(0.0, rng.gauss(2.5, 1.4)), 1),
                }
            )
    return records


def _classified_cases(rng: random.Random, size: int, people: _People) -> list[Record]:
    suspects = people.aged(18, 75)
    records = []
    for n in range(size):
        person = people.records[rng.choice(suspects)]
        year = rng.randint(2018, 2025)
        title = rng.choice(_CASE_TITLES)
        date = _date_between(rng, datetime.date(year, 1, 1), datetime.date(year, 12, 31))
        summary = (
            f"犯罪嫌疑人{person['name']}（身份证号{person['id_number']}）于{date:%Y年%m月%d日}"
            f"利用职务便利，{title.removeprefix('涉嫌').removesuffix('案')}，"
            f"涉及文件{rng.randint(2, 60)}份，已依法采取强制措施。"
        )
        records.append(
            {
                "record_id": record_key("classified_cases", n),
                "case_no": f"京公国安立字[{year}]{rng.randint(1, 999):04d}号",
                "title": title,
                "classification": rng.choices(("秘密", "机密", "绝密"), (60, 30, 10))[0],
                "suspect_name": person["name"],
                "id_number": person["id_number"],
                "summary": summary,
            }
        )
    return records
