"""The command line: every command parses, bad input exits non-zero with a readable message."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import build_parser, main
from gateway.settings import Settings


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--proxy-port", "9000"],
        ["demo", "--upstream", "http://127.0.0.1:9999"],
        ["audit", "search", "--user", "u", "--json"],
        ["audit", "verify", "--json"],
    ],
)
def test_every_command_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.command == argv[0]


def test_when_a_setting_is_malformed_then_the_command_exits_2_naming_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["audit", "verify", "--proxy-port", "eighty"]) == 2
    assert "proxy_port" in capsys.readouterr().err


def test_when_a_search_time_is_unreadable_then_the_command_exits_2(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "search", "--home", str(settings.home), "--since", "last tuesday"]) == 2
    assert "last tuesday" in capsys.readouterr().err


def test_when_there_is_no_journal_yet_then_verify_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--home", str(tmp_path / "empty")]) == 2
    assert "journal" in capsys.readouterr().err
