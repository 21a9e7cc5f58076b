"""`python -m bench`: each suite in its own interpreter; bad names and failed suites say so."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import bench.__main__ as runner


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
