"""Rewrite the README's table of choices from src/azimds/choices.py (run after adding a choice)."""

import re
from pathlib import Path

from azimds.choices import markdown_table

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
text = re.sub(r"(<!-- choices:start -->\n).*?(\n<!-- choices:end -->)",
              lambda m: m.group(1) + markdown_table() + m.group(2), text, flags=re.S)
readme.write_text(text)
