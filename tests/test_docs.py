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


def test_the_readme_profile_example_serves_and_answers_at_once(tmp_path):
    """The Profiles section's example is a working profile, and nothing in it makes a client wait."""
    import subprocess
    import time

    from azimds import Emulator
    from tests.support import AZIMDS

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Profiles")[1]
    example = section.split("```yaml\n")[1].split("```")[0]
    path = tmp_path / "vm.yaml"
    path.write_text(example)
    with Emulator(path, rate_limit=None) as imds:
        started = time.monotonic()
        run = subprocess.run([*AZIMDS, "tags", "tag_key", "--endpoint", imds.url], capture_output=True, text=True,
                             timeout=30)
        assert (run.returncode, run.stdout) == (0, "some-value\n"), run.stderr
        assert time.monotonic() - started < 5


def test_make_serve_installs_no_test_tools():
    makefile = (ROOT / "Makefile").read_text()
    serve_stamp = makefile.split("$(VENV)/.serve:")[1].split("\n\n")[0]
    assert "[emulator]" in serve_stamp and "test" not in serve_stamp.split("install")[1]
