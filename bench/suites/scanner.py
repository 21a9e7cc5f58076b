"""Scanner accuracy and speed on a labelled corpus of generated strings (issue 4)."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.corpus import CHECKSUMMED, POSITIVE_TYPES, Item, build
from gateway.keys import KeyRing
from gateway.settings import REPO_ROOT
from gateway.shaping import Scanner, ShaperFactory, load_masking

N_ITEMS = 12_000
# The seed the scanner was tuned against while it was written, and one it never saw.
DEVELOPMENT_SEED = 20260101
HELD_OUT_SEED = 7


def run(quick: bool = False) -> tuple[dict[str, Any], str]:
    policy = load_masking(REPO_ROOT / "policies" / "masking.toml")
    with tempfile.TemporaryDirectory() as tmp:
        scanner = ShaperFactory(policy, KeyRing(Path(tmp))).scanner(False)
    held_out = measure(scanner, build(N_ITEMS, HELD_OUT_SEED))
    development = measure(scanner, build(N_ITEMS, DEVELOPMENT_SEED))
    figures = {"held_out": held_out, "development": development}
    return figures, _markdown(held_out, development)


def measure(scanner: Scanner, corpus: list[Item]) -> dict[str, Any]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    started = time.perf_counter()
    results = [scanner.scan(item.text) for item in corpus]
    seconds = time.perf_counter() - started
    for item, findings in zip(corpus, results, strict=True):
        expected = set(item.labels)
        got = {(f.type, f.start, f.end) for f in findings}
        for label in expected:
            (tp if label in got else fn)[label[0]] += 1
        for label in got - expected:
            fp[label[0]] += 1
    per_type = {}
    for t in POSITIVE_TYPES:
        found, wrong, missed = tp[t], fp[t], fn[t]
        per_type[t] = {
            "labelled": found + missed,
            "found": found,
            "missed": missed,
            "false_positives": wrong,
            "recall": round(found / (found + missed), 5) if found + missed else None,
            "precision": round(found / (found + wrong), 5) if found + wrong else None,
        }
    all_tp, all_fp, all_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    ck_tp = sum(tp[t] for t in CHECKSUMMED)
    ck_fn = sum(fn[t] for t in CHECKSUMMED)
    figures = {
        "strings": len(corpus),
        "labelled_values": all_tp + all_fn,
        "strings_without_personal_data": sum(1 for i in corpus if not i.labels),
        "recall_checksummed": round(ck_tp / (ck_tp + ck_fn), 5),
        "recall_all": round(all_tp / (all_tp + all_fn), 5),
        "precision_all": round(all_tp / (all_tp + all_fp), 5),
        "strings_per_s": round(len(corpus) / seconds),
        "per_type": per_type,
    }
    return figures


def _markdown(f: dict[str, Any], dev: dict[str, Any]) -> str:
    lines = [
        "## Scanner accuracy on a labelled corpus (issue 4)",
        "",
        f"{f['strings']:,} generated strings (`bench/corpus.py`, seeded): free text with "
        f"{f['labelled_values']:,} embedded values of personal data and look-alike numbers (order "
        "and serial numbers, ID numbers with a wrong check digit, 12-digit numbers, card-length "
        f"numbers failing Luhn, codes, dates, landlines); {f['strings_without_personal_data']:,} "
        "strings hold none. A finding counts only with the right type and exact offsets.",
        "",
        f"- recall on checksummed types (身份证号, 统一社会信用代码, bank card): "
        f"**{f['recall_checksummed']:.2%}** (target 99.9%)",
        f"- recall, all types: {f['recall_all']:.2%}",
        f"- precision, all types: **{f['precision_all']:.2%}** (target 99%)",
        f"- speed: {f['strings_per_s']:,} strings/s (one core, the full scan without prefilter "
        "shortcuts for digit-free strings, since every string here has digits)",
        "",
        "These figures are for a seed the scanner never saw while it was written; on the seed it "
        f"was tuned against: recall {dev['recall_checksummed']:.2%} (checksummed), precision "
        f"{dev['precision_all']:.2%}. Both corpora come from the same generator, written with the "
        "scanner, so read them as what the scanner does on the formats and look-alikes listed "
        "here, not as a measure on real records. Values glued to other digits (a card number "
        "run into a serial number) are not in the corpus: no reader can separate them.",
        "",
        "| type | labelled | found | missed | false positives | recall | precision |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t, row in f["per_type"].items():
        recall = f"{row['recall']:.2%}" if row["recall"] is not None else "-"
        precision = f"{row['precision']:.2%}" if row["precision"] is not None else "-"
        lines.append(
            f"| {t} | {row['labelled']} | {row['found']} | {row['missed']} "
            f"| {row['false_positives']} | {recall} | {precision} |"
        )
    return "\n".join(lines) + "\n"
