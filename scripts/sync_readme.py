"""Rewrite the README's generated tables (choices, options) from the code (run after changing either)."""

import re
from pathlib import Path

from azimds.emulator.config import markdown_table as options_table
from azimds.emulator.service.choices import markdown_table as choices_table

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
for name, table in (("choices", choices_table()), ("options", options_table())):
    text = re.sub(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)",
                  lambda m, t=table: m.group(1) + t + m.group(2), text, flags=re.S)
readme.write_text(text)
