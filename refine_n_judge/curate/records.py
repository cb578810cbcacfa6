"""The records `curate` reads and writes, one pydantic model per line format.

- `InputItem`: one validated input row, ready for the graph.
- `FailureRow`: a line of failures.jsonl (a bad input row, or an item the models could not
  finish, with its partial chain so nothing is lost).
- `SftRow` / `SftChatRow` / `DpoRow`: lines of sft.jsonl and dpo.jsonl, in the layouts
  TRL's SFTTrainer (prompt/completion, or messages) and DPOTrainer (prompt/chosen/rejected,
  standard or conversational) load as they are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nodes.state import ChainState, ChatMessage

PairKind = Literal["accepted_step", "final_over_rejected", "transitive"]


class InputItem(BaseModel):
    """One input row turned into what the graph takes, with where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answer: str | None = None
    reference: str | None = None
    history: tuple[ChatMessage, ...] | None = Field(
        default=None,
        description="A chat row's turns before the question (None for a plain row).",
    )
    source: str = Field(description="The input file the row came from.")
    line: int = Field(description="1-based line (row number for Parquet) in that file.")

    def graph_input(self) -> dict[str, Any]:
        """The `InputState` dict for `graph.ainvoke`."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "reference": self.reference,
            "history": None if self.history is None else [m.model_dump() for m in self.history],
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
    """One line of sft.jsonl for a plain question: the question and its chain's best answer."""

    id: str
    prompt: str
    completion: str


class SftChatRow(BaseModel):
    """One line of sft.jsonl for a chat row: the whole conversation, ending with the best
    answer as the assistant's turn (TRL's conversational `messages` format)."""

    id: str
    messages: list[ChatMessage]


SftRecord = SftRow | SftChatRow


class DpoRow(BaseModel):
    """One line of dpo.jsonl: an answer the judges preferred over another for the prompt.

    Plain questions use TRL's standard format (strings); chat rows its conversational one:
    `prompt` is the conversation up to the question, `chosen`/`rejected` one assistant
    message each.
    """

    id: str
    prompt: str | list[ChatMessage]
    chosen: str | list[ChatMessage]
    rejected: str | list[ChatMessage]
    chosen_iteration: int
    rejected_iteration: int
    pair: PairKind = Field(
        description=(
            "accepted_step: a refinement the judges accepted over the answer it replaced; "
            "final_over_rejected: the final answer over a refinement the judges rejected "
            "because they preferred the final answer; transitive (--dpo-pairs all only): a "
            "later chain answer over an earlier, non-adjacent one, through accepted steps."
        )
    )
    outcome: str = Field(
        description=(
            "The decision behind the pair: refined (accepted step), previous (the judges "
            "preferred the final answer), transitive."
        )
    )
    confidence: float | None = Field(
        default=None,
        description="The decision's confidence (for transitive pairs: the lowest of its steps).",
    )
