"""`python -m bench [suite ...] [--quick]`: run the suites, write bench/results/latest.{md,json}."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SUITES = ("proxy", "decisions", "scanner", "shaping", "journal", "detection", "watermark")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description="ShareGuard benchmarks")
    parser.add_argument(
        "suites", nargs="*", help=f"suites to run (default: all of {', '.join(SUITES)})"
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke check")
    args = parser.parse_args(argv)
    chosen = args.suites or list(SUITES)
    figures: dict[str, object] = {}
    sections: list[str] = []
    for name in chosen:
        print(f"基准 bench: {name} ...", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"bench.suites.{name}")
        data, markdown = module.run(quick=args.quick)
        figures[name] = data
        sections.append(markdown)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "quick": args.quick,
        "suites": chosen,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps({"meta": meta, "figures": figures}, ensure_ascii=False, indent=2) + "\n",
        encoding="utf-8",
    )
    header = (
        "# ShareGuard benchmark results\n\n"
        f"Run {meta['when']} on Python {meta['python']} ({meta['machine']}), "
        f"{'quick' if args.quick else 'full'} run. Ratios compare figures taken in the same run.\n"
    )
    (RESULTS / "latest.md").write_text(header + "\n" + "\n".join(sections), encoding="utf-8")
    print(f"结果 results: {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
