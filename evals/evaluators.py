"""Evaluators: plain functions of `(inputs, outputs, reference_outputs)` returning LangSmith
`{"results": [{"key", "score", ...}]}` dicts, usable on their own or in `langsmith.aevaluate`.

`outputs` maps a pipeline name (`refine_n_judge`, `refine_only`, `zero_shot`, `best_of_n`)
to that pipeline's `ChainState` as JSON. Evaluators that need a judge are made by a factory
from an `EvalJudge` and are async. A missing pipeline output (the target failed) gives no
results rather than a made-up score.
"""

from __future__ import annotations

import asyncio
import random
import re
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from endpoints.tokens import count_tokens
from evals.judging import Comparison, EvalJudge, item_state
from nodes.decision import same_text
from nodes.judge_pairwise import POSITIONS
from nodes.state import Answer, ChainState, JudgeCall

RNJ = "refine_n_judge"
Results = dict[str, list[dict[str, Any]]]
AsyncEvaluator = Callable[[dict[str, Any], dict[str, Any], dict[str, Any]], Awaitable[Results]]


def chain_of(outputs: dict[str, Any] | None, pipeline: str = RNJ) -> ChainState | None:
    """A pipeline's state from a target's outputs, or None when it has none."""
    raw = (outputs or {}).get(pipeline)
    return ChainState.model_validate(raw) if raw else None


def _result(key: str, score: float | None, **extra: Any) -> dict[str, Any]:
    return {"key": key, "score": score, **{k: v for k, v in extra.items() if v is not None}}


def _calls(comparison: Comparison) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_none=True) for c in comparison.calls]


# ---------------------------------------------------------------------------- exact match


def normalize(text: str) -> str:
    """Lower-case letters and digits only (accents dropped): `Hyper-Text` == `hypertext`."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]", "", folded.lower())


def expansion_matches(text: str, reference: str, aliases: Sequence[str] = ()) -> bool:
    """True when the text contains the reference (or an alias), ignoring case, spaces and
    punctuation."""
    haystack = normalize(text)
    return any(normalize(r) and normalize(r) in haystack for r in (reference, *aliases))


def acronym_exact_match(
    inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
) -> Results:
    """Does the initial answer, and then the final answer, give the correct expansion?"""
    state = chain_of(outputs)
    reference = reference_outputs.get("reference")
    if state is None or not state.chain or not reference:
        return {"results": []}
    aliases = reference_outputs.get("aliases") or []
    before = expansion_matches(state.chain[0].text, reference, aliases)
    after = expansion_matches(state.chain[-1].text, reference, aliases)
    return {
        "results": [
            _result("exact_match_before", float(before)),
            _result("exact_match_after", float(after)),
        ]
    }


def method_accuracy(
    inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
) -> Results:
    """Exact-match accuracy of every pipeline's final answer, and of the initial answer."""
    reference = reference_outputs.get("reference")
    if not reference:
        return {"results": []}
    aliases = reference_outputs.get("aliases") or []
    results = []
    if inputs.get("answer"):
        matched = expansion_matches(inputs["answer"], reference, aliases)
        results.append(_result("accuracy_initial", float(matched)))
    for pipeline in outputs or {}:
        state = chain_of(outputs, pipeline)
        if state is not None and state.chain:
            matched = expansion_matches(state.chain[-1].text, reference, aliases)
            results.append(_result(f"accuracy_{pipeline}", float(matched)))
    return {"results": results}


# ---------------------------------------------------------------------------- length


def token_length_change(
    inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
) -> Results:
    """Tokens (tiktoken o200k_base) of the initial and final answers, and the relative change
    (-0.5: half as long)."""
    state = chain_of(outputs)
    if state is None or not state.chain:
        return {"results": []}
    before = count_tokens(state.chain[0].text)
    after = count_tokens(state.chain[-1].text)
    change = (after - before) / before if before else None
    return {
        "results": [
            _result("tokens_before", float(before)),
            _result("tokens_after", float(after)),
            _result("token_change", None if change is None else round(change, 4)),
        ]
    }


