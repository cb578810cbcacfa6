"""Where a finished item goes: chains.jsonl (whole or partial) or failures.jsonl."""

from __future__ import annotations

from nodes.state import ChainState

FAILED_STOP_REASONS = frozenset({"model_error", "judge_error", "no_quorum"})
"""Stop reasons that mean the models could not finish the item."""


def is_failure(state: ChainState) -> bool:
    """The item goes to failures.jsonl: no answer, or the models failed before the judges
    accepted any refinement (the chain has nothing verified to offer)."""
    if not state.chain:
        return True
    return state.stop_reason in FAILED_STOP_REASONS and state.accepted_refinements == 0


def is_partial(state: ChainState) -> bool:
    """A chain kept in chains.jsonl although a later model call failed: its accepted
    refinements (and their preference pairs) stand; run.json counts it as partial."""
    return bool(state.chain) and not is_failure(state) and state.stop_reason in FAILED_STOP_REASONS
