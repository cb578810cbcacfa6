"""Judge modes for small models: pointwise expected scores, pairwise probabilities,
reference-guided prompts, and confidence driving the vote."""

from __future__ import annotations

import math

import pytest
from langchain_core.messages import AIMessage

from endpoints.embedded import MODEL_ALIAS
from endpoints.traits import EMBEDDED_POINTWISE_MARGIN
from graph import ChainState, build_graph
from nodes.judge_pairwise import letter_probability
from nodes.judge_pointwise import DEFAULT_MARGIN, expected_digit, written_digit
from nodes.parsing import ReplyParseError
from tests.support.chat_models import ScriptedChatModel, judge_json, tag, versioned_handler


def logprob_entry(token: str, dist: dict[str, float]) -> dict[str, object]:
    return {
        "token": token,
        "logprob": math.log(dist.get(token, 1e-6)),
        "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in dist.items()],
    }


def digit_message(dist: dict[str, float]) -> AIMessage:
    """A one-token rating reply carrying top logprobs, as an OpenAI-compatible server sends."""
    top = max(dist, key=dist.__getitem__)
    return AIMessage(
        content=top,
        response_metadata={"logprobs": {"content": [logprob_entry(top, dist)]}},
        usage_metadata={"input_tokens": 50, "output_tokens": 1, "total_tokens": 51},
    )


@pytest.mark.parametrize(
    ("dist", "expected"),
    [
        pytest.param({"7": 1.0}, 7.0, id="certain"),
        pytest.param({"6": 0.5, "8": 0.5}, 7.0, id="split"),
        pytest.param({"9": 0.6, "3": 0.2, "x": 0.2}, 7.5, id="non-digits-ignored"),
    ],
)
def test_expected_digit(dist: dict[str, float], expected: float) -> None:
    top = max((t for t in dist if t.isdigit()), key=dist.__getitem__)
    assert expected_digit([logprob_entry(top, dist)]) == pytest.approx(expected)


def test_expected_digit_without_logprobs_or_digit() -> None:
    assert expected_digit(None) is None
    assert expected_digit([logprob_entry("Rating", {"Rating": 1.0})]) is None


def test_written_digit_fallback() -> None:
    assert written_digit("Rating: 7/9") == 7
    with pytest.raises(ReplyParseError, match="exactly one rating digit"):
        written_digit("excellent")


def pointwise_refiner(scores: dict[str, object]) -> ScriptedChatModel:
    """Versioned refiner; the judge rates an answer `scores[text]` (a dist or a reply)."""
    base = versioned_handler(stop_at=99)

    def handler(role: str, prompt: str) -> object:
        if role == "rate":
            reply = scores[tag(prompt, "answer")]
            return digit_message(reply) if isinstance(reply, dict) else reply
        return base(role, prompt)

    return ScriptedChatModel(handler=handler)


@pytest.mark.parametrize(
    ("model_name", "setting", "needed"),
    [
        pytest.param(MODEL_ALIAS, None, EMBEDDED_POINTWISE_MARGIN, id="embedded-calibrated"),
        pytest.param("scripted", None, DEFAULT_MARGIN, id="other-model-default"),
        pytest.param(MODEL_ALIAS, 0.5, 0.5, id="setting-wins"),
    ],
)
def test_the_margin_is_the_settings_else_the_one_calibrated_for_the_judge(
    model_name: str, setting: float | None, needed: float
) -> None:
    """A score gap just above and just below the margin the judge should use: the first
    refinement wins, the second ties (the justification names the margin)."""
    gap = 0.01
    model = pointwise_refiner(
        {
            "v0": {"5": 1.0},
            "v1": {"6": needed + gap, "5": 1 - needed - gap},
            "v2": {"6": needed + gap - 2 * gap, "5": 1 - needed + gap},
        }
    )
    model.model_name = model_name
    state = ChainState.model_validate(
        build_graph(refiner=model).invoke(
            {"question": "q", "answer": "v0"},
            context={"judge_scoring": "pointwise", "pointwise_margin": setting},
        )
    )
    assert [d.outcome for d in state.decisions] == ["refined", "tie"]
    assert f"needs > {needed})" in state.judgments[0].justification


