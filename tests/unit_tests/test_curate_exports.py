"""SFT rows and DPO pairs from chains: which pairs, in which order, which are left out."""

from __future__ import annotations

import pytest

from graph.state import Answer, ChainState, Decision
from refine_n_judge.curate.exports import dpo_rows, sft_row


def answer(text: str, iteration: int, role: str = "refiner") -> Answer:
    model = "input" if iteration == 0 else "m"
    return Answer(text=text, iteration=iteration, model=model, role=role)  # type: ignore[arg-type]


def chain_state(
    texts: list[str], rejected: str | None = "worse", outcome: str = "previous"
) -> ChainState:
    chain = [answer(texts[0], 0, "initial")] + [
        answer(t, i) for i, t in enumerate(texts[1:], start=1)
    ]
    last = None
    decisions = []
    if rejected is not None:
        last = answer(rejected, len(texts))
        decisions.append(
            Decision(
                iteration=len(texts),
                candidate_role="refiner",
                candidate_model="m",
                verdicts=[],
                answered=1,
                votes_for_refined=0,
                quorum=1,
                accepted=False,
                outcome=outcome,  # type: ignore[arg-type]
            )
        )
    return ChainState(
        id="x",
        question="Q?",
        chain=chain,
        last_rejected=last,
        decisions=decisions,
        stop_reason="rejected" if rejected else "max_iterations",
    )


def pairs(rows: list) -> list[tuple[str, str, str]]:
    return [(r.chosen, r.rejected, r.pair) for r in rows]


def test_sft_row_is_the_question_and_the_final_answer() -> None:
    row = sft_row(chain_state(["a0", "a1", "a2"]))
    assert row is not None
    assert row.model_dump() == {"id": "x", "prompt": "Q?", "completion": "a2"}


def test_adjacent_pairs_and_the_final_over_the_last_rejected() -> None:
    rows = dpo_rows(chain_state(["a0", "a1", "a2"]))
    assert pairs(rows) == [
        ("a1", "a0", "accepted_step"),
        ("a2", "a1", "accepted_step"),
        ("a2", "worse", "final_over_rejected"),
    ]
    assert [(r.chosen_iteration, r.rejected_iteration) for r in rows] == [(1, 0), (2, 1), (2, 3)]
    assert rows[-1].rejected_outcome == "previous"
    assert all(r.prompt == "Q?" and r.id == "x" for r in rows)


def test_all_ordered_pairs() -> None:
    rows = dpo_rows(chain_state(["a0", "a1", "a2"]), "all")
    assert pairs(rows) == [
        ("a1", "a0", "ordered"),
        ("a2", "a0", "ordered"),
        ("a2", "a1", "ordered"),
        ("a2", "worse", "final_over_rejected"),
    ]


@pytest.mark.parametrize("mode", ["adjacent", "all"])
def test_a_chain_with_no_refinement_gives_only_the_rejection_pair(mode: str) -> None:
    rows = dpo_rows(chain_state(["a0"], rejected="r1", outcome="tie"), mode)  # type: ignore[arg-type]
    assert pairs(rows) == [("a0", "r1", "final_over_rejected")]
    assert rows[0].rejected_outcome == "tie"


def test_identical_texts_make_no_pair() -> None:
    rows = dpo_rows(chain_state(["a0", "a1"], rejected=" a1 "))
    assert pairs(rows) == [("a1", "a0", "accepted_step")]


def test_no_rejection_no_rejection_pair() -> None:
    assert pairs(dpo_rows(chain_state(["a0", "a1"], rejected=None))) == [
        ("a1", "a0", "accepted_step")
    ]
