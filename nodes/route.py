"""The conditional edges (pure: they only read state and settings) and the stop nodes.

Every edge that starts more work first checks that the run's step budget (LangGraph's
recursion limit, seen through `remaining_steps`) can still reach a decision and the
`finish` node; otherwise the chain ends at `out_of_steps` with its stop reason
`step_limit`, instead of the run raising `GraphRecursionError` and losing the chain.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from nodes.common import context_of
from nodes.context import Context
from nodes.decision import stop_reason_for
from nodes.models import ModelProvider
from nodes.state import ChainState, LoopState

# Nodes still to run, counting the one that ends the chain, from the start of each.
STEPS_FROM = {"feedback": 4, "refine": 3, "alternate_refine": 3, "judge": 2}


def fits_budget(state: ChainState, node: str) -> bool:
    """True when the step budget can still run `node` and what follows it to the end."""
    remaining = getattr(state, "remaining_steps", None)
    return remaining is None or remaining > STEPS_FROM[node]


def after_initial_answer(state: ChainState) -> Literal["next", "finish", "out_of_steps"]:
    """Feedback on Ans0 unless its generation failed for good."""
    if state.stop_reason:
        return "finish"
    return "next" if fits_budget(state, "feedback") else "out_of_steps"


def after_feedback(state: ChainState) -> Literal["next", "finish", "out_of_steps"]:
    """Refine unless the feedback call failed for good."""
    if state.stop_reason:
        return "finish"
    return "next" if fits_budget(state, "refine") else "out_of_steps"


def after_refine(state: ChainState) -> Literal["judge", "finish", "out_of_steps"]:
    """Judge the candidate; without one (the refiner failed) the loop ends."""
    if state.candidate is None or state.stop_reason:
        return "finish"
    return "judge" if fits_budget(state, "judge") else "out_of_steps"


def after_judge(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> Literal["feedback", "alternate_refine", "finish", "out_of_steps"]:
    """Next iteration after a win (up to the cap); the alternate's one try after a loss."""
    ctx = context_of(runtime)
    decision = state.decisions[-1]
    if decision.accepted:
        if state.iteration >= ctx.max_iterations:
            return "finish"
        return "feedback" if fits_budget(state, "feedback") else "out_of_steps"
    if decision.candidate_role == "refiner" and models.get_alternate_refiner(ctx) is not None:
        return "alternate_refine" if fits_budget(state, "alternate_refine") else "out_of_steps"
    return "finish"


async def finish(state: ChainState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Record why the chain ended (a model failure has set it already)."""
    if state.stop_reason is not None:
        return {}
    if not state.decisions:  # cannot happen through the graph's edges; be explicit anyway
        return {"stop_reason": "model_error"}
    return {"stop_reason": stop_reason_for(state.decisions[-1])}


async def out_of_steps(state: LoopState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The run's step budget ends the chain; what was accepted so far stands."""
    return {"stop_reason": "step_limit", "candidate": None}
