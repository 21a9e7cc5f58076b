"""`shareguard grants expiring --days N`: a count beyond the working-day calendar is refused."""

from __future__ import annotations

import pytest

from gateway.cli import main
from gateway.settings import Settings
from gateway.workdays import MAX_WORKING_DAYS


def test_when_days_is_beyond_the_calendar_then_the_command_exits_2_and_says_why(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    code = main(["grants", "expiring", "--days", "99999", "--home", str(settings.home)])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"must be at most {MAX_WORKING_DAYS}" in err and "Traceback" not in err
    assert out == ""


def test_when_days_is_at_the_limit_then_the_command_answers(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    argv = ["grants", "expiring", "--days", str(MAX_WORKING_DAYS), "--json"]
    assert main([*argv, "--home", str(settings.home)]) == 0
    assert capsys.readouterr().err == ""
