"""Pointwise judging: each answer rated 1-9 on its own, as an expected score.

Measured on the embedded 1.5B model, this orders clear pairs correctly where the pairwise
judge returns ties or a position-biased letter. With logprobs the score is the expected
digit, sum(d * p(d)) / sum(p(d)) over the top alternatives of the first digit token;
without them, the digit the model wrote (recorded as `sampled`). No position, so no
position bias by construction.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableLambda

from endpoints import model_traits
from nodes.calls import call_text
from nodes.common import call_config, conversation_block, reference_block
from nodes.context import Context
from nodes.models import NamedModel
from nodes.parsing import ReplyParseError
from nodes.state import Answer, ChainState, JudgeCall, ScoreSource, TokenUsage, Verdict
from prompts import criteria_list, load_prompt, quote_data

SCALE = (1, 9)
DEFAULT_MARGIN = 0.1
"""The pointwise margin for a judge whose model has none calibrated (`pointwise_margin`)."""
TOP_LOGPROBS = 10
_DIGIT = re.compile(r"[1-9]")
# A number as a reply states it: `7`, `10`, `7.5`, `7/9`, `0/9`.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?(?:\s*/\s*\d+)?")


def pointwise_margin_for(judge_name: str, ctx: Context) -> float:
    """The margin a refinement must win by: the run's `pointwise_margin`, else the one
    calibrated for the judge's model, else DEFAULT_MARGIN."""
    if ctx.pointwise_margin is not None:
        return ctx.pointwise_margin
    calibrated = model_traits(judge_name).pointwise_margin
    return DEFAULT_MARGIN if calibrated is None else calibrated


@dataclass
class Score:
    """One answer's pointwise score by one judge."""

    value: float | None
    per_aspect: dict[str, float]
    source: ScoreSource | None
    attempts: int
    usage: TokenUsage
    raw: str | None = None
    error: str | None = None


def expected_digit(logprobs: list[dict[str, Any]] | None) -> float | None:
    """The expected rating under the first digit token's top alternatives, or None."""
    for entry in logprobs or []:
        token = str(entry.get("token", "")).strip()
        if not token:
            continue
        if not _DIGIT.fullmatch(token):
            return None
        weights: dict[int, float] = {}
        for alt in entry.get("top_logprobs") or [entry]:
            alt_token = str(alt.get("token", "")).strip()
            if _DIGIT.fullmatch(alt_token):
                digit = int(alt_token)
                weights[digit] = weights.get(digit, 0.0) + math.exp(float(alt["logprob"]))
        total = sum(weights.values())
        return sum(d * w for d, w in weights.items()) / total if total > 0 else None
    return None


def written_digit(text: str) -> int:
    """The rating a reply states: exactly one number in it, a digit 1-9 (`7`, `Rating: 7`,
    `7/9`); anything else (`10`, `0/9`, `7 or 8`, no number) is a parse error."""
    numbers = _NUMBER.findall(text)
    if len(numbers) != 1:
        found = ", ".join(numbers) if numbers else "none"
        raise ReplyParseError(
            f"the reply must give exactly one rating digit from 1 to 9 (numbers found: {found})"
        )
    rating = "".join(numbers[0].split()).removesuffix("/9")
    if not _DIGIT.fullmatch(rating):
        raise ReplyParseError(f"the rating must be one digit from 1 to 9, not {numbers[0]!r}")
    return int(rating)


def pointwise_prompt(state: ChainState, ctx: Context, answer: Answer, aspect: str) -> str:
    """The rating prompt for one answer and one aspect (`overall quality` or a criterion)."""
    return load_prompt("judge_pointwise").format(
        aspect=aspect,
        criteria=criteria_list(ctx.criteria),
        question=quote_data(state.question),
        answer=quote_data(answer.text),
        reference_block=reference_block(state),
        conversation_block=conversation_block(state),
    )