def keywords_retained(
    inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
) -> Results:
    """Share of the item's key facts still in the final answer (shortening must not drop
    them)."""
    state = chain_of(outputs)
    keywords = reference_outputs.get("keywords") or []
    if state is None or not state.chain or not keywords:
        return {"results": []}
    final = normalize(state.chain[-1].text)
    kept = [k for k in keywords if normalize(k) in final]
    missing = sorted(set(keywords) - set(kept))
    comment = f"missing: {', '.join(missing)}" if missing else None
    return {"results": [_result("keywords_retained", len(kept) / len(keywords), comment=comment)]}


# ---------------------------------------------------------------------------- judged


def reference_judge(judge: EvalJudge) -> AsyncEvaluator:
    """Judged improvement against the reference: an evaluation judge that sees the reference
    compares the final answer with the initial one (paper table 3's LLM-as-a-judge score).

    Keys: `judged_improved` (1 when the final answer wins), `judge_score_before` and
    `judge_score_after` (0-100), `judge_score_change` (points).
    """

    async def judged_against_reference(
        inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
    ) -> Results:
        state = chain_of(outputs)
        if state is None or not state.chain or not reference_outputs.get("reference"):
            return {"results": []}
        item = item_state(inputs, reference_outputs, iteration=len(state.chain) - 1)
        comparison = await judge.compare(
            item, ours=state.chain[-1], theirs=state.chain[0], skip_identical=False
        )
        before = comparison.mean_score("previous")
        after = comparison.mean_score("refined")
        change = after - before if before is not None and after is not None else None
        improved = None if comparison.score is None else float(comparison.outcome == "refined")
        meta = {"outcome": comparison.outcome, "calls": _calls(comparison)}
        return {
            "results": [
                _result("judged_improved", improved, metadata=meta),
                _result("judge_score_before", _round(before)),
                _result("judge_score_after", _round(after)),
                _result("judge_score_change", _round(change)),
            ]
        }

    return judged_against_reference


def pairwise_win(judge: EvalJudge, *, ours: str, theirs: str, key: str) -> AsyncEvaluator:
    """Win score of pipeline `ours`'s final answer against `theirs`'s (1 win, 0 loss, 0.5
    draw), judged in both orders by an evaluation judge that sees the reference if any."""

    async def win(
        inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
    ) -> Results:
        mine, other = chain_of(outputs, ours), chain_of(outputs, theirs)
        if not (mine and mine.chain and other and other.chain):
            return {"results": []}
        item = item_state(inputs, reference_outputs)
        comparison = await judge.compare(item, ours=mine.chain[-1], theirs=other.chain[-1])
        return {"results": [_win_result(key, comparison)]}

    win.__name__ = key
    return win


def answer_at_budget(state: ChainState, budget: int, *, judged: bool) -> Answer:
    """The answer a pipeline would return with `budget` refinements: Refine-n-Judge's last
    accepted answer by then; refine-only's answer after `budget` refinements."""
    if judged:
        return [a for a in state.chain if a.iteration <= budget][-1]
    return state.chain[min(budget, len(state.chain) - 1)]


def win_rate_by_budget(
    judge: EvalJudge, budgets: Sequence[int], *, ours: str = RNJ, theirs: str = "refine_only"
) -> AsyncEvaluator:
    """Refine-n-Judge against refine-only at the same iteration budget (paper figure 3):
    key `win_rate@N` per budget N, scored like `pairwise_win`."""

    async def win_rate(
        inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
    ) -> Results:
        mine, other = chain_of(outputs, ours), chain_of(outputs, theirs)
        if not (mine and mine.chain and other and other.chain):
            return {"results": []}

        async def at(budget: int) -> dict[str, Any]:
            item = item_state(inputs, reference_outputs, iteration=budget)
            comparison = await judge.compare(
                item,
                ours=answer_at_budget(mine, budget, judged=True),
                theirs=answer_at_budget(other, budget, judged=False),
            )
            return _win_result(f"win_rate@{budget}", comparison)

        return {"results": list(await asyncio.gather(*(at(b) for b in budgets)))}

    return win_rate


