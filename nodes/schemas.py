"""The JSON replies the refine and judge prompts ask for, lenient in what they accept.

Field aliases take the paper's own output format (appendix C: `"A"`, `"B"`, `"answer"`)
as well as ours; scores written as `"8"` or `"8/10"` are read as numbers.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

_SCORE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*\d+(?:\.\d+)?)?\s*$")


class RefineReply(BaseModel):
    """The refiner's reply: a one-sentence explanation, then the refined answer."""

    model_config = ConfigDict(populate_by_name=True)

    explanation: str = Field(description="One sentence on what was changed and why.")
    answer: str = Field(
        min_length=1,
        validation_alias=AliasChoices("answer", "refined_answer", "refined"),
        description="The complete refined answer.",
    )

    @field_validator("explanation", "answer", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value


def _coerce_scores(value: object) -> object:
    if not isinstance(value, dict):
        return value
    scores: dict[str, float] = {}
    for key, raw in value.items():
        if isinstance(raw, str):
            match = _SCORE.match(raw)
            if match is None:
                raise ValueError(f"score {key!r} is not a number: {raw!r}")
            raw = float(match.group(1))
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError(f"score {key!r} is not a number: {raw!r}")
        scores[str(key).strip().lower().replace(" ", "_")] = float(raw)
    return scores


class PairwiseJudgeReply(BaseModel):
    """The judge's reply for one ordering: reasons first, then scores, then the winner."""

    model_config = ConfigDict(populate_by_name=True)

    justification: str = Field(
        default="",
        validation_alias=AliasChoices("justification", "reasoning", "reason"),
        description="Why the better answer is better.",
    )
    scores_a: dict[str, float] = Field(
        validation_alias=AliasChoices("scores_a", "A", "a", "scores_A", "answer_a"),
        description="Score 0-10 per criterion for answer A.",
    )
    scores_b: dict[str, float] = Field(
        validation_alias=AliasChoices("scores_b", "B", "b", "scores_B", "answer_b"),
        description="Score 0-10 per criterion for answer B.",
    )
    winner: Literal["A", "B", "tie"] = Field(
        validation_alias=AliasChoices("winner", "answer", "better", "verdict"),
        description="`A`, `B` or `tie`.",
    )

    @field_validator("scores_a", "scores_b", mode="before")
    @classmethod
    def _scores(cls, value: object) -> object:
        return _coerce_scores(value)

    @field_validator("scores_a", "scores_b")
    @classmethod
    def _score_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0 <= v <= 10}
        if bad:
            raise ValueError(f"scores must be between 0 and 10: {bad}")
        if not value:
            raise ValueError("no scores given")
        return value

    @field_validator("winner", mode="before")
    @classmethod
    def _winner(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip().strip(".\"'").lower()
        for prefix in ("answer_", "answer ", "response "):
            text = text.removeprefix(prefix)
        if text in {"a", "b"}:
            return text.upper()
        if text in {"tie", "equal", "draw", "both", "neither", "none"}:
            return "tie"
        return value
