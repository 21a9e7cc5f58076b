"""Leaks for the watermark robustness suite (bench) and its tests: served responses, then leaks.

`serve` drives real requests through the in-process pipeline for several recipients (the
responses the registry knows); `TRANSFORMS` turn a response's records into a leaked file the
way leakers do (reorder, subset, drop and rename columns, JSON → CSV → XLSX, trim, change
case); `fresh_extract` makes an extract of the same shape that was never served (Faker), and
`strip_marks` is the attacker who knows the scheme but not the keys.
"""

from __future__ import annotations

import asyncio
import csv
import datetime
import io
import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from faker import Faker

from gateway.demo.data import DemoStore, generate
from gateway.grants.admin import Actor
from gateway.grants.model import GrantSpec
from gateway.identity import load_principal
from gateway.pipeline import Pipeline
from gateway.service import Gateway
from gateway.watermark.carriers import strip_text_marks
from gateway.watermark.leakfile import LeakTable, read_leak
from tests.factories import body_of, drive, json_response, request_flow

Record = dict[str, Any]
CASE = "MZ-2026-000123"


@dataclass(frozen=True)
class Served:
    """One response as its recipient got it."""

    name: str
    request_id: str
    user: str
    recipient: str
    dataset: str
    purpose: str
    records: list[Record]
    raw: list[Record]  # what the platform sent, for telling decoys apart in tests


# (name, caller, purpose, case, dataset, records)
SCENARIOS: tuple[tuple[str, str, str, str | None, str, int], ...] = (
    ("统计局 population (pseudonyms)", "tj_analyst", "statistics", None, "population", 1000),
    ("民政局 population", "mz_caseworker", "social_assistance_review", CASE, "population", 1000),
    ("税务局 population", "sw_officer", "tax_administration", None, "population", 1000),
    ("卫健委 population", "wj_officer", "health_management", None, "population", 1000),
    ("统计局 legal_entity", "tj_analyst", "statistics", None, "legal_entity", 1000),
    ("税务局 legal_entity", "sw_officer", "tax_administration", None, "legal_entity", 1000),
    ("公众 weather", "public_dev", "open_data_use", None, "weather", 1000),
    ("卫健委 medical_visits", "wj_officer", "health_management", None, "medical_visits", 1000),
    (
        "统计局 medical_visits (pseudonyms)",
        "tj_analyst",
        "statistics",
        None,
        "medical_visits",
        1000,
    ),
)
# Conditional datasets need a grant: the scenario grants what it reads.
GRANTS = (
    ("wj_officer", "medical_visits", "health_management"),
    ("tj_analyst", "medical_visits", "statistics"),
)


def store() -> DemoStore:
    return generate(scale=0.2)


def grant(gateway: Gateway) -> None:
    now = datetime.datetime.now(datetime.UTC)
    admin = Actor("admin", ("admin",), None)
    for who, dataset, purpose in GRANTS:
        with gateway.engine.connect() as conn:
            principal = load_principal(conn, who)
        assert principal is not None
        gateway.admin.create(
            admin,
            GrantSpec(
                dataset=dataset,
                fields=tuple(f.name for f in gateway.catalog[dataset].fields),
                valid_from=now - datetime.timedelta(days=1),
                valid_until=now + datetime.timedelta(days=30),
                department=principal.department,
                purposes=(purpose,),
            ),
        )


def serve(
    gateway: Gateway,
    credentials: dict[str, dict[str, Any]],
    data: DemoStore | None = None,
    offset: int = 0,
) -> list[Served]:
    """Every scenario's response, through the real pipeline (in process)."""
    grant(gateway)
    data = data or store()
    pipeline = Pipeline.of(gateway)
    return asyncio.run(_serve(pipeline, credentials, data, offset))


