"""SFT rows and DPO pairs from chains: a pair only where the judges preferred one answer."""

from __future__ import annotations

import json

import pytest

from nodes.state import Answer, ChainState, ChatMessage, Decision
from refine_n_judge.curate.exports import dpo_rows, sft_row


def answer(text: str, iteration: int, role: str = "refiner") -> Answer:
    model = "input" if iteration == 0 else "m"
    return Answer(text=text, iteration=iteration, model=model, role=role)  # type: ignore[arg-type]


def decision(
    iteration: int, outcome: str, confidence: float = 0.5, role: str = "refiner"
) -> Decision:
    return Decision(
        iteration=iteration,
        candidate_role=role,  # type: ignore[arg-type]
        candidate_model="m",
        verdicts=[],
        answered=1,
        votes_for_refined=int(outcome == "refined"),
        quorum=1,
        accepted=outcome == "refined",
        outcome=outcome,  # type: ignore[arg-type]
        confidence=confidence,
    )


def chain_state(
    texts: list[str],
    rejected: str | None = "worse",
    outcome: str = "previous",
    history: list[ChatMessage] | None = None,
) -> ChainState:
    """A chain as the graph leaves it: one accepted decision per refinement (confidence
    0.1 * i), then the decision on the last rejected candidate, if any."""
    chain = [answer(texts[0], 0, "initial")] + [
        answer(t, i) for i, t in enumerate(texts[1:], start=1)
    ]
    decisions = [decision(i, "refined", 0.1 * i) for i in range(1, len(texts))]
    last = None
    if rejected is not None:
        last = answer(rejected, len(texts))
        decisions.append(decision(len(texts), outcome, 0.9))
    return ChainState(
        id="x",
        question="Q?",
        history=history,
        chain=chain,
        last_rejected=last,
        decisions=decisions,
        stop_reason="rejected" if rejected else "max_iterations",
    )


def pairs(rows: list) -> list[tuple[str, str, str, str]]:
    return [(r.chosen, r.rejected, r.pair, r.outcome) for r in rows]


def test_sft_row_is_the_question_and_the_final_answer() -> None:
    row = sft_row(chain_state(["a0", "a1", "a2"]))
    assert row is not None
    assert row.model_dump() == {"id": "x", "prompt": "Q?", "completion": "a2"}


def test_adjacent_pairs_and_the_final_over_a_rejection_the_judges_gave() -> None:
    rows = dpo_rows(chain_state(["a0", "a1", "a2"]))
    assert pairs(rows) == [
        ("a1", "a0", "accepted_step", "refined"),
        ("a2", "a1", "accepted_step", "refined"),
        ("a2", "worse", "final_over_rejected", "previous"),
    ]
    assert [(r.chosen_iteration, r.rejected_iteration) for r in rows] == [(1, 0), (2, 1), (2, 3)]
    assert [r.confidence for r in rows] == [0.1, 0.2, 0.9]
    assert all(r.prompt == "Q?" and r.id == "x" for r in rows)


@pytest.mark.parametrize("outcome", ["tie", "inconsistent", "identical", "error", "no_quorum"])
def test_a_rejection_that_preferred_nothing_makes_no_pair(outcome: str) -> None:
    rows = dpo_rows(chain_state(["a0", "a1"], rejected="r2", outcome=outcome))
    assert pairs(rows) == [("a1", "a0", "accepted_step", "refined")]


def test_a_rejection_before_a_later_acceptance_is_not_paired_with_the_final() -> None:
    """An old `last_rejected` (from a checkpoint written before it was cleared on accept)
    lost to an older answer, never to the final one."""
    state = chain_state(["a0"], rejected="r1", outcome="previous")
    state = state.model_copy(
        update={
            "chain": [*state.chain, answer("a2", 2)],
            "decisions": [*state.decisions, decision(2, "refined")],
        }
    )
    assert pairs(dpo_rows(state)) == [("a2", "a0", "accepted_step", "refined")]


def test_all_adds_transitive_pairs_with_their_weakest_step() -> None:
    rows = dpo_rows(chain_state(["a0", "a1", "a2", "a3"], rejected=None), "all")
    assert pairs(rows) == [
        ("a1", "a0", "accepted_step", "refined"),
        ("a2", "a1", "accepted_step", "refined"),
        ("a3", "a2", "accepted_step", "refined"),
        ("a2", "a0", "transitive", "transitive"),
        ("a3", "a0", "transitive", "transitive"),
        ("a3", "a1", "transitive", "transitive"),
    ]
    assert [r.confidence for r in rows[3:]] == [0.1, 0.1, 0.2]


def test_texts_equal_up_to_whitespace_make_no_pair() -> None:
    rows = dpo_rows(chain_state(["a0", "a1"], rejected="  a1 \n"))
    assert pairs(rows) == [("a1", "a0", "accepted_step", "refined")]


def test_no_rejection_no_rejection_pair() -> None:
    assert pairs(dpo_rows(chain_state(["a0", "a1"], rejected=None))) == [
        ("a1", "a0", "accepted_step", "refined")
    ]


def test_chat_rows_export_in_trls_conversational_format() -> None:
    history = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Tell me about Paris."),
        ChatMessage(role="assistant", content="Paris is the capital of France."),
    ]
    state = chain_state(["a0", "a1"], history=history)
    prompt = [m.model_dump() for m in history] + [{"role": "user", "content": "Q?"}]

    sft = sft_row(state)
    assert sft is not None
    assert json.loads(sft.model_dump_json()) == {
        "id": "x",
        "messages": [*prompt, {"role": "assistant", "content": "a1"}],
    }
    rows = [json.loads(r.model_dump_json()) for r in dpo_rows(state)]
    assert [r["prompt"] for r in rows] == [prompt, prompt]
    assert [(r["chosen"], r["rejected"]) for r in rows] == [
        ([{"role": "assistant", "content": "a1"}], [{"role": "assistant", "content": "a0"}]),
        ([{"role": "assistant", "content": "a1"}], [{"role": "assistant", "content": "worse"}]),
    ]
