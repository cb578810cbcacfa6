"""Training data from finished chains: SFT rows and DPO preference pairs.

SFT: the question and the best (last accepted) answer. DPO, by default
(`--dpo-pairs adjacent`): each accepted refinement over the answer it replaced, and the
final answer over the last refinement the judge rejected. `--dpo-pairs all`: every later
chain answer over every earlier one (each is a step the judge accepted, directly or
through a sequence of wins), plus the final answer over the last rejected refinement.
Pairs whose two texts are the same are left out: they teach nothing.
"""

from __future__ import annotations

from typing import Literal

from graph.state import Answer, ChainState
from refine_n_judge.curate.records import DpoRow, PairKind, SftRow

DpoPairs = Literal["adjacent", "all"]


def sft_row(state: ChainState) -> SftRow | None:
    """The SFT row of a chain; None when the chain has no answer."""
    final = state.final_answer
    if final is None or state.id is None:
        return None
    return SftRow(id=state.id, prompt=state.question, completion=final.text)


def dpo_rows(state: ChainState, pairs: DpoPairs = "adjacent") -> list[DpoRow]:
    """The preference pairs of a chain."""
    if state.id is None:
        return []
    chain = state.chain
    rows: list[DpoRow] = []
    if pairs == "all":
        for j in range(1, len(chain)):
            for i in range(j):
                rows.append(_row(state, chain[j], chain[i], "ordered"))
    else:
        for i in range(1, len(chain)):
            rows.append(_row(state, chain[i], chain[i - 1], "accepted_step"))
    if chain and state.last_rejected is not None:
        row = _row(state, chain[-1], state.last_rejected, "final_over_rejected")
        row.rejected_outcome = _outcome_of(state, state.last_rejected)
        rows.append(row)
    return [row for row in rows if row.chosen.strip() != row.rejected.strip()]


def _row(state: ChainState, chosen: Answer, rejected: Answer, kind: PairKind) -> DpoRow:
    assert state.id is not None
    return DpoRow(
        id=state.id,
        prompt=state.question,
        chosen=chosen.text,
        rejected=rejected.text,
        chosen_iteration=chosen.iteration,
        rejected_iteration=rejected.iteration,
        pair=kind,
    )


def _outcome_of(state: ChainState, rejected: Answer) -> str | None:
    """What the judges concluded about the rejected refinement."""
    for decision in reversed(state.decisions):
        if decision.iteration == rejected.iteration and decision.candidate_role == rejected.role:
            return str(decision.outcome)
    return None
