"""Training data from finished chains: SFT rows and DPO preference pairs.

A row claims only what the judges decided. SFT: the question and the best (last accepted)
answer. DPO (`--dpo-pairs adjacent`, the default):

- each accepted refinement over the answer it replaced (the judges preferred it: in both
  orders for a pairwise judge);
- the final answer over the last rejected refinement, only when that decision's outcome
  was `previous` (the judges preferred the final answer). Ties, inconsistent orders,
  identical texts, judge errors and a missing quorum prefer nothing and make no pair.

`--dpo-pairs all` adds `transitive` pairs: every later chain answer over every earlier,
non-adjacent one (a sequence of accepted steps, never compared directly). Pairs whose
texts are the same up to whitespace are left out. Chat rows are written in TRL's
conversational format, plain rows in its standard one.
"""

from __future__ import annotations

from typing import Literal

from nodes.decision import same_text
from nodes.state import Answer, ChainState, ChatMessage, Decision
from refine_n_judge.curate.records import DpoRow, PairKind, SftChatRow, SftRecord, SftRow

DpoPairs = Literal["adjacent", "all"]


def sft_row(state: ChainState) -> SftRecord | None:
    """The SFT row of a chain; None when the chain has no answer."""
    final = state.final_answer
    if final is None or state.id is None:
        return None
    if state.is_conversation:
        messages = [*state.prompt_messages(), ChatMessage(role="assistant", content=final.text)]
        return SftChatRow(id=state.id, messages=messages)
    return SftRow(id=state.id, prompt=state.question, completion=final.text)


def accepted_decisions(state: ChainState) -> list[Decision]:
    """The decision behind each refinement in the chain: `chain[i]` for i >= 1 is the
    candidate of the i-th accepted decision."""
    return [d for d in state.decisions if d.accepted]


def rejection_decision(state: ChainState) -> Decision | None:
    """The decision that rejected `last_rejected` (it was judged against the final answer)."""
    rejected = state.last_rejected
    if rejected is None:
        return None
    for decision in reversed(state.decisions):
        if decision.accepted:
            return None  # a later acceptance: the rejection was against an older answer
        if decision.iteration == rejected.iteration and decision.candidate_role == rejected.role:
            return decision
    return None


def dpo_rows(state: ChainState, pairs: DpoPairs = "adjacent") -> list[DpoRow]:
    """The preference pairs of a chain that the judges' decisions support."""
    if state.id is None:
        return []
    chain = state.chain
    steps = accepted_decisions(state)
    rows: list[DpoRow] = []
    for i, decision in zip(range(1, len(chain)), steps, strict=False):
        rows.append(
            _row(state, chain[i], chain[i - 1], "accepted_step", "refined", decision.confidence)
        )
    if pairs == "all":
        for j in range(2, len(chain)):
            for i in range(j - 1):
                confidences = [d.confidence for d in steps[i:j] if d.confidence is not None]
                weakest = min(confidences) if confidences else None
                rows.append(_row(state, chain[j], chain[i], "transitive", "transitive", weakest))
    rejection = rejection_decision(state)
    if (
        chain
        and state.last_rejected is not None
        and rejection is not None
        and rejection.outcome == "previous"
    ):
        rows.append(
            _row(
                state,
                chain[-1],
                state.last_rejected,
                "final_over_rejected",
                "previous",
                rejection.confidence,
            )
        )
    return [row for row in rows if not _same(row)]


def _same(row: DpoRow) -> bool:
    chosen, rejected = row.chosen, row.rejected
    if isinstance(chosen, list) and isinstance(rejected, list):
        return same_text(chosen[-1].content, rejected[-1].content)
    return isinstance(chosen, str) and isinstance(rejected, str) and same_text(chosen, rejected)


def _row(
    state: ChainState,
    chosen: Answer,
    rejected: Answer,
    kind: PairKind,
    outcome: str,
    confidence: float | None,
) -> DpoRow:
    assert state.id is not None
    if state.is_conversation:
        prompt: str | list[ChatMessage] = state.prompt_messages()
        chosen_value: str | list[ChatMessage] = [ChatMessage(role="assistant", content=chosen.text)]
        rejected_value: str | list[ChatMessage] = [
            ChatMessage(role="assistant", content=rejected.text)
        ]
    else:
        prompt, chosen_value, rejected_value = state.question, chosen.text, rejected.text
    return DpoRow(
        id=state.id,
        prompt=prompt,
        chosen=chosen_value,
        rejected=rejected_value,
        chosen_iteration=chosen.iteration,
        rejected_iteration=rejected.iteration,
        pair=kind,
        outcome=outcome,
        confidence=confidence,
    )
