"""Each evaluator on its own: pure metrics on hand-made chains, judged ones with scripted
judges whose preferences are known."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from endpoints.tokens import count_tokens
from evals.evaluators import (
    acronym_exact_match,
    answer_at_budget,
    chain_consistency,
    expansion_matches,
    keywords_retained,
    method_accuracy,
    pairwise_matrix,
    pairwise_win,
    reference_judge,
    token_length_change,
    win_rate_by_budget,
)
from evals.judging import EvalJudge, score_100
from evals.metrics import pooled_agreement, win_counts
from evals.records import FeedbackRecord, ResultRow
from nodes.context import Context
from nodes.models import NamedModel
from nodes.state import Answer, ChainState, JudgeCall
from tests.support.chat_models import ScriptedChatModel, judge_json, tag
from tests.support.scripts import version

INPUTS = {"id": "item-1", "question": "What does NASA stand for?", "answer": "wrong"}


def state(*texts: str, rejected: str | None = None, iterations: list[int] | None = None) -> dict:
    """A finished chain as a target's JSON output."""
    its = iterations or list(range(len(texts)))
    chain = [
        Answer(text=t, iteration=i, model="m", role="initial" if i == 0 else "refiner")
        for t, i in zip(texts, its, strict=True)
    ]
    last = (
        None if rejected is None else Answer(text=rejected, iteration=99, model="m", role="refiner")
    )
    return ChainState(question=INPUTS["question"], chain=chain, last_rejected=last).model_dump(
        mode="json"
    )


def scores(results: dict[str, Any]) -> dict[str, float | None]:
    return {r["key"]: r["score"] for r in results["results"]}


def judge_of(handler: Any, name: str = "oracle") -> tuple[EvalJudge, ScriptedChatModel]:
    model = ScriptedChatModel(handler=handler, model_name=name)
    return EvalJudge(NamedModel(name, model), Context(), max_concurrent=4), model


def by_version(prefer: str = "higher", on_tie: str = "tie") -> Any:
    """A judge script over `vN` answers: prefers the higher (or lower) version, in any order."""

    def handler(role: str, prompt: str) -> str:
        assert role == "judge"
        a, b = version(tag(prompt, "answer_A")), version(tag(prompt, "answer_B"))
        if a == b:
            return judge_json(on_tie)
        better_a = a > b if prefer == "higher" else a < b
        return judge_json("A" if better_a else "B", a=9 if better_a else 3, b=3 if better_a else 9)

    return handler


# ------------------------------------------------------------------------- exact match


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "It stands for National Aeronautics and Space Administration.", True, id="plain"
        ),
        pytest.param("NATIONAL aeronautics and space-administration!", True, id="case-punctuation"),
        pytest.param("North American Space Agency", False, id="wrong"),
        pytest.param("National Aeronautics Administration", False, id="partial"),
    ],
)
def test_expansion_matches(text: str, expected: bool) -> None:
    assert expansion_matches(text, "National Aeronautics and Space Administration") is expected


def test_expansion_matches_aliases_and_accents() -> None:
    assert expansion_matches(
        "North Atlantic Treaty Organisation",
        "North Atlantic Treaty Organization",
        ["North Atlantic Treaty Organisation"],
    )
    assert expansion_matches("Fédération Internationale", "Federation Internationale")


def test_acronym_exact_match_before_and_after() -> None:
    outputs = {
        "refine_n_judge": state(
            "North American Space Agency", "National Aeronautics and Space Administration"
        )
    }
    result = acronym_exact_match(
        INPUTS, outputs, {"reference": "National Aeronautics and Space Administration"}
    )
    assert scores(result) == {"exact_match_before": 0.0, "exact_match_after": 1.0}


def test_evaluators_give_no_result_without_the_pipeline_output() -> None:
    reference = {"reference": "x", "keywords": ["x"]}
    assert acronym_exact_match(INPUTS, {}, reference) == {"results": []}
    assert token_length_change(INPUTS, {}, reference) == {"results": []}
    assert keywords_retained(INPUTS, {"zero_shot": state("x")}, reference) == {"results": []}


