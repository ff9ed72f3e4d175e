"""The README states what the code does: the table of choices is the one in choices.py."""

from __future__ import annotations

from azimds.choices import CHOICES

from .conftest import ROOT


def test_readme_choices_table_matches_the_code():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- choices:start -->")[1].split("<!-- choices:end -->")[0]
    rows = [line for line in block.strip().splitlines()[2:]]
    assert rows == [f"| {c.topic} | {c.decision} |" for c in CHOICES]


def test_readme_shows_the_two_commands_first():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make serve") < readme.index("make test") < readme.index("## Profiles")