async def _serve(
    pipeline: Pipeline, credentials: dict[str, dict[str, Any]], data: DemoStore, offset: int
) -> list[Served]:
    out = []
    for name, who, purpose, case, dataset, n in SCENARIOS:
        raw = [dict(r) for r in data.records[dataset][offset : offset + n]]
        flow = request_flow(
            f"/api/v1/datasets/{dataset}/records?limit={len(raw)}",
            key=credentials[who]["api_key"],
            purpose=purpose,
            case_id=case,
        )
        ctx = await drive(pipeline, flow, json_response({"records": [dict(r) for r in raw]}))
        assert flow.response is not None and flow.response.status_code == 200, (
            name,
            flow.response.content[:300] if flow.response else None,
        )
        recipient = ctx.watermark.plan.recipient if ctx.watermark else who
        out.append(
            Served(
                name,
                ctx.request_id,
                who,
                recipient,
                dataset,
                purpose,
                body_of(flow)["records"],
                raw,
            )
        )
    return out


# -- leaking -------------------------------------------------------------------------------------


def table_of(records: list[Record], fmt: str = "json") -> LeakTable:
    """Records written as a file in `fmt` and read back the way `shareguard trace` reads files."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"leak.{fmt}"
        write(records, path, fmt)
        return read_leak(path)


def write(records: list[Record], path: Path, fmt: str) -> None:
    columns = list(dict.fromkeys(k for r in records for k in r))
    if fmt == "json":
        path.write_bytes(orjson.dumps(records))
    elif fmt == "ndjson":
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    elif fmt == "csv":
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(columns)
        for r in records:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
        path.write_text(out.getvalue(), encoding="utf-8")
    elif fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.append(columns)
        for r in records:
            sheet.append([r.get(c) for c in columns])
        book.save(path)
    elif fmt == "txt":
        lines = ["\t".join(str(r.get(c, "")) for c in columns) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        raise ValueError(fmt)


def _reordered(records: list[Record], whole: list[Record], rng: random.Random) -> list[Record]:
    out = list(records)
    rng.shuffle(out)
    return out


def _dropped_and_renamed(
    records: list[Record], whole: list[Record], rng: random.Random
) -> list[Record]:
    """Half the other columns dropped — those with the fewest distinct values in the response
    the leaker received (`whole`), which a leaker selling people's data needs least — the rest
    renamed and put in another order. The leaker chooses on the file it holds, so the columns
    do not depend on which rows later turn up."""
    columns = list(dict.fromkeys(k for r in whole for k in r))
    others = [c for c in columns if c != "record_id"]
    distinct = {c: len({str(r.get(c)) for r in whole}) for c in others}
    kept = sorted(others, key=lambda c: (-distinct[c], c))[: max(1, len(others) - len(others) // 2)]
    order = rng.sample(["record_id", *kept], len(kept) + 1)
    names = {c: f"字段{i}" for i, c in enumerate(order)}
    return [{names[c]: r[c] for c in order if c in r} for r in records]


def _trimmed(records: list[Record], whole: list[Record], rng: random.Random) -> list[Record]:
    return [{k: v.strip() if isinstance(v, str) else v for k, v in r.items()} for r in records]


def _case_changed(records: list[Record], whole: list[Record], rng: random.Random) -> list[Record]:
    return [
        {k.upper(): v.lower() if isinstance(v, str) else v for k, v in r.items()} for r in records
    ]


def _through_csv_and_xlsx(
    records: list[Record], whole: list[Record], rng: random.Random
) -> list[Record]:
    """JSON → CSV → XLSX as a spreadsheet user does it: CSV read back as text, then numbers typed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "leak.csv"
        write(records, path, "csv")
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    return [{k: _typed(v) for k, v in r.items()} for r in rows]