def test_method_accuracy_scores_every_pipeline_and_the_initial_answer() -> None:
    right = "National Aeronautics and Space Administration"
    outputs = {"refine_n_judge": state("wrong", right), "zero_shot": state("wrong too")}
    result = method_accuracy({**INPUTS, "answer": "North American"}, outputs, {"reference": right})
    assert scores(result) == {
        "accuracy_initial": 0.0,
        "accuracy_refine_n_judge": 1.0,
        "accuracy_zero_shot": 0.0,
    }


# ------------------------------------------------------------------------- length


def test_token_length_change_counts_tiktoken_tokens() -> None:
    long = "Well, that is a great question. " * 10 + "The answer is 42."
    short = "The answer is 42."
    result = scores(token_length_change(INPUTS, {"refine_n_judge": state(long, short)}, {}))
    before, after = count_tokens(long), count_tokens(short)
    assert (result["tokens_before"], result["tokens_after"]) == (before, after)
    assert result["token_change"] == round((after - before) / before, 4)
    assert result["token_change"] < -0.8


def test_keywords_retained_names_what_is_missing() -> None:
    result = keywords_retained(
        INPUTS,
        {"refine_n_judge": state("long text", "Water boils at 100 °C.")},
        {"keywords": ["100", "212"]},
    )
    (only,) = result["results"]
    assert only["score"] == 0.5
    assert only["comment"] == "missing: 212"


# ------------------------------------------------------------------------- judged


def test_reference_judge_sees_the_reference_and_scores_both_answers() -> None:
    seen: list[str] = []

    def handler(role: str, prompt: str) -> str:
        seen.append(prompt)
        truthful_a = "the truth" in tag(prompt, "answer_A")
        return judge_json(
            "A" if truthful_a else "B", a=9 if truthful_a else 2, b=2 if truthful_a else 9
        )

    judge, _ = judge_of(handler)
    evaluator = reference_judge(judge)
    outputs = {"refine_n_judge": state("the myth", "the truth")}
    result = asyncio.run(evaluator(INPUTS, outputs, {"reference": "the truth, really"}))
    assert scores(result) == {
        "judged_improved": 1.0,
        "judge_score_before": 20.0,
        "judge_score_after": 90.0,
        "judge_score_change": 70.0,
    }
    assert len(seen) == 2 and all("<reference>the truth, really</reference>" in p for p in seen)
    assert judge.usage.calls == 2


def test_reference_judge_scores_an_unchanged_answer_too() -> None:
    judge, _ = judge_of(lambda role, prompt: judge_json("tie", a=4, b=4))
    result = asyncio.run(
        reference_judge(judge)(INPUTS, {"refine_n_judge": state("same")}, {"reference": "r"})
    )
    assert scores(result) == {
        "judged_improved": 0.0,
        "judge_score_before": 40.0,
        "judge_score_after": 40.0,
        "judge_score_change": 0.0,
    }


def test_pairwise_win_is_judged_in_both_orders() -> None:
    judge, _ = judge_of(by_version("higher"))
    outputs = {"refine_n_judge": state("v0", "v3"), "zero_shot": state("v1")}
    result = asyncio.run(
        pairwise_win(judge, ours="refine_n_judge", theirs="zero_shot", key="win")(
            INPUTS, outputs, {}
        )
    )
    (only,) = result["results"]
    assert only["score"] == 1.0 and only["metadata"]["outcome"] == "refined"
    positions = [c["position"] for c in only["metadata"]["calls"]]
    assert sorted(positions) == ["refined_first", "refined_second"]


