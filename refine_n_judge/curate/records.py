"""The records `curate` reads and writes, one pydantic model per line format.

- `InputItem`: one validated input row, ready for the graph.
- `FailureRow`: a line of failures.jsonl (a bad input row, or an item the models could not
  finish, with its partial chain so nothing is lost).
- `SftRow` / `DpoRow`: lines of sft.jsonl and dpo.jsonl, in the column layout TRL's
  SFTTrainer (prompt/completion) and DPOTrainer (prompt/chosen/rejected) load as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from graph.state import ChainState

PairKind = Literal["accepted_step", "final_over_rejected", "ordered"]


class InputItem(BaseModel):
    """One input row turned into what the graph takes, with where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answer: str | None = None
    reference: str | None = None
    source: str = Field(description="The input file the row came from.")
    line: int = Field(description="1-based line (row number for Parquet) in that file.")

    def graph_input(self) -> dict[str, Any]:
        """The `InputState` dict for `graph.ainvoke`."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "reference": self.reference,
        }


class FailureRow(BaseModel):
    """One line of failures.jsonl.

    `id` is the record key, unique across chains.jsonl and failures.jsonl: the item's id,
    or `<file>:<line>` for an input row that has no usable id or repeats one already seen.
    """

    id: str
    item_id: str | None = Field(default=None, description="The id the row claimed, if any.")
    stage: str = Field(
        description=(
            "input (a bad row), graph (the graph run raised), or the node whose model call "
            "failed: initial_answer, feedback, refine, alternate_refine, judge."
        )
    )
    kind: str = Field(
        description=(
            "What went wrong: malformed, missing_field, empty_field, wrong_type, too_long, "
            "duplicate_id, unreadable_file (input); model_error, judge_error, no_quorum "
            "(models); exception (graph)."
        )
    )
    reason: str
    model: str | None = None
    raw: str | None = Field(default=None, description="The model's (or the row's) raw text.")
    iteration: int | None = None
    source: str | None = None
    line: int | None = None
    field: str | None = None
    state: ChainState | None = Field(
        default=None, description="The partial chain of an item the models could not finish."
    )

    def to_json_line(self) -> str:
        """One JSON line (no newline inside)."""
        return self.model_dump_json(exclude_none=True)


class SftRow(BaseModel):
    """One line of sft.jsonl: the question and the best answer of its chain."""

    id: str
    prompt: str
    completion: str


class DpoRow(BaseModel):
    """One line of dpo.jsonl: an answer the judge preferred over another for the prompt."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_iteration: int
    rejected_iteration: int
    pair: PairKind = Field(
        description=(
            "accepted_step: a refinement the judge accepted over its predecessor; "
            "final_over_rejected: the final answer over the last rejected refinement; "
            "ordered: a later chain answer over an earlier one (--dpo-pairs all)."
        )
    )
    rejected_outcome: str | None = Field(
        default=None,
        description="For final_over_rejected: the judge's outcome (previous, tie, inconsistent).",
    )