def _typed(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


# name → ((sampled rows, the whole response, rng) → rows, the format the leak is saved in)
Transform = Callable[[list[Record], list[Record], random.Random], list[Record]]
TRANSFORMS: dict[str, tuple[Transform, str]] = {
    "as delivered (JSON)": (lambda r, whole, rng: list(r), "json"),
    "reordered": (_reordered, "ndjson"),
    "columns dropped and renamed": (_dropped_and_renamed, "csv"),
    "JSON → CSV → XLSX": (_through_csv_and_xlsx, "xlsx"),
    "whitespace trimmed": (_trimmed, "csv"),
    "case changed": (_case_changed, "json"),
    "plain text": (lambda r, whole, rng: list(r), "txt"),
}


def leak(served: Served, rows: int, transform: str, rng: random.Random) -> LeakTable:
    """`rows` random records of a response (the 20% subset and smaller), transformed and saved."""
    fn, fmt = TRANSFORMS[transform]
    picked = rng.sample(served.records, min(rows, len(served.records)))
    return table_of(fn(picked, served.records, rng), fmt)


def merged(a: Served, b: Served, rows: int, rng: random.Random) -> LeakTable:
    """Two recipients' extracts of the same dataset, merged into one file."""
    records = rng.sample(a.records, rows // 2) + rng.sample(b.records, rows - rows // 2)
    rng.shuffle(records)
    return table_of(records, "csv")


# -- what was never served -----------------------------------------------------------------------


def fresh_extract(template: Served, rows: int, rng: random.Random) -> LeakTable:
    """An extract with the response's columns and value shapes, made up by Faker: never served."""
    fake = Faker("zh_CN")
    fake.seed_instance(rng.randrange(1 << 30))
    columns = list(dict.fromkeys(k for r in template.records for k in r))
    out = []
    for _ in range(rows):
        record: Record = {}
        for c in columns:
            sample = rng.choice(template.records).get(c)
            record[c] = _fake_like(c, sample, fake, rng)
        out.append(record)
    return table_of(out, rng.choice(["json", "csv", "xlsx"]))


def _fake_like(column: str, sample: Any, fake: Faker, rng: random.Random) -> Any:
    if column == "record_id" and isinstance(sample, str):
        return sample[0] + f"{rng.randrange(10**8):08d}"
    if isinstance(sample, bool) or sample is None:
        return sample
    if isinstance(sample, int):
        return rng.randrange(max(2, sample * 2))
    if isinstance(sample, float):
        return round(rng.uniform(0, max(1.0, sample * 2)), 2)
    text = strip_text_marks(str(sample))
    if column in ("address", "location"):
        return fake.address().split(" ")[0]
    if column == "id_number" and len(text) == 18:
        return fake.ssn()
    if column == "id_number":
        return fake.hexify("^" * len(text))
    if column == "mobile":
        return fake.phone_number()
    if column in ("name", "owner", "legal_representative"):
        return fake.name()
    if column == "observed_at":
        return fake.date_time(tzinfo=datetime.UTC).isoformat()
    if column == "uscc":
        return text[:8] + fake.bothify("##########")
    return text


def strip_marks(served: Served, rows: int, rng: random.Random) -> LeakTable:
    """A real response after an attacker who knows the scheme but not the keys: text carriers
    and invisible marks undone, every numeric and time carrier re-randomised, pseudonyms
    replaced by random values of the same form, and (given to the attacker for free) the decoy
    rows removed."""
    raw_keys = {r["record_id"] for r in served.raw}
    real = [r for r in served.records if r["record_id"] in raw_keys]
    out = []
    for r in rng.sample(real, min(rows, len(real))):
        clean: Record = {}
        for k, v in r.items():
            if isinstance(v, str):
                v = strip_text_marks(v)
                if k == "observed_at" and len(v) >= 19:
                    v = v[:17] + f"{rng.randrange(60):02d}" + v[19:]
                elif k == "id_number" and len(v) == 20:
                    v = "".join(rng.choice("0123456789abcdef") for _ in v)
            elif isinstance(v, int) and not isinstance(v, bool):
                v = v + rng.choice((-1, 0, 0, 1))
            elif isinstance(v, float):
                # The carrier may be at either decimal place: both get a random nudge.
                v = round(v + rng.choice((-1, 0, 1)) * 0.1 + rng.choice((-1, 0, 1)) * 0.01, 2)
            clean[k] = v
        out.append(clean)
    return table_of(out, rng.choice(["json", "csv"]))


def dump(result: Any) -> str:
    return json.dumps(result, ensure_ascii=False, indent=2, default=str)