def test_pairwise_win_position_bias_is_a_draw_not_a_win() -> None:
    judge, _ = judge_of(lambda role, prompt: judge_json("A"))
    outputs = {"refine_n_judge": state("v3"), "zero_shot": state("v1")}
    result = asyncio.run(
        pairwise_win(judge, ours="refine_n_judge", theirs="zero_shot", key="win")(
            INPUTS, outputs, {}
        )
    )
    assert result["results"][0]["score"] == 0.5
    assert result["results"][0]["metadata"]["outcome"] == "inconsistent"


def test_answer_at_budget() -> None:
    rnj = ChainState.model_validate(state("v0", "v1", "v3", iterations=[0, 1, 3]))
    assert answer_at_budget(rnj, 2, judged=True).text == "v1"
    assert answer_at_budget(rnj, 3, judged=True).text == "v3"
    only = ChainState.model_validate(state("v0", "v1", "v2"))
    assert answer_at_budget(only, 2, judged=False).text == "v2"
    assert answer_at_budget(only, 5, judged=False).text == "v2"


def test_win_rate_by_budget_compares_equal_budgets() -> None:
    # quality peaks at v1: later refine-only answers got worse
    def handler(role: str, prompt: str) -> str:
        a, b = version(tag(prompt, "answer_A")), version(tag(prompt, "answer_B"))
        qa, qb = -abs(a - 1), -abs(b - 1)
        return judge_json("A" if qa > qb else "B" if qb > qa else "tie")

    judge, model = judge_of(handler)
    outputs = {
        "refine_n_judge": state("v0", "v1"),
        "refine_only": state("v0", "v1", "v2", "v3"),
    }
    result = asyncio.run(win_rate_by_budget(judge, [1, 2, 3])(INPUTS, outputs, {}))
    assert scores(result) == {"win_rate@1": 0.5, "win_rate@2": 1.0, "win_rate@3": 1.0}
    assert len(model.calls) == 4  # budget 1 is the same text on both sides: no call


def test_pairwise_matrix_scores_later_against_earlier() -> None:
    judge, _ = judge_of(by_version("lower"))  # every refinement made it worse
    outputs = {"refine_only": state("v0", "v1", "v2")}
    result = asyncio.run(pairwise_matrix(judge, "refine_only")(INPUTS, outputs, {}))
    assert scores(result) == {
        "matrix:refine_only:1>0": 0.0,
        "matrix:refine_only:2>0": 0.0,
        "matrix:refine_only:2>1": 0.0,
    }


def test_chain_consistency_with_a_judge_that_reads_the_answers() -> None:
    judge, model = judge_of(by_version("higher"))
    outputs = {"refine_n_judge": state("v0", "v1", "v2", rejected="v1 again")}
    result = asyncio.run(chain_consistency(judge, repeats=4, seed=1)(INPUTS, outputs, {}))
    got = scores(result)
    assert got["agree_step_1"] == 1.0 and got["agree_step_2"] == 1.0
    assert got["agree_final_vs_rejected"] == 1.0
    assert got["agreement"] == 1.0
    assert len(model.calls) == 12  # 3 pairs x 4 repeats, one call each
    meta = {r["key"]: r.get("metadata") for r in result["results"]}
    assert meta["agree_step_1"]["n"] == 4


def test_chain_consistency_exposes_a_position_biased_judge() -> None:
    judge, _ = judge_of(lambda role, prompt: judge_json("A"))  # always the first answer
    outputs = {"refine_n_judge": state("v0", "v1", "v2")}
    evaluator = chain_consistency(judge, repeats=10, seed=7)
    result = asyncio.run(evaluator(INPUTS, outputs, {}))
    got = scores(result)
    calls = [
        c
        for r in result["results"]
        if r["key"].startswith("agree_step")
        for c in r["metadata"]["calls"]
    ]
    first = sum(c["position"] == "refined_first" for c in calls)
    # agreement is exactly the share of calls where the preferred answer happened to be first
    assert got["agreement"] == round(first / 20, 4)
    assert 0 < first < 20  # the positions really are random
    assert got["first_position_rate"] == 1.0
    again = asyncio.run(evaluator(INPUTS, outputs, {}))
    assert scores(again) == got  # same seed, same positions


