"""The typed chain state of Refine-n-Judge and the records it is made of.

`ChainState` is what `graph.invoke()` returns (as a dict; `ChainState.model_validate`
turns it back into the model) and what the `curate` command writes, one JSON line per item.
Lists grow through reducers, so each node returns only what it adds.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from langgraph.managed import RemainingSteps
from langgraph.types import Overwrite
from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

Role = Literal["initial", "refiner", "alternate_refiner"]
"""Who produced an answer: the input (or the initial-answer generation), the primary
refiner, or the alternate refiner that may switch in near termination."""

CallWinner = Literal["refined", "previous", "tie", "error"]
"""What one judge call says, already mapped from its A/B letters to the two answers."""

Outcome = Literal["refined", "previous", "inconsistent", "tie", "error"]
"""What one judge concludes from its pair of position-swapped calls."""

StopReason = Literal[
    "rejected",
    "inconsistent",
    "tie",
    "judge_error",
    "no_quorum",
    "identical",
    "max_iterations",
    "model_error",
    "step_limit",
]

JudgeMode = Literal["pairwise", "pointwise"]
ScoreSource = Literal["logprobs", "sampled", "cached"]
"""Where a pointwise score came from: the expected digit under the token logprobs, the
digit the model wrote (the endpoint gave no logprobs), or the previous iteration's score."""
Position = Literal["refined_first", "refined_second", "alone"]
"""Where the refined answer sat in a judge call (`alone` for pointwise scoring)."""


class Answer(BaseModel):
    """One answer of the chain (`Ans0..Ansn`), or a rejected candidate."""

    text: str
    iteration: int = Field(description="0 for the initial answer, i for the i-th refinement.")
    model: str = Field(
        description="Name of the model that wrote it; `input` if it came from the data."
    )
    role: Role
    explanation: str | None = Field(
        default=None, description="The refiner's one-sentence explanation of what it changed."
    )
    feedback: str | None = Field(
        default=None, description="The feedback on the previous answer that this answer acts on."
    )


class JudgeCall(BaseModel):
    """One judgment of the candidate against the current answer by one judge model.

    Pairwise: one call, one ordering of the pair. Pointwise: each answer scored on its own
    (the two scores, and the margin rule's winner, in one record; position `alone`).
    """

    iteration: int
    judge_model: str
    mode: JudgeMode = "pairwise"
    position: Position
    candidate_role: Role = Field(description="Which refiner wrote the candidate being judged.")
    scores_refined: dict[str, float] = Field(default_factory=dict)
    scores_previous: dict[str, float] = Field(default_factory=dict)
    total_refined: float | None = None
    total_previous: float | None = None
    winner: CallWinner
    justification: str | None = None
    confidence: float | None = Field(
        default=None,
        description="Probability (from logprobs) or normalised score margin behind this call.",
    )
    probability_refined: float | None = Field(
        default=None,
        description="Pairwise with logprobs: the judge's probability that the refinement wins.",
    )
    score_source: ScoreSource | None = Field(
        default=None, description="Pointwise: where the refined answer's score came from."
    )
    raw: str | None = Field(
        default=None, description="The judge's raw reply, kept when it could not be parsed."
    )
    error: str | None = None
    attempts: int = 1


class Verdict(BaseModel):
    """One judge's conclusion about one candidate, from its (swapped) calls."""

    judge_model: str
    mode: JudgeMode = "pairwise"
    outcome: Outcome
    confidence: float | None = None


class Decision(BaseModel):
    """What the judge step decided for one candidate refinement."""

    iteration: int
    candidate_role: Role
    candidate_model: str
    verdicts: list[Verdict]
    answered: int = Field(description="Judges whose verdict was not an error.")
    votes_for_refined: int
    quorum: int
    accepted: bool
    outcome: Outcome | Literal["no_quorum", "identical"]
    confidence: float | None = None


class Failure(BaseModel):
    """A model call that could not be completed after retries; the chain so far is kept."""

    stage: str = Field(description="Node that failed: initial_answer, feedback, refine or judge.")
    model: str
    reason: str
    raw: str | None = None
    iteration: int | None = None


