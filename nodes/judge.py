"""judge: every judge model decides whether the candidate beats the current answer.

Each judge judges in its mode (pairwise: the swapped pair; pointwise: each answer scored
alone); all judges' calls go out under one `asyncio.gather`, so an iteration costs one
judge round-trip however many judges vote. `nodes.decision` combines their verdicts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langgraph.runtime import Runtime

from nodes.common import context_of
from nodes.context import Context
from nodes.decision import decide, identical_decision, same_text
from nodes.judge_pairwise import judge_pairwise
from nodes.judge_pointwise import judge_pointwise
from nodes.models import ModelProvider, NamedModel
from nodes.state import (
    Answer,
    ChainState,
    Decision,
    Failure,
    JudgeCall,
    JudgeMode,
    TokenUsage,
    UsageTable,
    Verdict,
)

Judged = tuple[Verdict, list[JudgeCall], TokenUsage]


def scoring_mode(judge: NamedModel, ctx: Context) -> JudgeMode:
    """The judge's mode: as configured, or for `auto` pointwise on a small local judge."""
    if ctx.judge_scoring != "auto":
        return ctx.judge_scoring
    return "pointwise" if judge.traits.small_local_judge else "pairwise"


async def judge_with(
    judge: NamedModel, state: ChainState, ctx: Context, previous: Answer, candidate: Answer
) -> Judged:
    """One judge's verdict and the calls behind it."""
    if scoring_mode(judge, ctx) == "pointwise":
        return await judge_pointwise(judge, state, ctx, previous, candidate)
    return await judge_pairwise(judge, state, ctx, previous, candidate)


def is_sure(verdict: Verdict, ctx: Context) -> bool:
    """A confident win or loss: no need to ask the other judges (vote_trigger=low_confidence)."""
    return (
        verdict.outcome in ("refined", "previous")
        and (verdict.confidence or 0.0) >= ctx.confidence_threshold
    )


async def ask_judges(
    judges: Sequence[NamedModel],
    state: ChainState,
    ctx: Context,
    previous: Answer,
    candidate: Answer,
) -> list[Judged]:
    """All judges at once; or, with `vote_trigger=low_confidence`, the first `quorum`
    judges, and the rest only when those are not all sure of one side."""

    async def ask(group: Sequence[NamedModel]) -> list[Judged]:
        return list(
            await asyncio.gather(*(judge_with(j, state, ctx, previous, candidate) for j in group))
        )

    if ctx.vote_trigger == "low_confidence" and len(judges) > ctx.quorum:
        first = await ask(judges[: ctx.quorum])
        if settled(first, ctx):
            return first
        return first + await ask(judges[ctx.quorum :])
    return await ask(judges)


def settled(judged: Sequence[Judged], ctx: Context) -> bool:
    """The judges asked so far are each sure, and of the same side."""
    verdicts = [verdict for verdict, _, _ in judged]
    return all(is_sure(v, ctx) for v in verdicts) and len({v.outcome for v in verdicts}) == 1


def _usage(judged: Sequence[Judged], judges: Sequence[NamedModel]) -> UsageTable:
    table: UsageTable = {}
    for judge, (_, _, usage) in zip(judges, judged, strict=False):
        nodes = table.setdefault(judge.name, {})
        nodes["judge"] = nodes["judge"] + usage if "judge" in nodes else usage
    return table


async def judge(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> dict[str, Any]:
    """Decide whether the candidate replaces the current answer."""
    ctx = context_of(runtime)
    previous, candidate = state.chain[-1], state.candidate
    assert candidate is not None, "judge runs only after a successful refine"
    update: dict[str, Any] = {"candidate": None}
    decision: Decision
    if same_text(previous.text, candidate.text):
        decision = identical_decision(state.iteration, candidate.role, candidate.model, ctx.quorum)
    else:
        judges = models.get_judges(ctx)
        judged = await ask_judges(judges, state, ctx, previous, candidate)
        calls = [call for _, judge_calls, _ in judged for call in judge_calls]
        decision = decide(
            [verdict for verdict, _, _ in judged],
            iteration=state.iteration,
            candidate_role=candidate.role,
            candidate_model=candidate.model,
            quorum=ctx.quorum,
        )
        update["usage"] = _usage(judged, judges)
        update["judgments"] = calls
        failures = [
            Failure(
                stage="judge",
                model=c.judge_model,
                reason=c.error or "unparseable judge reply",
                raw=c.raw,
                iteration=c.iteration,
            )
            for c in calls
            if c.winner == "error"
        ]
        if failures:
            update["failures"] = failures
    update["decisions"] = [decision]
    if decision.accepted:
        update["chain"] = [candidate]
        update["last_rejected"] = None  # it lost to an answer that is no longer the final one
    else:
        update["last_rejected"] = candidate
    runtime.stream_writer(
        {
            "event": "judged",
            "item_id": state.id,
            "iteration": state.iteration,
            "candidate_role": candidate.role,
            "accepted": decision.accepted,
            "outcome": decision.outcome,
            "votes_for_refined": decision.votes_for_refined,
            "answered": decision.answered,
            "confidence": decision.confidence,
        }
    )
    return update
