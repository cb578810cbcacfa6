"""Multi-judge vote with quorum, and the alternate refiner near termination."""

from __future__ import annotations

import pytest

from graph import ChainState, build_graph
from tests.support.chat_models import (
    ScriptedChatModel,
    judge_json,
    refine_json,
    tag,
    versioned_handler,
)


def judge_model(name: str, verdict: str) -> ScriptedChatModel:
    """A judge that says `refined`, `previous` or `error` in both orders for v1, and
    rejects everything later."""

    def handler(role: str, prompt: str) -> str:
        refined = "A" if tag(prompt, "answer_A") == "v1" else "B"
        previous = "B" if refined == "A" else "A"
        if "v2" in prompt or verdict == "previous":
            return judge_json(previous)
        if verdict == "error":
            return "no verdict today"
        return judge_json(refined)

    return ScriptedChatModel(handler=handler, model_name=name)


@pytest.mark.parametrize(
    ("verdicts", "quorum", "accepted", "outcome", "answered", "votes"),
    [
        pytest.param(["refined", "refined", "error"], 2, True, "refined", 2, 2, id="2of2-answered"),
        pytest.param(
            ["refined", "refined", "error"], 3, False, "no_quorum", 2, 2, id="quorum-3-unmet"
        ),
        pytest.param(
            ["refined", "previous", "error"], 2, False, "previous", 2, 1, id="split-no-majority"
        ),
        pytest.param(["refined", "refined", "previous"], 3, True, "refined", 3, 2, id="2of3"),
        pytest.param(["error", "error", "refined"], 1, True, "refined", 1, 1, id="lone-answer-q1"),
    ],
)
def test_vote_with_three_judges(
    verdicts: list[str], quorum: int, accepted: bool, outcome: str, answered: int, votes: int
) -> None:
    judges = [judge_model(f"judge-{i}", v) for i, v in enumerate(verdicts)]
    refiner = ScriptedChatModel(handler=versioned_handler(stop_at=1), model_name="writer")
    graph = build_graph(refiner=refiner, judges=judges)
    state = ChainState.model_validate(
        graph.invoke({"question": "q", "answer": "v0"}, context={"quorum": quorum})
    )
    first = state.decisions[0]
    assert (first.accepted, first.outcome, first.answered, first.votes_for_refined) == (
        accepted,
        outcome,
        answered,
        votes,
    )
    assert [v.judge_model for v in first.verdicts] == ["judge-0", "judge-1", "judge-2"]
    assert len([j for j in state.judgments if j.iteration == 1]) == 6  # a swapped pair each
    errored = [f.model for f in state.failures if f.stage == "judge" and f.iteration == 1]
    expected = [f"judge-{i}" for i, v in enumerate(verdicts) if v == "error"]
    assert sorted(errored) == sorted(expected * 2)  # both calls of an erroring judge
    if not accepted:
        assert state.stop_reason == ("no_quorum" if outcome == "no_quorum" else "rejected")


def test_context_refuses_a_quorum_larger_than_the_judges() -> None:
    graph = build_graph(refiner=ScriptedChatModel(handler=versioned_handler(stop_at=1)))
    with pytest.raises(ValueError, match="quorum=2 is more than the 1 judge"):
        graph.invoke({"question": "q", "answer": "v0"}, context={"quorum": 2})


def _primary_then_alternate(alternate_answer: str) -> tuple[ScriptedChatModel, ScriptedChatModel]:
    """The primary refiner only ever writes a worse answer (`bad`); the alternate writes
    `alternate_answer`. The judge prefers versioned answers up to v2 over `bad` and lower
    versions."""

    def primary(role: str, prompt: str) -> str:
        if role == "feedback":
            return "Fix it."
        if role == "refine":
            return refine_json(f"bad after {tag(prompt, 'answer')}")
        if role == "judge":
            a, b = tag(prompt, "answer_A"), tag(prompt, "answer_B")

            def rank(text: str) -> int:
                return -1 if text.startswith("bad") or text == "v3" else int(text[1:])

            return judge_json("A" if rank(a) > rank(b) else "B")
        raise AssertionError(role)

    def alternate(role: str, prompt: str) -> str:
        assert role == "refine", role
        assert tag(prompt, "feedback") == "Fix it."  # the same feedback the primary got
        current = tag(prompt, "answer")
        return refine_json(alternate_answer.format(next=int(current[1:]) + 1), "Fresh take.")

    return (
        ScriptedChatModel(handler=primary, model_name="primary"),
        ScriptedChatModel(handler=alternate, model_name="alternate"),
    )


