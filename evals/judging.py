"""Evaluation judges: a judge model comparing two answers outside the pipeline.

The calls are the pipeline's own (`nodes.judge.judge_with`, `nodes.judge_pairwise`,
`nodes.judge_pointwise`), so an evaluation judge reads the same prompts and follows the
same strict rule: in pairwise mode the answer under test wins only if it wins in both
orders. In these comparisons `candidate`/`refined` is the answer under test ("ours") and
`previous` the one it is compared with ("theirs").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from nodes.context import Context
from nodes.decision import same_text
from nodes.judge import judge_with, scoring_mode
from nodes.judge_pairwise import judge_pairwise_once
from nodes.judge_pointwise import SCALE, judge_pointwise
from nodes.models import NamedModel
from nodes.state import Answer, ChainState, JudgeCall, JudgeMode, Outcome, Position, TokenUsage

WIN_SCORE: dict[str, float] = {"refined": 1.0, "previous": 0.0, "inconsistent": 0.5, "tie": 0.5}
"""Score of the answer under test per outcome: a win, a loss, or a draw (a tie, or the
two orders disagreeing). Errors have no score."""

Side = Literal["refined", "previous"]


class Comparison(BaseModel):
    """One comparison of the answer under test (`refined`) with another (`previous`)."""

    outcome: Outcome
    calls: list[JudgeCall] = Field(default_factory=list)

    @property
    def score(self) -> float | None:
        """1 win, 0 loss, 0.5 draw, None when the judge failed."""
        return WIN_SCORE.get(self.outcome)

    def mean_score(self, side: Side) -> float | None:
        """One side's judged quality on 0-100, averaged over the calls that answered."""
        values = [v for c in self.calls if (v := score_100(c, side)) is not None]
        return sum(values) / len(values) if values else None


def score_100(call: JudgeCall, side: Side) -> float | None:
    """A judge call's score for one side, on 0-100: the mean criterion score (0-10) for a
    pairwise call, the 1-9 rating rescaled for a pointwise one."""
    if call.winner == "error":
        return None
    scores = call.scores_refined if side == "refined" else call.scores_previous
    total = call.total_refined if side == "refined" else call.total_previous
    if total is None:
        return None
    if call.mode == "pointwise":
        low, high = SCALE
        return (total - low) / (high - low) * 100
    return total / max(len(scores), 1) * 10


def item_state(
    inputs: dict[str, object],
    reference_outputs: dict[str, object] | None = None,
    *,
    iteration: int = 0,
) -> ChainState:
    """The state a judge call reads: the question, and the reference when one is given."""
    reference = (reference_outputs or {}).get("reference")
    return ChainState(
        id=str(inputs.get("id") or "") or None,
        question=str(inputs["question"]),
        reference=str(reference) if reference else None,
        iteration=iteration,
    )


class EvalJudge:
    """A judge model for evaluations, with the pipeline's judge settings.

    The model is resolved on first use (so experiments that need no judge never start a
    model), calls are bounded by `max_concurrent` comparisons at a time, and tokens used
    are added up in `usage`.
    """

    def __init__(
        self,
        model: NamedModel | Callable[[], NamedModel],
        context: Context,
        *,
        max_concurrent: int = 1,
    ) -> None:
        self._model = model
        self.context = context
        self.usage = TokenUsage()
        self._max_concurrent = max(max_concurrent, 1)
        self._limits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    @property
    def model(self) -> NamedModel:
        if not isinstance(self._model, NamedModel):
            self._model = self._model()
        return self._model

    def _limit(self) -> asyncio.Semaphore:
        # A semaphore belongs to one event loop; a judge may serve several asyncio.run calls.
        loop = asyncio.get_running_loop()
        if loop not in self._limits:
            self._limits = {loop: asyncio.Semaphore(self._max_concurrent)}
        return self._limits[loop]

    @property
    def mode(self) -> JudgeMode:
        return scoring_mode(self.model, self.context)

    async def compare(
        self,
        item: ChainState,
        *,
        ours: Answer,
        theirs: Answer,
        skip_identical: bool = True,
    ) -> Comparison:
        """Judge `ours` against `theirs` (both orders when pairwise). Identical texts are a
        tie without a call unless `skip_identical` is False (when their scores are wanted)."""
        if skip_identical and same_text(ours.text, theirs.text):
            return Comparison(outcome="tie")
        async with self._limit():
            verdict, calls, usage = await judge_with(self.model, item, self.context, theirs, ours)
        self.usage += usage
        return Comparison(outcome=verdict.outcome, calls=calls)

    async def once(
        self, item: ChainState, *, ours: Answer, theirs: Answer, position: Position
    ) -> JudgeCall:
        """One judgment with `ours` at `position` (pairwise); pointwise judges score both
        answers alone, so the position does not apply."""
        async with self._limit():
            if self.mode == "pointwise":
                _, calls, usage = await judge_pointwise(
                    self.model, item, self.context, theirs, ours
                )
                call = calls[0]
            else:
                call, usage = await judge_pairwise_once(
                    self.model,
                    item,
                    self.context,
                    previous=theirs,
                    candidate=ours,
                    position=position,
                )
        self.usage += usage
        return call