class TokenUsage(BaseModel):
    """Calls and tokens of one model in one node."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = Field(
        default=False, description="True when some counts came from tiktoken, not the model."
    )

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            estimated=self.estimated or other.estimated,
        )


UsageTable = dict[str, dict[str, TokenUsage]]
"""Usage by model name, then node name."""


def merge_usage(left: UsageTable | None, right: UsageTable | None) -> UsageTable:
    """Reducer: add the usage a node reports to what the state already holds.

    The result holds plain dicts (see `plain_update`); the state model reads them back as
    `TokenUsage`.
    """
    merged: dict[str, dict[str, Any]] = {
        model: dict(nodes) for model, nodes in (left or {}).items()
    }
    for model, nodes in (right or {}).items():
        target = merged.setdefault(model, {})
        for node, usage in nodes.items():
            added = TokenUsage.model_validate(usage)
            if node in target:
                added = TokenUsage.model_validate(target[node]) + added
            target[node] = added.model_dump()
    return merged  # type: ignore[return-value]


def plain_update(update: Any) -> Any:
    """A node's state update with every record as plain JSON-native data.

    The channels (and so the checkpoints) hold only dicts, lists and scalars: a checkpoint
    loads without any type of this package being registered with LangGraph's serializer
    (no "unregistered type" warning, nothing refused under `LANGGRAPH_STRICT_MSGPACK`), and
    each node still sees typed models, since the state is validated into `LoopState`.
    """
    if not isinstance(update, dict):
        return update
    return {key: _plain(value) for key, value in update.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Overwrite):
        return Overwrite(_plain(value.value))
    return to_jsonable_python(value)


class ChatMessage(BaseModel):
    """One turn of a conversation that comes before the question (chat rows)."""

    role: Literal["system", "user", "assistant"]
    content: str


class InputState(BaseModel):
    """What a caller passes to the graph: a question and, optionally, an answer to refine.

    Each input on a thread starts a new chain: fields it leaves out are empty, not the
    previous run's (run with `None` to resume an interrupted chain instead).
    """

    question: str = Field(min_length=1, description="The prompt/question the answers respond to.")
    answer: str | None = Field(
        default=None,
        description="The initial answer Ans0. When missing, the refiner model generates one.",
    )
    reference: str | None = Field(
        default=None, description="A trusted reference answer; the judge sees it when given."
    )
    id: str | None = Field(default=None, description="Your id for the item; kept in the output.")
    history: list[ChatMessage] | None = Field(
        default=None,
        description=(
            "For a chat row: the turns before the question (system prompt and earlier user and "
            "assistant turns, oldest first), which every prompt shows as context. None for a "
            "plain question; a list (even empty) marks the item as a conversation, exported "
            "in TRL's conversational format."
        ),
    )


class ChainState(InputState):
    """The full state of one item's run: the accepted chain and every judgment behind it."""

    chain: Annotated[list[Answer], operator.add] = Field(default_factory=list)
    judgments: Annotated[list[JudgeCall], operator.add] = Field(default_factory=list)
    decisions: Annotated[list[Decision], operator.add] = Field(default_factory=list)
    failures: Annotated[list[Failure], operator.add] = Field(default_factory=list)
    usage: Annotated[UsageTable, merge_usage] = Field(default_factory=dict)
    feedback: str | None = Field(default=None, description="Feedback on the current answer.")
    candidate: Answer | None = Field(
        default=None, description="The refinement waiting for the judge (working field)."
    )
    last_rejected: Answer | None = Field(
        default=None, description="The last refinement the judge did not accept."
    )
    iteration: int = Field(default=0, description="Primary refinements attempted so far.")
    stop_reason: StopReason | None = None

    @property
    def is_conversation(self) -> bool:
        """True for a chat row (its exports use the conversational format)."""
        return self.history is not None

    def prompt_messages(self) -> list[ChatMessage]:
        """The conversation up to and including the question, as chat messages."""
        return [*(self.history or []), ChatMessage(role="user", content=self.question)]

    @property
    def final_answer(self) -> Answer | None:
        """The best answer: the last accepted one."""
        return self.chain[-1] if self.chain else None

    @property
    def accepted_refinements(self) -> int:
        """How many refinements the judge accepted (chain length minus the initial answer)."""
        return max(len(self.chain) - 1, 0)

    def to_json_line(self) -> str:
        """One JSON line with no newline inside, for JSONL outputs."""
        return self.model_dump_json()

    @classmethod
    def from_json_line(cls, line: str) -> ChainState:
        """Load a state written by `to_json_line`."""
        return cls.model_validate_json(line)


class LoopState(ChainState):
    """What the nodes see: the chain state plus LangGraph's step budget for the run.

    `remaining_steps` is a managed value (not stored, not in the output): the routers
    end the chain with `step_limit` before the run's recursion limit would raise.
    """

    remaining_steps: RemainingSteps = Field(default=1_000_000)