def test_score_100_scales_pairwise_and_pointwise() -> None:
    pairwise = JudgeCall(
        iteration=1,
        judge_model="j",
        position="refined_first",
        candidate_role="refiner",
        winner="refined",
        scores_refined={"a": 8, "b": 6},
        total_refined=14,
        scores_previous={"a": 1, "b": 1},
        total_previous=2,
    )
    assert score_100(pairwise, "refined") == 70.0 and score_100(pairwise, "previous") == 10.0
    pointwise = pairwise.model_copy(
        update={"mode": "pointwise", "total_refined": 9.0, "total_previous": 1.0}
    )
    assert score_100(pointwise, "refined") == 100.0 and score_100(pointwise, "previous") == 0.0


# ------------------------------------------------------------------------- summaries


def row(*feedback: FeedbackRecord) -> ResultRow:
    return ResultRow(
        experiment="e", dataset="d", item_id="i", example_id="x", inputs={}, feedback=list(feedback)
    )


def test_win_counts_count_draws_half_and_leave_errors_out() -> None:
    rows = [
        row(FeedbackRecord(key="w", score=1.0, metadata={"outcome": "refined"})),
        row(FeedbackRecord(key="w", score=0.5, metadata={"outcome": "inconsistent"})),
        row(FeedbackRecord(key="w", score=0.0, metadata={"outcome": "previous"})),
        row(FeedbackRecord(key="w", score=None, metadata={"outcome": "error"})),
    ]
    assert win_counts(rows, "w") == {
        "win_rate": 0.5,
        "wins": 1,
        "losses": 1,
        "draws": 1,
        "errors": 1,
        "n": 3,
    }


def test_pooled_agreement_weights_by_judgments() -> None:
    rows = [
        row(FeedbackRecord(key="a", score=1.0, metadata={"agree": 10, "n": 10})),
        row(FeedbackRecord(key="a", score=0.0, metadata={"agree": 0, "n": 2})),
    ]
    assert pooled_agreement(rows, "a") == {"agree": 10, "n": 12, "rate": 0.8333}


def pointwise_judge(ratings: dict[str, str]) -> tuple[EvalJudge, ScriptedChatModel]:
    """A pointwise evaluation judge rating each `vN` answer with the digit given."""

    def handler(role: str, prompt: str) -> str:
        assert role == "rate"
        return ratings[tag(prompt, "answer")]

    model = ScriptedChatModel(handler=handler, model_name="rater")
    ctx = Context(judge_scoring="pointwise")
    return EvalJudge(NamedModel("rater", model), ctx, max_concurrent=2), model


def test_a_pointwise_evaluation_judge_scores_each_answer_alone() -> None:
    judge, model = pointwise_judge({"v0": "3", "v1": "7"})
    outputs = {"refine_n_judge": state("v0", "v1")}
    result = asyncio.run(reference_judge(judge)(INPUTS, outputs, {"reference": "r"}))
    assert scores(result) == {
        "judged_improved": 1.0,
        "judge_score_before": 25.0,  # 3 on 1-9
        "judge_score_after": 75.0,  # 7 on 1-9
        "judge_score_change": 50.0,
    }
    assert model.roles() == ["rate", "rate"]


def test_chain_consistency_with_a_pointwise_judge_has_no_positions() -> None:
    judge, _ = pointwise_judge({"v0": "3", "v1": "7", "v2": "6"})
    outputs = {"refine_n_judge": state("v0", "v1", "v2")}
    result = asyncio.run(chain_consistency(judge, repeats=3)(INPUTS, outputs, {}))
    got = scores(result)
    assert got == {"agree_step_1": 1.0, "agree_step_2": 0.0, "agreement": 0.5}
    calls = result["results"][0]["metadata"]["calls"]
    assert {c["position"] for c in calls} == {"alone"}
