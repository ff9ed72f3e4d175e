"""The README states what the code does: the table of choices is the one in choices.py."""

from __future__ import annotations

from azimds.emulator.service.choices import markdown_table
from tests.support import ROOT


def test_readme_choices_table_matches_the_code():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- choices:start -->\n")[1].split("\n<!-- choices:end -->")[0]
    assert block == markdown_table(), "run scripts/sync_readme.py"


def test_readme_shows_the_two_commands_first():
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make serve") < readme.index("make test") < readme.index("## Profiles")
