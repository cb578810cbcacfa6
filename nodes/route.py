"""The conditional edges (pure: they only read state and settings) and the stop node."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import ChainState
from nodes.common import context_of
from nodes.decision import stop_reason_for
from nodes.models import ModelProvider


def continue_or_finish(state: ChainState) -> Literal["next", "finish"]:
    """After initial_answer and feedback: go on unless a model call failed for good."""
    return "finish" if state.stop_reason else "next"


def after_refine(state: ChainState) -> Literal["judge", "finish"]:
    """Judge the candidate; without one (the refiner failed) the loop ends."""
    return "judge" if state.candidate is not None and not state.stop_reason else "finish"


def after_judge(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> Literal["feedback", "alternate_refine", "finish"]:
    """Next iteration after a win (up to the cap); the alternate's one try after a loss."""
    ctx = context_of(runtime)
    decision = state.decisions[-1]
    if decision.accepted:
        return "feedback" if state.iteration < ctx.max_iterations else "finish"
    if decision.candidate_role == "refiner" and models.get_alternate_refiner(ctx) is not None:
        return "alternate_refine"
    return "finish"


async def finish(state: ChainState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Record why the chain ended (a model failure has set it already)."""
    if state.stop_reason is not None:
        return {}
    if not state.decisions:  # cannot happen through the graph's edges; be explicit anyway
        return {"stop_reason": "model_error"}
    return {"stop_reason": stop_reason_for(state.decisions[-1])}
