"""The documentation names every setting, and every refusal code the gateway can send."""

from __future__ import annotations

import re

from gateway.settings import REPO_ROOT, SETTINGS

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_every_setting_is_documented_with_its_variable_and_flag() -> None:
    missing = [
        s.name
        for s in SETTINGS
        if f"`{s.env}`" not in README or f"`--{s.name.replace('_', '-')}`" not in README
    ]
    assert missing == []


def test_every_refusal_code_in_the_code_is_in_the_readme() -> None:
    codes: set[str] = set()
    for path in (REPO_ROOT / "gateway").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        codes |= set(re.findall(r'Refusal\(\s*"([a-z_]+)"', text))
        codes |= set(re.findall(r'\(\s*"([a-z_]+)",\s*\d{3},\s*"', text))
    codes |= {"unauthenticated", "forbidden", "route_not_allowed"}
    undocumented = sorted(c for c in codes if f"`{c}`" not in README)
    assert undocumented == []
