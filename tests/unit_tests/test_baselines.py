"""The baselines as graphs: refine-only, zero-shot and best-of-N, from the real nodes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from graph.baselines import BestOfNState, build_best_of_n, build_refine_only, build_zero_shot
from nodes.state import ChainState
from tests.support.chat_models import ScriptedChatModel, judge_json, tag, versioned_handler
from tests.support.scripts import version


def test_refine_only_keeps_every_refinement_without_a_judge() -> None:
    # the judge script would reject v3; refine-only never asks it
    model = ScriptedChatModel(handler=versioned_handler(stop_at=2))
    state = ChainState.model_validate(
        build_refine_only(refiner=model, iterations=4).invoke({"question": "q", "answer": "v0"})
    )
    assert [a.text for a in state.chain] == ["v0", "v1", "v2", "v3", "v4"]
    assert [a.iteration for a in state.chain] == [0, 1, 2, 3, 4]
    assert state.chain[2].feedback == "Improve v1."
    assert model.roles() == ["feedback", "refine"] * 4
    assert state.judgments == [] and state.decisions == []
    assert state.stop_reason == "max_iterations"
    assert state.usage["scripted"]["refine"].calls == 4


def test_refine_only_takes_its_budget_from_the_context_and_runs_async() -> None:
    model = ScriptedChatModel(handler=versioned_handler(stop_at=0))
    graph = build_refine_only(refiner=model)
    result = asyncio.run(
        graph.ainvoke({"question": "q", "answer": "v0"}, context={"max_iterations": 2})
    )
    assert [a.text for a in ChainState.model_validate(result).chain] == ["v0", "v1", "v2"]


def test_refine_only_keeps_an_identical_refinement() -> None:
    def handler(role: str, prompt: str) -> str:
        return "Fine." if role == "feedback" else '{"explanation": "none", "answer": "v0"}'

    state = ChainState.model_validate(
        build_refine_only(refiner=ScriptedChatModel(handler=handler), iterations=2).invoke(
            {"question": "q", "answer": "v0"}
        )
    )
    assert [a.text for a in state.chain] == ["v0", "v0", "v0"]


def test_refine_only_stops_on_a_failed_refinement() -> None:
    def handler(role: str, prompt: str) -> object:
        if role.startswith("refine"):
            return "no json here"
        return versioned_handler(stop_at=5)(role, prompt)

    state = ChainState.model_validate(
        build_refine_only(refiner=ScriptedChatModel(handler=handler), iterations=3).invoke(
            {"question": "q", "answer": "v0"}, context={"max_attempts": 1}
        )
    )
    assert [a.text for a in state.chain] == ["v0"]
    assert state.stop_reason == "model_error"
    assert state.failures[0].stage == "refine"


def test_refine_only_refuses_a_zero_budget() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        build_refine_only(iterations=0)


def test_zero_shot_ignores_the_given_answer() -> None:
    model = ScriptedChatModel(handler=versioned_handler(stop_at=1))
    state = ChainState.model_validate(
        build_zero_shot(refiner=model).invoke({"question": "What is v?", "answer": "v7 given"})
    )
    assert [a.text for a in state.chain] == ["v0 generated"]
    assert state.chain[0].role == "initial" and state.chain[0].model == "scripted"
    assert state.answer == "v7 given"
    assert model.roles() == ["initial"]
    assert state.stop_reason == "max_iterations"


def sampling_handler(versions: list[int], judge: object = None) -> object:
    """Fresh answers v<versions[k]> in call order; the judge prefers the higher version."""
    fresh = iter(versions)

    def handler(role: str, prompt: str) -> str:
        if role == "initial":
            return f"v{next(fresh)} sample"
        if role == "judge":
            a, b = version(tag(prompt, "answer_A")), version(tag(prompt, "answer_B"))
            return judge_json("A" if a > b else "B" if b > a else "tie")
        raise AssertionError(role)

    return handler


def test_best_of_n_keeps_the_champion_ladder_and_every_judgment() -> None:
    model = ScriptedChatModel(handler=sampling_handler([2, 5, 1, 7]))
    result = build_best_of_n(refiner=model, n=4).invoke({"question": "q", "answer": "v0 given"})
    state = ChainState.model_validate(result)
    assert [a.text for a in BestOfNState.model_validate(result).samples] == [
        "v2 sample",
        "v5 sample",
        "v1 sample",
        "v7 sample",
    ]
    assert [a.text for a in state.chain] == ["v2 sample", "v5 sample", "v7 sample"]
    assert [a.iteration for a in state.chain] == [0, 1, 3]
    assert [d.accepted for d in state.decisions] == [True, False, True]
    assert [d.iteration for d in state.decisions] == [1, 2, 3]
    # v1 lost to v5, which v7 then replaced: no rejection stands against the final pick
    assert state.last_rejected is None
    assert len(state.judgments) == 6  # three comparisons, both orders each
    assert model.roles() == ["initial"] * 4 + ["judge"] * 6
    assert state.final_answer is not None and state.final_answer.text == "v7 sample"
    assert state.stop_reason == "max_iterations"
    assert state.usage["scripted"]["initial_answer"].calls == 4


def test_best_of_n_uses_the_judges_it_is_given() -> None:
    writer = ScriptedChatModel(handler=sampling_handler([1, 3]), model_name="writer")
    critic = ScriptedChatModel(handler=sampling_handler([]), model_name="critic")
    state = ChainState.model_validate(
        build_best_of_n(refiner=writer, judges=[critic], n=2).invoke({"question": "q"})
    )
    assert [a.text for a in state.chain] == ["v1 sample", "v3 sample"]
    assert set(writer.roles()) == {"initial"} and set(critic.roles()) == {"judge"}


def test_best_of_n_identical_samples_need_no_judge() -> None:
    model = ScriptedChatModel(handler=sampling_handler([4, 4, 4]))
    state = ChainState.model_validate(build_best_of_n(refiner=model, n=3).invoke({"question": "q"}))
    assert [a.text for a in state.chain] == ["v4 sample"]
    assert [d.outcome for d in state.decisions] == ["identical", "identical"]
    assert "judge" not in model.roles()


def test_best_of_n_survives_failed_samples() -> None:
    counter = itertools.count()

    def handler(role: str, prompt: str) -> object:
        if role == "initial":
            k = next(counter)
            return TimeoutError("down") if k % 2 else f"v{k} sample"
        return sampling_handler([])(role, prompt)  # type: ignore[operator]

    state = ChainState.model_validate(
        build_best_of_n(refiner=ScriptedChatModel(handler=handler), n=4).invoke(
            {"question": "q"}, context={"max_attempts": 1}
        )
    )
    assert [a.text for a in state.chain] == ["v0 sample", "v2 sample"]
    assert [f.stage for f in state.failures] == ["initial_answer", "initial_answer"]
    assert state.stop_reason == "max_iterations"