def pairwise_matrix(judge: EvalJudge, pipeline: str, *, max_answers: int = 6) -> AsyncEvaluator:
    """Every later answer of a pipeline's chain against every earlier one (paper figure 5):
    key `matrix:<pipeline>:<j>><i>` scores Ans_j against Ans_i."""

    async def matrix(
        inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
    ) -> Results:
        state = chain_of(outputs, pipeline)
        if state is None:
            return {"results": []}
        answers = state.chain[:max_answers]
        pairs = [(i, j) for j in range(len(answers)) for i in range(j)]

        async def cell(i: int, j: int) -> dict[str, Any]:
            item = item_state(inputs, reference_outputs, iteration=j)
            comparison = await judge.compare(item, ours=answers[j], theirs=answers[i])
            return _win_result(f"matrix:{pipeline}:{j}>{i}", comparison)

        return {"results": list(await asyncio.gather(*(cell(i, j) for i, j in pairs)))}

    matrix.__name__ = f"matrix_{pipeline}"
    return matrix


def chain_consistency(judge: EvalJudge, *, repeats: int = 10, seed: int = 0) -> AsyncEvaluator:
    """Re-judge a finished chain (paper 5.4): each adjacent pair Ans_i, Ans_i+1 and the final
    answer against the last rejected refinement, `repeats` times each with the position of
    the two answers drawn at random. Agreement is the share of those judgments that repeat
    the pipeline's decision (prefer Ans_i+1; prefer the final answer over the rejected one).

    Keys: `agree_step_<i+1>`, `agree_final_vs_rejected`, `agreement` (all pairs), and
    `first_position_rate` (share of decisive pairwise calls won by the answer shown first).
    The judge does not see the reference, as the pipeline's judge did not.
    """

    async def consistency(
        inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
    ) -> Results:
        state = chain_of(outputs)
        if state is None or not state.chain:
            return {"results": []}
        # (key, the answer the pipeline preferred, the other one)
        pairs: list[tuple[str, Answer, Answer]] = [
            (f"agree_step_{i + 1}", state.chain[i + 1], state.chain[i])
            for i in range(len(state.chain) - 1)
        ]
        rejected = state.last_rejected
        if rejected is not None and not same_text(rejected.text, state.chain[-1].text):
            pairs.append(("agree_final_vs_rejected", state.chain[-1], rejected))
        rng = random.Random(f"{seed}/{inputs.get('id')}")
        plan = [(pair, rng.choice(POSITIONS)) for pair in pairs for _ in range(repeats)]
        item = item_state(inputs)

        async def rejudge(pair: tuple[str, Answer, Answer], position: Any) -> JudgeCall:
            _, preferred, other = pair
            return await judge.once(item, ours=preferred, theirs=other, position=position)

        calls = await asyncio.gather(*(rejudge(pair, pos) for pair, pos in plan))
        results = []
        for key, *_ in pairs:
            mine = [c for (pair, _), c in zip(plan, calls, strict=True) if pair[0] == key]
            results.append(_agreement(key, mine))
        results.append(_agreement("agreement", list(calls)))
        decisive = [
            c for c in calls if c.mode == "pairwise" and c.winner in ("refined", "previous")
        ]
        if decisive:
            first = sum(
                (c.winner == "refined") == (c.position == "refined_first") for c in decisive
            )
            results.append(
                _result(
                    "first_position_rate",
                    round(first / len(decisive), 4),
                    metadata={"first": first, "n": len(decisive)},
                )
            )
        return {"results": results}

    return consistency


def _agreement(key: str, calls: list[JudgeCall]) -> dict[str, Any]:
    answered = [c for c in calls if c.winner != "error"]
    agree = sum(c.winner == "refined" for c in answered)
    score = round(agree / len(answered), 4) if answered else None
    metadata: dict[str, Any] = {
        "agree": agree,
        "n": len(answered),
        "errors": len(calls) - len(answered),
    }
    if key != "agreement":
        metadata["calls"] = [
            {"position": c.position, "winner": c.winner, "mode": c.mode} for c in calls
        ]
    return _result(key, score, metadata=metadata)


def _win_result(key: str, comparison: Comparison) -> dict[str, Any]:
    return _result(
        key,
        comparison.score,
        comment=comparison.outcome,
        metadata={"outcome": comparison.outcome, "calls": _calls(comparison)},
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