@pytest.mark.parametrize(
    ("v0", "v1", "margin", "outcome"),
    [
        pytest.param({"5": 1.0}, {"6": 0.5, "7": 0.5}, 0.2, "refined", id="clear-win"),
        pytest.param({"5": 1.0}, {"5": 0.9, "6": 0.1}, 0.2, "tie", id="within-margin"),
        pytest.param({"5": 1.0}, {"5": 0.9, "6": 0.1}, 0.05, "refined", id="small-margin-setting"),
        pytest.param({"7": 1.0}, {"4": 1.0}, 0.2, "previous", id="worse"),
    ],
)
def test_pointwise_margin_rule(
    v0: dict[str, float], v1: dict[str, float], margin: float, outcome: str
) -> None:
    model = pointwise_refiner({"v0": v0, "v1": v1, "v2": {"1": 1.0}})
    graph = build_graph(refiner=model)
    state = ChainState.model_validate(
        graph.invoke(
            {"question": "q", "answer": "v0"},
            context={"judge_scoring": "pointwise", "pointwise_margin": margin},
        )
    )
    first = state.judgments[0]
    assert first.mode == "pointwise" and first.position == "alone"
    assert first.score_source == "logprobs"
    assert state.decisions[0].outcome == outcome
    assert state.decisions[0].verdicts[0].mode == "pointwise"
    assert first.total_refined == pytest.approx(sum(int(d) * p for d, p in v1.items()))


def test_pointwise_without_logprobs_uses_the_written_digit_and_says_so() -> None:
    model = pointwise_refiner({"v0": "4", "v1": "Rating: 8", "v2": "2"})
    graph = build_graph(refiner=model)
    state = ChainState.model_validate(
        graph.invoke({"question": "q", "answer": "v0"}, context={"judge_scoring": "pointwise"})
    )
    first = state.judgments[0]
    assert (first.total_previous, first.total_refined) == (4.0, 8.0)
    assert first.score_source == "sampled"
    assert state.decisions[0].accepted
    assert first.confidence == pytest.approx(0.5)


def test_pointwise_reuses_the_accepted_answers_score() -> None:
    model = pointwise_refiner({"v0": "3", "v1": "6", "v2": "5"})
    graph = build_graph(refiner=model)
    state = ChainState.model_validate(
        graph.invoke({"question": "q", "answer": "v0"}, context={"judge_scoring": "pointwise"})
    )
    assert [a.text for a in state.chain] == ["v0", "v1"]
    # iteration 1 rates v0 and v1; iteration 2 rates only v2 (v1's score is cached)
    assert model.roles().count("rate") == 3
    assert state.judgments[1].total_previous == 6.0
    assert state.decisions[1].outcome == "previous"


def test_pointwise_per_criterion_averages_the_criteria() -> None:
    def handler(role: str, prompt: str) -> object:
        if role == "rate":
            answer = tag(prompt, "answer")
            return (
                "8" if answer == "v1" and "accuracy" in prompt.split("Judge its")[1][:20] else "5"
            )
        return versioned_handler(stop_at=1)(role, prompt)

    graph = build_graph(refiner=ScriptedChatModel(handler=handler))
    state = ChainState.model_validate(
        graph.invoke(
            {"question": "q", "answer": "v0"},
            context={
                "judge_scoring": "pointwise",
                "pointwise_aspect": "per_criterion",
                "criteria": ["accuracy", "clarity"],
            },
        )
    )
    first = state.judgments[0]
    assert first.scores_refined == {"accuracy": 8.0, "clarity": 5.0}
    assert first.total_refined == 6.5 and first.total_previous == 5.0


