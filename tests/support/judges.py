"""Scripted judges of known behaviour, and labelled pairs they can be checked on.

Each answer of `SAMPLE_PAIRS` carries its quality as `[N]`; people's labels agree with it.
The judges are `(role, prompt) -> reply` scripts (see `tests.support.scripts`)
for the in-process fake chat model or, through `http_responder`, the fake OpenAI server:

- `always_right`: the higher quality wins in both orders (pairwise), or is rated it
  (pointwise);
- `always_first`: the answer shown first wins (pure position bias);
- `always_tie`: never decides;
- `erroring`: never gives a usable reply;
- `longer_wins`: the longer answer wins (pure length bias).
"""

from __future__ import annotations

import re

from tests.support.scripts import judge_json, tag

SAMPLE_PAIRS: list[dict[str, object]] = [
    {"idx": 1, "instruction": "Q1", "input": "", "response1": "[8] short",
     "response2": "[3] much longer text that rambles on", "annotator1": 1, "annotator2": 1,
     "annotator3": 2},
    {"idx": 2, "instruction": "Q2", "input": "ctx", "response1": "[2] x",
     "response2": "[9] long long long long", "annotator1": 2, "annotator2": 2, "annotator3": 2},
    {"idx": 3, "instruction": "Q3", "input": "", "response1": "[7] long long long long",
     "response2": "[4] y", "annotator1": 1, "annotator2": 1, "annotator3": 1},
    {"idx": 4, "instruction": "Q4", "input": "", "response1": "[5] aaa",
     "response2": "[5] bbbbbbbbbb", "annotator1": 0, "annotator2": 0, "annotator3": 0},
]  # fmt: skip
"""PandaLM-layout pairs: 1 (better shorter, annotators 1/1/2), 2 and 3 (better longer),
4 (a tie)."""


def quality(text: str) -> int:
    """The `[N]` an answer carries."""
    match = re.search(r"\[(\d)\]", text)
    if match is None:
        raise ValueError(f"no [N] quality in {text!r}")
    return int(match.group(1))


def always_right(role: str, prompt: str) -> str:
    if role == "rate":
        return str(quality(tag(prompt, "answer")))
    a, b = quality(tag(prompt, "answer_A")), quality(tag(prompt, "answer_B"))
    return judge_json("A" if a > b else "B" if b > a else "tie", a=a, b=b)


def always_first(role: str, prompt: str) -> str:
    return judge_json("A")


def always_tie(role: str, prompt: str) -> str:
    return judge_json("tie")


def erroring(role: str, prompt: str) -> str:
    return "I would rather not say."


def longer_wins(role: str, prompt: str) -> str:
    a, b = len(tag(prompt, "answer_A")), len(tag(prompt, "answer_B"))
    return judge_json("A" if a > b else "B" if b > a else "tie")
