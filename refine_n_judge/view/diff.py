"""A word-level diff between two answers, as segments the item page marks up.

Words and the whitespace between them are the tokens, so the new answer reads back exactly
from its `equal` and `insert` segments and the old one from `equal` and `delete`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

MAX_TOKENS = 20_000
"""Longer answers are not diffed (difflib's matching grows quadratically in the worst case)."""

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")

Op = Literal["equal", "insert", "delete"]


@dataclass(frozen=True)
class Segment:
    """A run of text that both answers share, or that only the new or old one has."""

    op: Op
    text: str


def word_diff(old: str, new: str) -> list[Segment] | None:
    """The segments turning `old` into `new`; None when either is too long to diff."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    if len(a) > MAX_TOKENS or len(b) > MAX_TOKENS:
        return None
    segments: list[Segment] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            _append(segments, "equal", "".join(a[i1:i2]))
            continue
        if tag in ("delete", "replace"):
            _append(segments, "delete", "".join(a[i1:i2]))
        if tag in ("insert", "replace"):
            _append(segments, "insert", "".join(b[j1:j2]))
    return segments


def _append(segments: list[Segment], op: Op, text: str) -> None:
    if segments and segments[-1].op == op:
        segments[-1] = Segment(op, segments[-1].text + text)
    else:
        segments.append(Segment(op, text))


def changed_words(segments: list[Segment]) -> tuple[int, int]:
    """Words removed and added (whitespace and punctuation not counted)."""
    removed = sum(len(re.findall(r"\w+", s.text)) for s in segments if s.op == "delete")
    added = sum(len(re.findall(r"\w+", s.text)) for s in segments if s.op == "insert")
    return removed, added