def test_alternate_refiner_rescues_the_chain() -> None:
    primary, alternate = _primary_then_alternate("v{next}")
    graph = build_graph(refiner=primary, alternate_refiner=alternate)
    state = ChainState.model_validate(graph.invoke({"question": "q", "answer": "v0"}))
    # v1 and v2 come from the alternate after each primary rejection; v3 loses too
    assert [(a.text, a.model, a.role) for a in state.chain] == [
        ("v0", "input", "initial"),
        ("v1", "alternate", "alternate_refiner"),
        ("v2", "alternate", "alternate_refiner"),
    ]
    assert [(d.candidate_role, d.accepted) for d in state.decisions] == [
        ("refiner", False),
        ("alternate_refiner", True),
        ("refiner", False),
        ("alternate_refiner", True),
        ("refiner", False),
        ("alternate_refiner", False),
    ]
    assert state.stop_reason == "rejected"
    assert state.last_rejected is not None
    assert state.last_rejected.model == "alternate"
    assert state.iteration == 3  # the alternate's tries do not count as iterations
    assert state.chain[1].explanation == "Fresh take."
    assert state.chain[1].feedback == "Fix it."


def test_alternate_refiner_that_also_loses_ends_the_chain() -> None:
    primary, alternate = _primary_then_alternate("bad from alternate")
    graph = build_graph(refiner=primary, alternate_refiner=alternate)
    state = ChainState.model_validate(graph.invoke({"question": "q", "answer": "v0"}))
    assert [a.text for a in state.chain] == ["v0"]
    assert [d.candidate_role for d in state.decisions] == ["refiner", "alternate_refiner"]
    assert state.stop_reason == "rejected"
    assert state.last_rejected is not None
    assert state.last_rejected.text == "bad from alternate"
    assert state.usage["alternate"]["alternate_refine"].calls == 1


def test_no_alternate_means_no_extra_try() -> None:
    primary, _ = _primary_then_alternate("v{next}")
    state = ChainState.model_validate(
        build_graph(refiner=primary).invoke({"question": "q", "answer": "v0"})
    )
    assert [d.candidate_role for d in state.decisions] == ["refiner"]


def test_alternate_switches_in_after_an_unsure_win() -> None:
    """With the low-confidence trigger, a win by a small score margin hands the next
    refinement to the alternate refiner."""

    def primary(role: str, prompt: str) -> str:
        if role == "feedback":
            return "Polish."
        if role == "refine":
            return refine_json("v" + str(int(tag(prompt, "answer")[1:]) + 1))
        if role == "judge":
            a, b = tag(prompt, "answer_A"), tag(prompt, "answer_B")
            v1_letter = "A" if a == "v1" else "B"
            if {a, b} == {"v0", "v1"}:  # v1 beats v0 by a hair: 35.5 vs 35
                return judge_json(v1_letter, a=7.1 if a == "v1" else 7, b=7.1 if b == "v1" else 7)
            return judge_json(v1_letter)  # later candidates lose to v1
        raise AssertionError(role)

    alternate = ScriptedChatModel(
        handler=lambda role, prompt: refine_json("v2 by alternate"), model_name="alternate"
    )
    graph = build_graph(
        refiner=ScriptedChatModel(handler=primary, model_name="primary"),
        alternate_refiner=alternate,
    )
    state = ChainState.model_validate(
        graph.invoke(
            {"question": "q", "answer": "v0"},
            context={
                "alternate_trigger": "rejection_or_low_confidence",
                "confidence_threshold": 0.1,
            },
        )
    )
    assert state.decisions[0].accepted
    assert state.decisions[0].confidence == pytest.approx(0.01)
    assert state.decisions[1].candidate_role == "alternate_refiner"
    assert state.decisions[1].candidate_model == "alternate"
    # the alternate already had its turn: its loss ends the chain, no extra try
    assert len(state.decisions) == 2
    assert state.stop_reason == "rejected"