async def score_answer(
    judge: NamedModel, state: ChainState, ctx: Context, answer: Answer, which: str
) -> Score:
    """Rate one answer (each criterion concurrently when `pointwise_aspect=per_criterion`)."""
    aspects = ["overall quality"] if ctx.pointwise_aspect == "overall" else list(ctx.criteria)
    bind: dict[str, Any] | None = None
    if judge.is_openai_compatible:
        bind = {"max_tokens": 4}
        if ctx.judge_logprobs:
            bind |= {"logprobs": True, "top_logprobs": TOP_LOGPROBS}

    async def rate(aspect: str) -> Any:
        config = call_config(
            state=state,
            run_name=f"judge[{which}]",
            role="judge",
            model=judge.name,
            iteration=state.iteration,
            position="alone",
            mode="pointwise",
            scored=which,
            aspect=aspect,
        )
        prompt = pointwise_prompt(state, ctx, answer, aspect)

        async def run(_: object) -> Any:
            return await call_text(
                judge,
                [HumanMessage(content=prompt)],
                ctx=ctx,
                config=config,
                bind=bind,
                validate=written_digit,
            )

        return await RunnableLambda(run, name=f"judge[{which}]").ainvoke(None, config=config)

    results = await asyncio.gather(*(rate(a) for a in aspects))
    usage = sum((r.usage for r in results), TokenUsage())
    attempts = sum(r.attempts for r in results)
    failed = [r for r in results if r.value is None]
    if failed:
        return Score(None, {}, None, attempts, usage, raw=failed[0].raw, error=failed[0].error)
    per_aspect: dict[str, float] = {}
    sources: set[ScoreSource] = set()
    for aspect, result in zip(aspects, results, strict=True):
        expected = expected_digit(result.logprobs)
        sources.add("logprobs" if expected is not None else "sampled")
        value = expected if expected is not None else float(written_digit(result.value))
        per_aspect[aspect.replace(" quality", "")] = round(value, 4)
    source: ScoreSource = "logprobs" if sources == {"logprobs"} else "sampled"
    mean = sum(per_aspect.values()) / len(per_aspect)
    return Score(round(mean, 4), per_aspect, source, attempts, usage)


def cached_score(state: ChainState, judge: NamedModel, answer: Answer) -> Score | None:
    """The current answer's score from the iteration that accepted it, if this judge
    scored it pointwise then (saves one call per iteration)."""
    for call in reversed(state.judgments):
        if (
            call.mode == "pointwise"
            and call.judge_model == judge.name
            and call.iteration == answer.iteration
            and call.candidate_role == answer.role
            and call.total_refined is not None
        ):
            return Score(call.total_refined, dict(call.scores_refined), "cached", 0, TokenUsage())
    return None


async def judge_pointwise(
    judge: NamedModel, state: ChainState, ctx: Context, previous: Answer, candidate: Answer
) -> tuple[Verdict, list[JudgeCall], TokenUsage]:
    """Score both answers (the previous one from cache when possible) and apply the margin."""
    cached = cached_score(state, judge, previous)
    if cached is not None:
        refined = await score_answer(judge, state, ctx, candidate, "refined")
        prior = cached
    else:
        refined, prior = await asyncio.gather(
            score_answer(judge, state, ctx, candidate, "refined"),
            score_answer(judge, state, ctx, previous, "previous"),
        )
    usage = refined.usage + prior.usage
    base = {
        "iteration": state.iteration,
        "judge_model": judge.name,
        "mode": "pointwise",
        "position": "alone",
        "candidate_role": candidate.role,
        "attempts": refined.attempts + prior.attempts,
    }
    if refined.value is None or prior.value is None:
        failed = refined if refined.value is None else prior
        call = JudgeCall(**base, winner="error", raw=failed.raw, error=failed.error)
        verdict = Verdict(judge_model=judge.name, mode="pointwise", outcome="error")
        return verdict, [call], usage
    margin = refined.value - prior.value
    needed = pointwise_margin_for(judge.name, ctx)
    if margin > needed:
        winner = "refined"
    elif -margin > needed:
        winner = "previous"
    else:
        winner = "tie"
    confidence = round(min(abs(margin) / (SCALE[1] - SCALE[0]), 1.0), 4)
    call = JudgeCall(
        **base,
        scores_refined=refined.per_aspect,
        scores_previous=prior.per_aspect,
        total_refined=refined.value,
        total_previous=prior.value,
        winner=winner,
        justification=f"refined {refined.value:.2f} vs previous {prior.value:.2f} "
        f"(margin {margin:+.2f}, needs > {needed})",
        confidence=confidence,
        score_source=refined.source,
    )
    verdict = Verdict(
        judge_model=judge.name,
        mode="pointwise",
        outcome=winner,
        confidence=confidence if winner != "tie" else 0.0,
    )
    return verdict, [call], usage
