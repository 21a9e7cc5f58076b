"""`python -m bench`: each suite in its own interpreter; bad names and failed suites say so."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as runner
from bench.suites import journal as journal_suite

RESULTS = Path(__file__).parent.parent / "bench" / "results"


def test_a_suite_runs_in_its_own_interpreter_and_hands_back_its_figures() -> None:
    data, markdown = runner._in_own_process("scanner", quick=True)
    assert markdown.startswith("## Scanner accuracy")
    assert isinstance(data, dict) and data["held_out"]["strings"] > 0


@pytest.mark.parametrize("argv", [["nope"], ["--one", "out.json"], ["--one", "out.json", "a", "b"]])
def test_an_unknown_suite_or_a_misused_one_is_refused_clearly(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        runner.main(argv)
    assert stop.value.code == 2
    assert "基准" in capsys.readouterr().err


def test_when_a_suite_fails_then_the_last_results_are_left_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "latest.md").write_text("earlier results", encoding="utf-8")
    monkeypatch.setattr(runner, "RESULTS", tmp_path)

    def fails(name: str, quick: bool) -> tuple[object, str]:
        raise subprocess.CalledProcessError(1, ["python", "-m", "bench", name])

    monkeypatch.setattr(runner, "_in_own_process", fails)
    assert runner.main(["scanner", "--quick"]) == 1
    assert (tmp_path / "latest.md").read_text(encoding="utf-8") == "earlier results"


def test_the_committed_results_hold_no_unfilled_placeholder() -> None:
    # A format field left in a plain string shows as "{seconds:.0f}"; statuses as "{200: 4699}".
    for path in RESULTS.glob("**/*.md"):
        left = re.findall(r"\{[a-z_][a-z_0-9.]*(?::[^}]*)?\}", path.read_text("utf-8"))
        assert not left, f"{path.name}: {left}"


def test_when_a_suite_s_own_interpreter_fails_then_the_runner_hears_of_it() -> None:
    with pytest.raises(subprocess.CalledProcessError):
        runner._in_own_process("nope", quick=True)


def test_a_suite_runs_from_wherever_pytest_was_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # `bench` is not installed: the child must start in the repo
    _, markdown = runner._in_own_process("scanner", quick=True)
    assert markdown.startswith("## Scanner accuracy")


def _journal_figures(rounds: int) -> dict[str, Any]:
    throughput = {
        "mode": "coroutines",
        "writers": 64,
        "events_per_s": 31807,
        "events_per_s_range": [27939, 34632],
        "fsyncs_per_s": 497,
        "events_per_fsync": 64.0,
        "inline": 0,
        "verified": True,
    }
    latency = {
        "concurrency": 1,
        "requests": 3000,
        "inline": 2913,
        "audit_p50_ms": 0.274,
        "audit_p50_ms_range": [0.263, 0.284],
        "audit_p99_ms": 0.774,
        "other_stages_p50_ms": 1.048,
    }
    return {
        "filesystem": "ext4 (/dev/vda)",
        "seconds": 2.0,
        "rounds": rounds,
        "seal_seconds": 0.05,
        "fsync_floor": {
            "p50_ms": 0.157,
            "p99_ms": 0.26,
            "idle_p50_ms": 0.182,
            "in_place_idle_p50_ms": 0.162,
        },
        "throughput": [throughput],
        "stage_latency": [latency],
    }


@pytest.mark.parametrize("rounds", [1, 3])
def test_the_journal_section_says_what_was_measured(rounds: int) -> None:
    markdown = journal_suite._markdown(_journal_figures(rounds))
    assert "{" not in markdown
    assert "for 2 s and waits" in markdown and "every `audit_seal_seconds`, 0.05 s" in markdown
    assert f"median events/s of {rounds}," in markdown
    assert f"the round (of {rounds}) with the median" in markdown
    assert "| 64 | coroutines | 31807 | 27939–34632 | 497 | 64.0 | 0 | yes |" in markdown
    assert "| 1 | 3000 | 0.274 | 0.263–0.284 | 0.774 | 2913 | 1.048 |" in markdown
    assert "0.274 ms — met" in markdown


def test_the_results_name_the_commit_they_measured() -> None:
    import subprocess

    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert runner.code_version().startswith(f"commit {head}")
