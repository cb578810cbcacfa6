"""What `judge-check` writes per pair: both directions as the judge node left them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from nodes.state import ChainState, Decision, JudgeCall, TokenUsage
from refine_n_judge.judge_check.readers import Side

DirectionName = Literal["a_refines_b", "b_refines_a"]


class DirectionResult(BaseModel):
    """One answer judged as the refinement of the other, through the real judge node."""

    state: ChainState | None = Field(
        default=None, description="The state after the judge node (None when the run raised)."
    )
    error: str | None = Field(default=None, description="The exception, when the run raised.")
    seconds: float = 0.0

    @property
    def decision(self) -> Decision | None:
        """The judge node's decision, if it made one."""
        if self.state is None or not self.state.decisions:
            return None
        return self.state.decisions[-1]

    @property
    def accepted(self) -> bool:
        """True when the judge accepted the refinement."""
        decision = self.decision
        return decision is not None and decision.accepted

    @property
    def outcome(self) -> str:
        """The decision's outcome, or `exception` when the run raised."""
        decision = self.decision
        return "exception" if decision is None else decision.outcome

    @property
    def judgments(self) -> list[JudgeCall]:
        """Every judge call made for this direction."""
        return [] if self.state is None else self.state.judgments

    def usage(self) -> TokenUsage:
        """Calls and tokens of every judge model in this direction."""
        total = TokenUsage()
        if self.state is not None:
            for nodes in self.state.usage.values():
                for usage in nodes.values():
                    total = total + usage
        return total


class PairResult(BaseModel):
    """One labelled pair judged in both directions (a row of judgments.jsonl)."""

    id: str
    source: str
    line: int
    label: Side
    annotators: list[Side] = Field(default_factory=list)
    has_sides: bool = True
    chars_a: int
    chars_b: int
    a_refines_b: DirectionResult
    b_refines_a: DirectionResult
    seconds: float = Field(description="Wall time of both directions.")

    def direction(self, refinement: Side) -> DirectionResult:
        """The direction in which `refinement` (`a` or `b`) was the refinement."""
        return self.a_refines_b if refinement == "a" else self.b_refines_a

    @property
    def better_refines_worse(self) -> DirectionResult:
        """Should be accepted (non-tie pairs only)."""
        return self.direction(self._better())

    @property
    def worse_refines_better(self) -> DirectionResult:
        """Should not be accepted (non-tie pairs only)."""
        return self.direction("b" if self._better() == "a" else "a")

    @property
    def judge_side(self) -> Side:
        """What the judge prefers as a pair verdict: the one answer it accepts as a
        refinement of the other; `tie` when it accepts neither or both."""
        a, b = self.a_refines_b.accepted, self.b_refines_a.accepted
        if a and not b:
            return "a"
        if b and not a:
            return "b"
        return "tie"

    @property
    def failed(self) -> bool:
        """A direction raised (no decision): the pair is left out of the figures."""
        return self.a_refines_b.state is None or self.b_refines_a.state is None

    def _better(self) -> Literal["a", "b"]:
        if self.label == "tie":
            raise ValueError(f"pair {self.id} is labelled a tie")
        return self.label
