"""`python -m bench [suite ...] [--quick]`: run the suites, write bench/results/latest.{md,json}."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import tempfile
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
    parser.add_argument("--one", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES]
    if unknown:
        parser.error(f"没有这个基准 (no such suite): {', '.join(unknown)}")
    if args.one:
        # One suite, in this process, its figures to FILE: how the run below calls each suite.
        if len(args.suites) != 1:
            parser.error("--one 只运行一个基准 (--one runs exactly one suite)")
        [name] = args.suites
        data, markdown = importlib.import_module(f"bench.suites.{name}").run(quick=args.quick)
        Path(args.one).write_text(
            json.dumps({"data": data, "markdown": markdown}, ensure_ascii=False), encoding="utf-8"
        )
        return 0
    chosen = args.suites or list(SUITES)
    figures: dict[str, object] = {}
    sections: list[str] = []
    for name in chosen:
        print(f"基准 bench: {name} ...", flush=True)
        started = time.perf_counter()
        try:
            data, markdown = _in_own_process(name, args.quick)
        except subprocess.CalledProcessError as exc:
            # The suite printed its own traceback; keep the last results as they were.
            print(
                f"基准 {name} 失败，结果未写入 (suite {name} failed, exit {exc.returncode}; "
                "results left as they were)",
                file=sys.stderr,
            )
            return 1
        figures[name] = data
        sections.append(markdown)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
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
        f"Run {meta['when']} of {meta['code']} on Python {meta['python']} ({meta['machine']}), "
        f"{'quick' if args.quick else 'full'} run. Ratios compare figures taken in the same run.\n"
    )
    (RESULTS / "latest.md").write_text(header + "\n" + "\n".join(sections), encoding="utf-8")
    print(f"结果 results: {RESULTS / 'latest.md'}")
    return 0


def _in_own_process(name: str, quick: bool) -> tuple[object, str]:
    """Each suite in a fresh interpreter: what an earlier suite left in memory (100,000 grants,
    a scanner corpus) would otherwise slow the garbage collector in every later one."""
    with tempfile.TemporaryDirectory(prefix="shareguard-bench-") as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", "bench", name, "--one", str(out)]
        # From the repository, whatever the caller's directory: `bench` is not an installed package.
        subprocess.run(
            [*command, "--quick"] if quick else command,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        result = json.loads(out.read_text(encoding="utf-8"))
    return result["data"], str(result["markdown"])


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it: results are only
    comparable with the code they came from."""
    repo = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit (no git here)"
    return f"commit {commit}" + (" with uncommitted changes" if changed else "")


if __name__ == "__main__":
    sys.exit(main())
