"""Pairwise judging (the paper's judge): both answers in one prompt, once per ordering."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda

from nodes.calls import call_json
from nodes.common import call_config, conversation_block, reference_block
from nodes.context import Context
from nodes.decision import pair_outcome
from nodes.models import NamedModel
from nodes.schemas import PairwiseJudgeReply
from nodes.state import Answer, ChainState, JudgeCall, Position, TokenUsage, Verdict
from prompts import criteria_list, load_prompt, quote_data

POSITIONS: tuple[Position, Position] = ("refined_first", "refined_second")
TOP_LOGPROBS = 5


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
        conversation_block=conversation_block(state),
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
        mode="pairwise",
        candidate_role=candidate.role,
    )
    bind = (
        {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        if ctx.judge_logprobs and judge.is_openai_compatible
        else None
    )

    async def run(_: object) -> Any:
        return await call_json(
            judge,
            [HumanMessage(content=prompt)],
            PairwiseJudgeReply,
            ctx=ctx,
            config=config,
            bind=bind,
        )

    # A named wrapper run, so the trace shows one node per judge call with its position.
    result = await RunnableLambda(run, name=f"judge[{position}]").ainvoke(None, config=config)
    base = {
        "iteration": state.iteration,
        "judge_model": judge.name,
        "mode": "pairwise",
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
    confidence = abs(total_refined - total_previous) / scale
    p_first = letter_probability(result.logprobs, result.raw or "")
    p_refined = None
    if p_first is not None:
        p_refined = p_first if refined_letter == "A" else 1.0 - p_first
        if winner != "tie":
            confidence = abs(2 * p_refined - 1)
    return (
        JudgeCall(
            **base,
            scores_refined=scores_refined,
            scores_previous=scores_previous,
            total_refined=total_refined,
            total_previous=total_previous,
            winner=winner,
            justification=reply.justification,
            confidence=round(confidence, 4),
            probability_refined=None if p_refined is None else round(p_refined, 4),
        ),
        result.usage,
    )


def letter_probability(logprobs: list[dict[str, Any]] | None, raw: str) -> float | None:
    """P(A) / (P(A) + P(B)) at the token that writes the verdict letter, if logprobs show it.

    The verdict is the last `"A"`/`"B"` value in the reply's JSON; we find the token that
    starts at that character and read both letters from its top alternatives.
    """
    if not logprobs:
        return None
    target = max(raw.rfind('"A"'), raw.rfind('"B"'))
    if target == -1:
        return None
    target += 1  # the letter itself, after the quote
    offset = 0
    for entry in logprobs:
        token = str(entry.get("token", ""))
        if offset <= target < offset + len(token):
            stripped = token.strip().strip('"')
            if stripped not in ("A", "B"):
                return None
            probs = {"A": 0.0, "B": 0.0}
            for alt in entry.get("top_logprobs") or [{"token": token, "logprob": entry["logprob"]}]:
                letter = str(alt.get("token", "")).strip().strip('"')
                if letter in probs:
                    probs[letter] += math.exp(float(alt["logprob"]))
            total = probs["A"] + probs["B"]
            return probs["A"] / total if total > 0 else None
        offset += len(token)
    return None


def verdict_of_pair(judge: NamedModel, calls: list[JudgeCall]) -> Verdict:
    """One judge's verdict from its two calls (refined first, refined second)."""
    by_position = {c.position: c.winner for c in calls}
    outcome = pair_outcome(by_position["refined_first"], by_position["refined_second"])
    confidences = [c.confidence or 0.0 for c in calls]
    confidence = sum(confidences) / len(confidences) if outcome in ("refined", "previous") else 0.0
    return Verdict(
        judge_model=judge.name, mode="pairwise", outcome=outcome, confidence=round(confidence, 4)
    )


def calls_in_sequence(judge: NamedModel, ctx: Context) -> bool:
    """True when the two orderings go out one after the other (`judge_call_order`)."""
    if ctx.judge_call_order != "auto":
        return ctx.judge_call_order == "sequential"
    return judge.traits.one_request_at_a_time


async def judge_pairwise(
    judge: NamedModel, state: ChainState, ctx: Context, previous: Answer, candidate: Answer
) -> tuple[Verdict, list[JudgeCall], TokenUsage]:
    """Both orderings (at once, unless the endpoint takes one request at a time), and the
    verdict they give."""

    def once(position: Position) -> Any:
        return judge_pairwise_once(
            judge, state, ctx, previous=previous, candidate=candidate, position=position
        )

    if calls_in_sequence(judge, ctx):
        results = [await once(position) for position in POSITIONS]
    else:
        results = list(await asyncio.gather(*(once(position) for position in POSITIONS)))
    calls = [call for call, _ in results]
    usage = sum((u for _, u in results), TokenUsage())
    return verdict_of_pair(judge, calls), calls, usage