def test_pairwise_reads_the_verdict_letters_probability() -> None:
    raw = judge_json("A")
    tokens = [raw[: raw.rfind('"A"') + 1], "A", raw[raw.rfind('"A"') + 2 :]]
    logprobs = [
        {"token": tokens[0], "logprob": 0.0, "top_logprobs": []},
        logprob_entry("A", {"A": 0.8, "B": 0.2}),
        {"token": tokens[2], "logprob": 0.0, "top_logprobs": []},
    ]
    assert letter_probability(logprobs, raw) == pytest.approx(0.8)
    assert letter_probability(None, raw) is None


def test_reference_goes_into_feedback_and_both_judge_modes() -> None:
    prompts: dict[str, str] = {}
    base = versioned_handler(stop_at=1)

    def handler(role: str, prompt: str) -> object:
        prompts.setdefault(role, prompt)
        if role == "rate":
            return "5"
        return base(role, prompt)

    for scoring in ("pairwise", "pointwise"):
        graph = build_graph(refiner=ScriptedChatModel(handler=handler))
        graph.invoke(
            {"question": "q", "answer": "v0", "reference": "The truth is v7 </reference>"},
            context={"judge_scoring": scoring},
        )
    for role in ("feedback", "judge", "rate"):
        assert "<reference>The truth is v7 &lt;/reference></reference>" in prompts[role], role
    assert "<reference>" not in prompts["refine"]


def _judge(name: str, winner_for_refined: str, a: float, b: float) -> ScriptedChatModel:
    """A pairwise judge that answers `winner_for_refined` for v1 with scores a (refined)
    and b (previous), and rejects later candidates."""

    def handler(role: str, prompt: str) -> object:
        letter_refined = "A" if tag(prompt, "answer_A") == "v1" else "B"
        other = "B" if letter_refined == "A" else "A"
        if "v2" in prompt:
            return judge_json(other)
        letter = letter_refined if winner_for_refined == "refined" else other
        sa, sb = (a, b) if letter_refined == "A" else (b, a)
        return judge_json(letter, a=sa, b=sb)

    return ScriptedChatModel(handler=handler, model_name=name)


@pytest.mark.parametrize(
    ("first_scores", "asked", "accepted"),
    [
        pytest.param((9, 3), ["first"], True, id="sure-first-judge-decides-alone"),
        pytest.param((7.1, 7), ["first", "second", "third"], False, id="unsure-asks-the-others"),
    ],
)
def test_low_confidence_vote_trigger(
    first_scores: tuple[float, float], asked: list[str], accepted: bool
) -> None:
    judges = [
        _judge("first", "refined", *first_scores),
        _judge("second", "previous", 3, 9),
        _judge("third", "previous", 3, 9),
    ]
    graph = build_graph(
        refiner=ScriptedChatModel(handler=versioned_handler(stop_at=1), model_name="writer"),
        judges=judges,
    )
    state = ChainState.model_validate(
        graph.invoke(
            {"question": "q", "answer": "v0"},
            context={"vote_trigger": "low_confidence", "confidence_threshold": 0.3},
        )
    )
    first = state.decisions[0]
    assert [v.judge_model for v in first.verdicts] == asked
    assert first.accepted is accepted
    called = sorted({j.judge_model for j in state.judgments if j.iteration == 1})
    assert called == sorted(asked)


def test_auto_scoring_is_pointwise_for_the_embedded_model_only() -> None:
    from endpoints.embedded import MODEL_ALIAS
    from graph import Context
    from nodes.judge import scoring_mode
    from nodes.models import NamedModel

    fake = ScriptedChatModel(handler=versioned_handler(stop_at=1))
    assert scoring_mode(NamedModel(MODEL_ALIAS, fake), Context()) == "pointwise"
    assert scoring_mode(NamedModel("gpt-4o-mini", fake), Context()) == "pairwise"
    assert (
        scoring_mode(NamedModel(MODEL_ALIAS, fake), Context(judge_scoring="pairwise")) == "pairwise"
    )
