"""Baselines built from the same nodes and prompts as Refine-n-Judge (paper sections 5.1-5.2).

    refine-only: START -> initial_answer -> (feedback -> refine -> keep) x N -> finish
    zero-shot:   START -> answer (fresh, from the question) -> finish
    best-of-N:   START -> sample (N fresh answers) -> (next_challenger -> judge) x N-1 -> finish

Every baseline returns a `ChainState`, so exports and evaluators treat all pipelines alike:

- refine-only keeps every refinement in `chain` (no judge, so nothing is rejected);
- zero-shot's `chain` is the one fresh answer (the input's answer, if any, is ignored);
- best-of-N runs a king-of-the-hill knockout with the real judge node: the first sample is
  the champion and each challenger replaces it only if the judge prefers it under the usual
  strict rule (both orders, or the pointwise margin). `chain` is the ladder of champions
  (its last answer is the pick), `judgments`/`decisions` every comparison, and `samples`
  all N answers.

A baseline that uses its whole budget ends with `stop_reason="max_iterations"`.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from pydantic import Field

from graph.builder import refinement_prelude
from graph.sync_bridge import sync_and_async_node, sync_router
from nodes.common import context_of
from nodes.context import Context
from nodes.initial_answer import write_initial_answer
from nodes.judge import judge
from nodes.models import ModelProvider
from nodes.route import fits_budget
from nodes.state import Answer, ChainState, InputState, merge_usage


def _budget(iterations: int | None, ctx: Context) -> int:
    return iterations if iterations is not None else ctx.max_iterations


async def keep_refinement(state: ChainState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Refine-only: the candidate joins the chain unjudged (Self-Refine has no judge)."""
    return {"chain": [state.candidate], "candidate": None}


async def finish_budget(state: ChainState, runtime: Runtime[Context]) -> dict[str, Any]:
    """The budget is spent (a model failure has set its own stop reason already)."""
    if state.stop_reason is not None:
        return {}
    if not state.chain:
        return {"stop_reason": "model_error"}
    return {"stop_reason": "max_iterations"}


async def fresh_answer(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> dict[str, Any]:
    """One answer written from the question alone, with the initial-answer prompt."""
    return await write_initial_answer(
        state.model_copy(update={"answer": None, "chain": []}), context_of(runtime), models=models
    )


def build_refine_only(
    *,
    refiner: BaseChatModel | None = None,
    iterations: int | None = None,
    name: str = "refine_only",
) -> CompiledStateGraph[ChainState, Context, InputState, ChainState]:
    """Self-Refine: feedback and refinement `iterations` times (default: the context's
    `max_iterations`), every refinement kept, no judge."""
    if iterations is not None and iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    models = ModelProvider(refiner=refiner)

    def after_refine(state: ChainState) -> Literal["keep", "finish"]:
        return "keep" if state.candidate is not None and not state.stop_reason else "finish"

    def after_keep(
        state: ChainState, runtime: Runtime[Context]
    ) -> Literal["feedback", "finish", "out_of_steps"]:
        if state.iteration >= _budget(iterations, context_of(runtime)):
            return "finish"
        return "feedback" if fits_budget(state, "feedback") else "out_of_steps"

    builder = refinement_prelude(models)
    builder.add_node("keep", sync_and_async_node(keep_refinement, "keep"))
    builder.add_node("finish", sync_and_async_node(finish_budget, "finish"))
    builder.add_conditional_edges(
        "refine", sync_router(after_refine, "after_refine"), {"keep": "keep", "finish": "finish"}
    )
    builder.add_conditional_edges(
        "keep",
        sync_router(after_keep, "after_keep"),
        {"feedback": "feedback", "finish": "finish", "out_of_steps": "out_of_steps"},
    )
    builder.add_edge("finish", END)
    return builder.compile(name=name)


def build_zero_shot(
    *, refiner: BaseChatModel | None = None, name: str = "zero_shot"
) -> CompiledStateGraph[ChainState, Context, InputState, ChainState]:
    """One fresh answer from the question (paper 5.1's one-shot answer)."""
    models = ModelProvider(refiner=refiner)
    builder = StateGraph(
        ChainState, context_schema=Context, input_schema=InputState, output_schema=ChainState
    )
    builder.add_node("answer", sync_and_async_node(fresh_answer, "answer", models=models))
    builder.add_node("finish", sync_and_async_node(finish_budget, "finish"))
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "finish")
    builder.add_edge("finish", END)
    return builder.compile(name=name)


class BestOfNState(ChainState):
    """`ChainState` plus the N fresh answers the knockout chose from."""

    samples: Annotated[list[Answer], operator.add] = Field(default_factory=list)


def build_best_of_n(
    *,
    refiner: BaseChatModel | None = None,
    judges: Sequence[BaseChatModel] | None = None,
    n: int = 10,
    name: str = "best_of_n",
) -> CompiledStateGraph[BestOfNState, Context, InputState, BestOfNState]:
    """N fresh answers, then the judge picks the best by a king-of-the-hill knockout.

    The samples are written concurrently at the refiner's temperature. Each challenger is
    judged against the current champion by the real judge node (both orders for a pairwise
    judge), so the pick needs N-1 comparisons.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    models = ModelProvider(refiner=refiner, judges=judges)

    async def sample(state: BestOfNState, runtime: Runtime[Context]) -> dict[str, Any]:
        updates = await asyncio.gather(
            *(fresh_answer(state, runtime, models=models) for _ in range(n))
        )
        samples = [
            answer.model_copy(update={"iteration": index})
            for index, answer in enumerate(a for u in updates for a in u.get("chain", []))
        ]
        usage: dict[str, Any] = {}
        for update in updates:
            usage = merge_usage(usage, update.get("usage"))
        result: dict[str, Any] = {
            "samples": samples,
            "chain": samples[:1],
            "usage": usage,
            "failures": [f for u in updates for f in u.get("failures", [])],
        }
        if not samples:
            result["stop_reason"] = "model_error"
        return result

    async def next_challenger(state: BestOfNState, runtime: Runtime[Context]) -> dict[str, Any]:
        index = state.iteration + 1
        return {"candidate": state.samples[index], "iteration": index}

    def more_challengers(state: BestOfNState) -> Literal["next", "finish"]:
        return "next" if state.iteration + 1 < len(state.samples) else "finish"

    builder = StateGraph(
        BestOfNState, context_schema=Context, input_schema=InputState, output_schema=BestOfNState
    )
    builder.add_node("sample", sync_and_async_node(sample, "sample"))
    builder.add_node("next_challenger", sync_and_async_node(next_challenger, "next_challenger"))
    builder.add_node("judge", sync_and_async_node(judge, "judge", models=models))
    builder.add_node("finish", sync_and_async_node(finish_budget, "finish"))
    builder.add_edge(START, "sample")
    for node in ("sample", "judge"):
        builder.add_conditional_edges(
            node,
            sync_router(more_challengers, f"after_{node}"),
            {"next": "next_challenger", "finish": "finish"},
        )
    builder.add_edge("next_challenger", "judge")
    builder.add_edge("finish", END)
    return builder.compile(name=name)
