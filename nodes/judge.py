"""judge: every judge model compares the candidate with the current answer in both orders.

All calls (2 per judge) go out under one `asyncio.gather`, so an iteration costs one judge
round-trip however many judges vote. The calls' verdicts are combined by `nodes.decision`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda
from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Answer, ChainState, Failure, JudgeCall, Position, TokenUsage, Verdict
from nodes.calls import call_json
from nodes.common import call_config, context_of, reference_block
from nodes.decision import decide, identical_decision, pair_outcome, same_text
from nodes.models import ModelProvider, NamedModel
from nodes.schemas import PairwiseJudgeReply
from prompts import criteria_list, load_prompt, quote_data

POSITIONS: tuple[Position, Position] = ("refined_first", "refined_second")


def pairwise_prompt(
    state: ChainState, ctx: Context, previous: Answer, candidate: Answer, position: Position
) -> str:
    """The judge prompt for one ordering of the pair."""
    first, second = (candidate, previous) if position == "refined_first" else (previous, candidate)
    template = "{" + ", ".join(f'"{c}": 0-10' for c in ctx.criteria) + "}"
    return load_prompt("judge_pairwise").format(
        criteria=criteria_list(ctx.criteria),
        question=quote_data(state.question),
        answer_a=quote_data(first.text),
        answer_b=quote_data(second.text),
        reference_block=reference_block(state),
        score_template=template,
    )


async def judge_pairwise_once(
    judge: NamedModel,
    state: ChainState,
    ctx: Context,
    *,
    previous: Answer,
    candidate: Answer,
    position: Position,
) -> tuple[JudgeCall, TokenUsage]:
    """One judge call in one ordering, its letters mapped back to refined/previous."""
    prompt = pairwise_prompt(state, ctx, previous, candidate, position)
    config = call_config(
        state=state,
        run_name=f"judge[{position}]",
        role="judge",
        model=judge.name,
        iteration=state.iteration,
        position=position,
        candidate_role=candidate.role,
    )

    async def run(_: object) -> Any:
        return await call_json(
            judge, [HumanMessage(content=prompt)], PairwiseJudgeReply, ctx=ctx, config=config
        )

    # A named wrapper run, so the trace shows one node per judge call with its position.
    result = await RunnableLambda(run, name=f"judge[{position}]").ainvoke(None, config=config)
    base = {
        "iteration": state.iteration,
        "judge_model": judge.name,
        "position": position,
        "candidate_role": candidate.role,
        "attempts": result.attempts,
    }
    if result.value is None:
        return JudgeCall(**base, winner="error", raw=result.raw, error=result.error), result.usage
    reply: PairwiseJudgeReply = result.value
    refined_letter = "A" if position == "refined_first" else "B"
    scores_refined, scores_previous = (
        (reply.scores_a, reply.scores_b)
        if refined_letter == "A"
        else (reply.scores_b, reply.scores_a)
    )
    total_refined, total_previous = sum(scores_refined.values()), sum(scores_previous.values())
    if reply.winner == "tie":
        winner = "tie"
    else:
        winner = "refined" if reply.winner == refined_letter else "previous"
    scale = 10.0 * max(len(scores_refined), len(scores_previous), 1)
    return (
        JudgeCall(
            **base,
            scores_refined=scores_refined,
            scores_previous=scores_previous,
            total_refined=total_refined,
            total_previous=total_previous,
            winner=winner,
            justification=reply.justification,
            confidence=round(abs(total_refined - total_previous) / scale, 4),
        ),
        result.usage,
    )


def verdict_of(judge: NamedModel, calls: list[JudgeCall]) -> Verdict:
    """One judge's verdict from its two calls (refined first, refined second)."""
    by_position = {c.position: c.winner for c in calls}
    outcome = pair_outcome(by_position["refined_first"], by_position["refined_second"])
    confidences = [c.confidence or 0.0 for c in calls]
    confidence = sum(confidences) / len(confidences) if outcome in ("refined", "previous") else 0.0
    return Verdict(judge_model=judge.name, outcome=outcome, confidence=round(confidence, 4))


async def judge(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> dict[str, Any]:
    """Decide whether the candidate replaces the current answer."""
    ctx = context_of(runtime)
    previous, candidate = state.chain[-1], state.candidate
    assert candidate is not None, "judge runs only after a successful refine"
    update: dict[str, Any] = {"candidate": None}
    if same_text(previous.text, candidate.text):
        decision = identical_decision(state.iteration, candidate.role, candidate.model, ctx.quorum)
    else:
        judges = models.get_judges(ctx)
        results = await asyncio.gather(
            *(
                judge_pairwise_once(
                    j, state, ctx, previous=previous, candidate=candidate, position=position
                )
                for j in judges
                for position in POSITIONS
            )
        )
        calls = [call for call, _ in results]
        verdicts = [verdict_of(j, calls[2 * i : 2 * i + 2]) for i, j in enumerate(judges)]
        decision = decide(
            verdicts,
            iteration=state.iteration,
            candidate_role=candidate.role,
            candidate_model=candidate.model,
            quorum=ctx.quorum,
        )
        usage: dict[str, dict[str, TokenUsage]] = {}
        for call, call_usage in results:
            nodes = usage.setdefault(call.judge_model, {})
            nodes["judge"] = nodes["judge"] + call_usage if "judge" in nodes else call_usage
        update["usage"] = usage
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
