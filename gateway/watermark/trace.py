"""Tracing a leaked file to the responses it came from: every decoder, candidates with evidence.

Columns are aligned by content, never by header: record-key columns by their shape, carrier
columns by what their values look like, pseudonyms by the registry itself. Every decoder runs:

- provenance: a saved HTTP response whose signature verifies names its request outright;
- pseudonym: (record key, pseudonym) pairs looked up by keyed tag — one row names a recipient;
- decoy: rows that are decoys the gateway made;
- fingerprint: each row's carrier bits vote on code-word positions chosen by the keyed hash of
  its record key, under each recipient's key; the registered code words are scored by maximum
  likelihood (erasures and flipped bits cost only evidence), and tested per code-word position;
- invisible: zero-width marks carrying a watermark id and its keyed check.

Every probability is an upper bound on the chance that a file ShareGuard never served (or one
whose marks were scrambled without the keys) would match this well. The fingerprint's is also
one for a response the leak did not come from among the others of the same recipient, dataset
and key: their code words share the leak's positions and masks, and each agrees with the leaked
code word at about half the positions, so the votes on one position agree or disagree with
such a code word all at once. The fingerprint is therefore tested per position, not per vote:
a code word independent of the leak has each position's bit by a fair coin, so its score (the
vote margins of the positions it agrees with) has an exactly computable tail
(`log10_weighted_tail`), at best 2^-128 with 128 positions. (Pseudonyms are the same in every
response of a recipient: that layer names the recipient, and lists each response that held
the rows.) Every bound is multiplied by every hypothesis tried (columns, key versions,
recipients, code words, layers), so trying more makes no one look guiltier.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.catalog import Catalog
from gateway.identifiers import is_valid_id_number, is_valid_uscc
from gateway.keys import KeyRing
from gateway.watermark.codes import (
    CODE_BITS,
    Selector,
    TagKey,
    codeword,
    invisible_valid,
    normalize_anchor,
    wm_hex,
    wm_int,
)
from gateway.watermark.leakfile import LeakTable
from gateway.watermark.marker import TAG_DECOY, TAG_ROW, pseudonym_space
from gateway.watermark.policy import LAYERS, CarrierSpec, WatermarkPolicy
from gateway.watermark.registry import ResponseEntry, WatermarkRegistry
from gateway.watermark.signing import PROVENANCE, ResponseVerifier

__all__ = ["Candidate", "Evidence", "TraceResult", "Tracer", "log10_weighted_tail"]

REPORT_THRESHOLD = 1e-3  # candidates less certain than this are not listed
LOOKUP_ROWS = 2000  # rows whose (key, value) pairs are looked up in the registry
KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LN10 = math.log(10)
_LOG10_SIGNATURE = -128 * math.log10(2)  # forging an Ed25519 signature: no better than 2^-128
# Past this summed vote margin, a leak's position weights are scaled down to about this sum:
# the tail stays exact for the weights used, and its table stays small.
WEIGHT_LIMIT = 8192
# What the subjects look-up returns: the keyed subject hashes of the given requests, and
# whether any request's list was cut short in the audit log.
SubjectsOf = Callable[[Sequence[str]], tuple[dict[str, set[str]], bool]]


def log10_weighted_tail(weights: Sequence[int], score: int) -> float:
    """log10 P[Σ wᵢ·Bᵢ ≥ score] for independent fair bits Bᵢ and integer weights wᵢ ≥ 0, exactly.

    With every weight 1 this is the binomial tail P[Binomial(n, 1/2) ≥ score].
    """
    return _log10_tail(_tail_counts([w for w in weights if w > 0]), score)


def _tail_counts(weights: Sequence[int]) -> tuple[list[int], int]:
    """For positive integer weights: how many of the 2^m subsets have a sum ≥ s, for every s;
    and m. The counts are the coefficients of Π(1 + x^w), multiplied out in one big integer with
    a slot per coefficient wide enough for 2^m (17 bytes for the 128 positions of a code word)."""
    total = sum(weights)
    slot = len(weights) // 8 + 1
    poly = 1
    for w in weights:
        poly += poly << (w * slot * 8)
    raw = poly.to_bytes((total + 1) * slot, "little")
    tail = [0] * (total + 2)
    for s in range(total, -1, -1):
        tail[s] = tail[s + 1] + int.from_bytes(raw[s * slot : (s + 1) * slot], "little")
    return tail, len(weights)


def _log10_tail(counts: tuple[list[int], int], score: int) -> float:
    tail, m = counts
    if score <= 0:
        return 0.0
    if score >= len(tail) - 1:
        return -math.inf
    return min(0.0, math.log10(tail[score]) - m * math.log10(2))


def _log10_choose(n: int, h: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(h + 1) - math.lgamma(n - h + 1)) / _LN10


@dataclass
class Evidence:
    layer: str
    summary: str
    log10_p: float  # before the bound over layers
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "summary": self.summary,
            "false_match_probability": _p(self.log10_p),
            "log10_false_match_probability": round(self.log10_p, 2),
            **self.details,
        }


@dataclass
class Candidate:
    entry: ResponseEntry
    evidence: list[Evidence]
    log10_p: float
    subjects: int = 0

    @property
    def probability(self) -> float:
        return _p(self.log10_p)

    def to_json(self) -> dict[str, Any]:
        e = self.entry
        return {
            "request_id": e.request_id,
            "user.id": e.user_id,
            "department": e.department,
            "recipient": e.recipient,
            "credential_id": e.credential_id,
            "dataset": e.dataset,
            "purpose": e.purpose,
            "case_id": e.case_id,
            "issued_at": e.issued_local.isoformat(),
            "watermark_id": e.watermark,
            "key_version": e.key_version,
            "records_delivered": e.records,
            "data_subjects": self.subjects,
            "false_match_probability": self.probability,
            "log10_false_match_probability": round(self.log10_p, 2),
            "evidence": [ev.to_json() for ev in sorted(self.evidence, key=lambda x: x.log10_p)],
        }


@dataclass
class TraceResult:
    candidates: list[Candidate]
    affected_subjects: set[str]
    subjects_truncated: bool
    rows_read: int
    rows_used: int
    file_format: str
    columns: list[str]
    layers: tuple[str, ...]
    hypotheses: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_json() for c in self.candidates],
            "affected_data_subjects": len(self.affected_subjects),
            "affected_data_subjects_truncated": self.subjects_truncated,
            "data_subject_hashes": sorted(self.affected_subjects),
            "file": {
                "format": self.file_format,
                "rows": self.rows_read,
                "rows_examined": self.rows_used,
                "columns": self.columns,
            },
            "layers": list(self.layers),
            "hypotheses": self.hypotheses,
        }


def _p(log10_p: float) -> float:
    return float(10.0 ** max(log10_p, -300.0))


class Tracer:
    def __init__(
        self,
        registry: WatermarkRegistry,
        keyring: KeyRing,
        catalog: Catalog,
        policy: WatermarkPolicy,
        verifier: ResponseVerifier | None = None,
        subjects_of: SubjectsOf | None = None,
    ) -> None:
        self.registry = registry
        self.keyring = keyring
        self.catalog = catalog
        self.policy = policy
        self.verifier = verifier
        self.subjects_of = subjects_of

    def trace(
        self,
        table: LeakTable,
        layers: Iterable[str] = LAYERS,
        threshold: float = REPORT_THRESHOLD,
    ) -> TraceResult:
        wanted = tuple(x for x in LAYERS if x in set(layers))
        self.keyring.maybe_reload()
        run = _Run(self, table)
        if "provenance" in wanted:
            run.provenance()
        if "pseudonym" in wanted or "decoy" in wanted:
            run.tags("pseudonym" in wanted, "decoy" in wanted)
        if "fingerprint" in wanted:
            run.fingerprint()
        if "invisible" in wanted:
            run.invisible()
        candidates = run.candidates(len(wanted), threshold)
        affected: set[str] = set()
        truncated = False
        if candidates and self.subjects_of is not None:
            per_request, truncated = self.subjects_of([c.entry.request_id for c in candidates])
            for c in candidates:
                hashes = per_request.get(c.entry.request_id, set())
                c.subjects = len(hashes)
                affected |= hashes
        return TraceResult(
            candidates=candidates,
            affected_subjects=affected,
            subjects_truncated=truncated,
            rows_read=table.total_rows,
            rows_used=len(table.rows),
            file_format=table.format,
            columns=table.columns,
            layers=wanted,
            hypotheses=run.hypotheses,
        )


class _Run:
    """One trace: the table, its column hypotheses, and the evidence gathered per response."""

    def __init__(self, tracer: Tracer, table: LeakTable) -> None:
        self.t = tracer
        self.table = table
        self.rows = table.rows
        self.width = max((len(r) for r in self.rows), default=0)
        self.key_columns = self._key_columns()
        self.evidence: dict[int, list[Evidence]] = {}
        self.hypotheses: dict[str, int] = {}

    def _cell(self, row: list[Any], col: int) -> Any:
        return row[col] if col < len(row) else None

    def _key_columns(self) -> list[int]:
        """Columns that can hold record keys: short tokens, nearly all distinct."""
        out = []
        for col in range(self.width):
            values = [normalize_anchor(self._cell(r, col)) for r in self.rows]
            present = [v for v in values if v]
            if not present:
                continue
            shaped = sum(1 for v in present if KEY_SHAPE.fullmatch(v))
            # Merged extracts repeat keys (two recipients got the same records): distinct enough
            # is at least two in five.
            if shaped / len(present) >= 0.9 and len(set(present)) / len(present) >= 0.4:
                out.append(col)
        return out

    def _add(self, wm: int, ev: Evidence) -> None:
        self.evidence.setdefault(wm, []).append(ev)

    # -- layer 1: the signed provenance header -----------------------------------------

    def provenance(self) -> None:
        verifier = self.t.verifier
        if verifier is None or not self.table.responses:
            return
        for status, headers, body in self.table.responses:
            report = verifier.verify(status, headers, body)
            if not report.ok or report.provenance is None:
                continue
            wm_text = report.provenance.get("watermark")
            if not isinstance(wm_text, str):
                continue
            self._add(
                wm_int(wm_text),
                Evidence(
                    "provenance",
                    "保存的响应带有效的平台签名与来源标头 (a saved response with a valid platform"
                    " signature and provenance header)",
                    _LOG10_SIGNATURE,
                    {"key_id": report.key_id, "header": headers.get(PROVENANCE)},
                ),
            )

    # -- layers 2 and 4: pseudonyms and decoys, by keyed tag ----------------------------

    def tags(self, pseudonyms: bool, decoys: bool) -> None:
        rows = self.rows[:LOOKUP_ROWS]
        versions = self.t.keyring.versions
        tagkeys = {v: TagKey(self.t.keyring, v) for v in versions}
        # tag → [(row, value column, kind, the value as asked)]
        asked: dict[int, list[tuple[int, int, int, str]]] = {}
        pairs = 0
        for k in self.key_columns:
            anchors = [normalize_anchor(self._cell(r, k)) for r in rows]
            for c in range(self.width):
                if c == k:
                    continue
                pairs += 1
                for i, row in enumerate(rows):
                    anchor = anchors[i]
                    value = self._cell(row, c)
                    if not anchor or value is None:
                        continue
                    text = str(value).strip()
                    if not text:
                        continue
                    for tk in tagkeys.values():
                        if pseudonyms:
                            asked.setdefault(tk.row(anchor, text), []).append((i, c, TAG_ROW, text))
                        if decoys:
                            asked.setdefault(tk.decoy(anchor, text), []).append(
                                (i, c, TAG_DECOY, text)
                            )
            if decoys:  # decoys of datasets whose records name no data subject
                pairs += 1
                for i, anchor in enumerate(anchors):
                    if anchor:
                        for tk in tagkeys.values():
                            asked.setdefault(tk.decoy(anchor, ""), []).append(
                                (i, -1, TAG_DECOY, anchor)
                            )
        if not asked:
            return
        found = self.t.registry.find_tags(asked)
        # (wm, kind) → row → (column, value)
        hits: dict[tuple[int, int], dict[int, tuple[int, str]]] = {}
        for tag, owners in found.items():
            for wm, kind in owners:
                for i, c, asked_kind, text in asked[tag]:
                    if asked_kind == kind:
                        hits.setdefault((wm, kind), {})[i] = (c, text)
        if not hits:
            return
        entries = self.t.registry.by_ids(wm for wm, _ in hits)
        n = len(rows)
        tries = max(1, pairs * len(versions))
        self.hypotheses["tags"] = tries
        groups = max(1, self.t.registry.pseudonym_groups())
        decoys_total = max(1, self.t.registry.decoy_count())
        for (wm, kind), rows_hit in hits.items():
            entry = entries.get(wm)
            if entry is None:
                continue
            h = len(rows_hit)
            columns = sorted(
                {
                    self.table.columns[c] if c < len(self.table.columns) else f"#{c + 1}"
                    for c, _ in rows_hit.values()
                    if c >= 0
                }
            )
            if kind == TAG_ROW:
                space = entry.pseudonym_space or pseudonym_space("id_number")
                per_row = math.log10(groups) - math.log10(space)
                log10_p = math.log10(tries) + _log10_choose(n, h) + h * per_row
                self._add(
                    wm,
                    Evidence(
                        "pseudonym",
                        f"{h} 行的记录编号与假名正是该接收方在这次响应中收到的 ({h} rows pair a"
                        f" record key with exactly the pseudonym this recipient was given)",
                        log10_p,
                        {"rows": h, "columns": columns},
                    ),
                )
            else:
                spaces = [_decoy_space(v) for _, v in rows_hit.values()]
                per_row = math.log10(decoys_total) - min(math.log10(s) for s in spaces)
                log10_p = math.log10(tries) + _log10_choose(n, h) + h * per_row
                self._add(
                    wm,
                    Evidence(
                        "decoy",
                        f"{h} 行是网关为这次响应生成的诱饵记录 ({h} rows are decoys made for this"
                        " response)",
                        log10_p,
                        {"rows": h},
                    ),
                )

    # -- layer 3: the fingerprint --------------------------------------------------------

    def fingerprint(self) -> None:
        if not self.key_columns or not self.rows:
            return
        total_tries = 0
        scored: list[tuple[int, float, dict[str, Any]]] = []  # (wm, log10 tail, details)
        for dataset, specs in self.t.policy.carriers.items():
            compat = {s.field: self._carrier_columns(s) for s in specs}
            fields = [s for s in specs if compat[s.field]]
            if not fields:
                continue
            per_member = len(self.key_columns) * math.prod(len(compat[s.field]) for s in fields)
            for _, recipient, version, _count in self.t.registry.groups([dataset]):
                members = list(self.t.registry.group_members(dataset, recipient, version))
                if not members:
                    continue
                total_tries += len(members) * per_member
                votes = self._votes(
                    Selector(self.t.keyring, recipient, dataset, version), fields, compat
                )
                # One group's members share positions and masks: every member is scored on the
                # same per-position tallies, built once per choice of columns.
                tallies: dict[tuple[int, tuple[int, ...]], _Positions] = {}
                for wm in members:
                    cw = codeword(self.t.keyring, version, wm)
                    best: tuple[float, int, dict[str, tuple[int, _Votes]], _Positions] | None = None
                    for k, per_field in votes.items():
                        picks = {
                            name: max(options, key=lambda o: o[1].agree(cw) - o[1].n / 2)
                            for name, options in per_field.items()
                        }
                        choice = (k, tuple(c for c, _ in picks.values()))
                        tally = tallies.get(choice)
                        if tally is None:
                            tally = tallies[choice] = _Positions([v for _, v in picks.values()])
                        if not tally.positions:
                            continue
                        log10_tail = tally.log10_tail(tally.score(cw))
                        if best is None or log10_tail < best[0]:
                            best = (log10_tail, k, picks, tally)
                    if best is None or best[0] >= 0:
                        continue
                    log10_tail, k, picks, tally = best
                    details = {
                        "bits": tally.n,
                        "agreeing": sum(v.agree(cw) for _, v in picks.values()),
                        "positions": tally.positions,
                        "positions_agreeing": tally.agreeing(cw),
                        "key_column": self._name(k),
                        "columns": {name: self._name(c) for name, (c, _) in picks.items()},
                    }
                    scored.append((wm, log10_tail, details))
        self.hypotheses["fingerprint"] = total_tries
        if not total_tries:
            return
        log_tries = math.log10(total_tries)
        for wm, log10_tail, details in scored:
            log10_p = log_tries + log10_tail
            if log10_p >= 0:
                continue
            m, a = details["positions"], details["positions_agreeing"]
            n, agree = details["bits"], details["agreeing"]
            self._add(
                wm,
                Evidence(
                    "fingerprint",
                    f"有投票的 {m} 个码字位置中 {a} 个与这次响应的指纹码字一致（{n} 个载体位中"
                    f" {agree} 个一致） ({a} of the {m} code-word positions with votes agree with"
                    f" this response's fingerprint code word; {agree} of {n} carrier bits)",
                    log10_p,
                    details,
                ),
            )

    def _name(self, col: int) -> str:
        return self.table.columns[col] if col < len(self.table.columns) else f"column{col + 1}"

    def _carrier_columns(self, spec: CarrierSpec) -> list[int]:
        out = []
        for col in range(self.width):
            values = [
                v for v in (self._cell(r, col) for r in self.rows[:500]) if v not in (None, "")
            ]
            # A fifth is enough: merged extracts mix rows where the field was kept with rows
            # where it was generalised. A wrong column only dilutes the votes with fair coins.
            if values and sum(1 for v in values if spec.carrier.fits(v)) / len(values) >= 0.2:
                out.append(col)
        return out

    def _votes(
        self, select: Selector, fields: list[CarrierSpec], compat: dict[str, list[int]]
    ) -> dict[int, dict[str, list[tuple[int, _Votes]]]]:
        """Per key-column hypothesis, per carrier field, per candidate column: the votes."""
        out: dict[int, dict[str, list[tuple[int, _Votes]]]] = {}
        for k in self.key_columns:
            by_anchor: dict[str, list[list[Any]]] = {}
            for row in self.rows:
                anchor = normalize_anchor(self._cell(row, k))
                if anchor:
                    by_anchor.setdefault(anchor, []).append(row)
            per_field: dict[str, list[tuple[int, _Votes]]] = {}
            for spec in fields:
                options = []
                picks = {a: select(spec.field, a) for a in by_anchor}
                for c in compat[spec.field]:
                    votes = _Votes()
                    for anchor, rows in by_anchor.items():
                        pos, mask, sel = picks[anchor]
                        bits = {spec.carrier.read(self._cell(r, c), sel) for r in rows}
                        bits.discard(None)
                        if len(bits) == 1:  # two copies that disagree carry nothing: erased
                            bit = bits.pop()
                            assert bit is not None
                            votes.add(pos, bit ^ mask)
                    votes.seal()
                    options.append((c, votes))
                per_field[spec.field] = options
            out[k] = per_field
        return out

    # -- layer 5: invisible marks --------------------------------------------------------

    def invisible(self) -> None:
        if not self.table.marks:
            return
        versions = self.t.keyring.versions
        found: dict[int, int] = {}
        for payload in self.table.marks:
            for v in versions:
                wm = invisible_valid(self.t.keyring, v, payload)
                if wm is not None:
                    found[wm] = found.get(wm, 0) + 1
        if not found:
            return
        responses = max(1, self.t.registry.count())
        tries = len(self.table.marks) * len(versions)
        self.hypotheses["invisible"] = tries
        log10_p = math.log10(tries) + math.log10(responses) - 96 * math.log10(2)
        for wm in found:
            self._add(
                wm,
                Evidence(
                    "invisible",
                    "自由文本中的零宽字符标记带有该响应的水印编号与密钥校验 (zero-width marks in free"
                    " text carry this response's watermark id with a valid keyed check)",
                    log10_p,
                    {"watermark_id": wm_hex(wm)},
                ),
            )

    # -- the verdict ---------------------------------------------------------------------

    def candidates(self, layers_run: int, threshold: float) -> list[Candidate]:
        entries = self.t.registry.by_ids(self.evidence)
        out = []
        bound = math.log10(max(1, layers_run))
        for wm, evidence in self.evidence.items():
            entry = entries.get(wm)
            if entry is None:
                continue
            log10_p = min(0.0, bound + min(ev.log10_p for ev in evidence))
            if _p(log10_p) <= threshold:
                out.append(Candidate(entry, evidence, log10_p))
        # Equal evidence (a recipient's pseudonyms are the same in every response it got, so
        # the same rows match each response that held them): more layers first, then the
        # smaller response, which explains the leak more tightly, then the most recent.
        out.sort(
            key=lambda c: (
                round(c.log10_p, 6),
                -len(c.evidence),
                c.entry.records,
                -c.entry.issued_at.timestamp(),
            )
        )
        return out


class _Votes:
    """Votes on the 128 code-word positions; scores a code word with a few popcounts."""

    def __init__(self) -> None:
        self.zeros = [0] * CODE_BITS
        self.ones = [0] * CODE_BITS
        self.n = 0
        self._base = 0
        self._planes: list[tuple[int, int, int]] = []  # (weight, positive mask, negative mask)

    def add(self, pos: int, bit: int) -> None:
        (self.ones if bit else self.zeros)[pos] += 1
        self.n += 1

    def seal(self) -> None:
        # agree(cw) = Σ zeros + Σ_{p in cw} (ones[p] − zeros[p]); the differences are split into
        # binary planes so that the sum over a code word's bits is a handful of popcounts.
        self._base = sum(self.zeros)
        diffs = [o - z for o, z in zip(self.ones, self.zeros, strict=True)]
        top = max((abs(d) for d in diffs), default=0)
        self._planes = []
        for j in range(top.bit_length()):
            pos = neg = 0
            for p, d in enumerate(diffs):
                if (abs(d) >> j) & 1:
                    if d > 0:
                        pos |= 1 << p
                    else:
                        neg |= 1 << p
            self._planes.append((1 << j, pos, neg))

    def agree(self, cw: int) -> int:
        total = self._base
        for weight, pos, neg in self._planes:
            total += weight * ((cw & pos).bit_count() - (cw & neg).bit_count())
        return total


class _Positions:
    """A leak's fingerprint evidence per code-word position, and its exact null distribution.

    Votes on one position are not independent evidence: a code word that has the leaked one's
    bit at that position agrees with every one of them at once, and two code words share about
    half their bits. So the evidence is scored per position: position p leans to the bit most of
    its votes read, with weight q_p = |ones − zeros| (scaled down past `WEIGHT_LIMIT`; a tie
    weighs nothing), and a code word scores the summed weight of the positions whose leaning it
    shares — the same ranking as counting agreeing votes. A code word independent of the leak
    (an innocent response's, even one of the same recipient, dataset and key, whose code word is
    a keyed random expansion of its own id; or any response's, against a file never served or
    scrambled without the keys) has each position's bit by a fair coin, independently of the
    votes. Its score is then the sum of a random half of the weights, whatever the votes are,
    and that tail is computed exactly: at most 128 positions, so at best 2^-128.
    """

    def __init__(self, parts: Sequence[_Votes]) -> None:
        diffs = [sum(v.ones[p] - v.zeros[p] for v in parts) for p in range(CODE_BITS)]
        self.n = sum(v.n for v in parts)
        margin = sum(abs(d) for d in diffs)
        if margin > WEIGHT_LIMIT:
            weights = [max(1, round(abs(d) * WEIGHT_LIMIT / margin)) if d else 0 for d in diffs]
        else:
            weights = [abs(d) for d in diffs]
        self.positions = sum(1 for w in weights if w)
        self._ones = sum(1 << p for p, d in enumerate(diffs) if d > 0)
        self._zeros = sum(1 << p for p, d in enumerate(diffs) if d < 0)
        # score(cw) = Σ weights where cw has the leaning bit, as a few popcounts per binary plane.
        self._planes: list[tuple[int, int, int]] = []  # (plane weight, leaning 1, leaning 0)
        for j in range(max(weights).bit_length()):
            ones = zeros = 0
            for p, w in enumerate(weights):
                if (w >> j) & 1:
                    if diffs[p] > 0:
                        ones |= 1 << p
                    else:
                        zeros |= 1 << p
            self._planes.append((1 << j, ones, zeros))
        self._weights = [w for w in weights if w]
        self._counts: tuple[list[int], int] | None = None

    def score(self, cw: int) -> int:
        total = 0
        for weight, ones, zeros in self._planes:
            total += weight * (
                (cw & ones).bit_count() + zeros.bit_count() - (cw & zeros).bit_count()
            )
        return total

    def agreeing(self, cw: int) -> int:
        """Positions whose leaning the code word shares."""
        return (
            (cw & self._ones).bit_count() + self._zeros.bit_count() - (cw & self._zeros).bit_count()
        )

    def log10_tail(self, score: int) -> float:
        """log10 of the chance that a code word independent of the leak scores `score` or more."""
        if self._counts is None:
            self._counts = _tail_counts(self._weights)
        return _log10_tail(self._counts, score)


def _decoy_space(value: Any) -> float:
    """How many values the decoy's identifier could have taken, judged from its form."""
    text = str(value or "").strip().upper()
    if is_valid_id_number(text):
        return 1e11
    if is_valid_uscc(text):
        return 1e13
    if re.fullmatch(r"[0-9A-F]{20}", text):
        return 16.0**20
    digits = sum(c.isdigit() for c in text)
    return 10.0 ** max(1, digits)
