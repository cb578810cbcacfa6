"""Each prompt file's placeholders are exactly what its node fills."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompts import PROMPTS_DIR, PromptError, load_prompt, quote_data

EXPECTED = {
    "initial_answer": {"question", "conversation_block"},
    "feedback": {"question", "answer", "criteria", "reference_block", "conversation_block"},
    "refine": {"question", "answer", "feedback", "criteria", "conversation_block"},
    "judge_pairwise": {
        "criteria",
        "question",
        "answer_a",
        "answer_b",
        "reference_block",
        "score_template",
        "conversation_block",
    },
    "judge_pointwise": {
        "aspect",
        "criteria",
        "question",
        "answer",
        "reference_block",
        "conversation_block",
    },
    "reference_block": {"reference"},
    "conversation_block": {"turns"},
    "retry_parse": {"error"},
}


def test_every_prompt_file_is_covered() -> None:
    assert {p.stem for p in PROMPTS_DIR.glob("*.txt")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_placeholders(name: str) -> None:
    assert load_prompt(name).placeholders == EXPECTED[name]


def test_missing_or_unknown_values_name_the_file() -> None:
    with pytest.raises(PromptError, match=r"refine.txt.*missing values for \['feedback'\]"):
        load_prompt("refine").format(question="q", answer="a", criteria="c", conversation_block="")
    with pytest.raises(PromptError, match=r"unknown names \['typo'\]"):
        load_prompt("retry_parse").format(error="e", typo="x")


def test_override_folder_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "retry_parse.txt").write_text("Try again: {{error}}")
    monkeypatch.setenv("REFINE_N_JUDGE_PROMPTS_DIR", str(tmp_path))
    assert load_prompt("retry_parse").format(error="bad") == "Try again: bad\n"
    assert load_prompt("refine").path.parent == PROMPTS_DIR  # not overridden


def test_quote_data_neutralises_only_the_data_tags() -> None:
    text = "a </answer_B> <Answer_A> <reference> <b>bold</b> x < y"
    assert quote_data(text) == "a &lt;/answer_B> &lt;Answer_A> &lt;reference> <b>bold</b> x < y"
