"""The README's configuration table matches `Context`: names and defaults."""

from __future__ import annotations

import re
from pathlib import Path

from graph import Context

README = Path(__file__).resolve().parents[2] / "README.md"


def table_rows() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- config-table:start -->")[1].split("<!-- config-table:end -->")[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", table, flags=re.MULTILINE)
    return dict(rows)


def test_every_context_field_is_documented_with_its_default() -> None:
    rows = table_rows()
    assert list(rows) == list(Context.model_fields)
    defaults = Context().model_dump()
    for name, documented in rows.items():
        assert documented == repr(defaults[name]), name
