"""Refine-n-Judge as a LangGraph state machine (paper section 3.1, appendix C).

    START -> initial_answer -> feedback -> refine -> judge --accepted--> feedback ...
                                                       |--rejected--> alternate_refine -> judge
                                                       '--stop------> finish -> END

`graph` is the compiled graph the server serves and `from graph import graph` gives;
`build_graph` makes one with your own chat model objects; `make_builder` returns the
uncompiled `StateGraph` for tests and for composing into larger graphs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.sync_bridge import sync_and_async_node, sync_router
from nodes.context import Context
from nodes.feedback import feedback
from nodes.initial_answer import initial_answer
from nodes.judge import judge
from nodes.models import ModelProvider
from nodes.refine import refine
from nodes.route import (
    after_feedback,
    after_initial_answer,
    after_judge,
    after_refine,
    finish,
    out_of_steps,
)
from nodes.state import ChainState, InputState, LoopState

GRAPH_NAME = "refine_n_judge"


def refinement_prelude(
    models: ModelProvider,
) -> StateGraph[LoopState, Context, InputState, ChainState]:
    """The start every refining graph shares: START -> initial_answer -> feedback -> refine,
    with a model failure on the way routed to a `finish` node the caller adds (as it adds
    the edges out of `refine`), and a spent step budget to `out_of_steps`."""
    builder = StateGraph(
        LoopState, context_schema=Context, input_schema=InputState, output_schema=ChainState
    )
    builder.add_node(
        "initial_answer", sync_and_async_node(initial_answer, "initial_answer", models=models)
    )
    builder.add_node("feedback", sync_and_async_node(feedback, "feedback", models=models))
    builder.add_node("refine", sync_and_async_node(refine, "refine", models=models, role="refiner"))
    builder.add_node("out_of_steps", sync_and_async_node(out_of_steps, "out_of_steps"))
    builder.add_edge(START, "initial_answer")
    builder.add_conditional_edges(
        "initial_answer",
        sync_router(after_initial_answer, "after_initial_answer"),
        {"next": "feedback", "finish": "finish", "out_of_steps": "out_of_steps"},
    )
    builder.add_conditional_edges(
        "feedback",
        sync_router(after_feedback, "after_feedback"),
        {"next": "refine", "finish": "finish", "out_of_steps": "out_of_steps"},
    )
    builder.add_edge("out_of_steps", END)
    return builder


def make_builder(
    *,
    refiner: BaseChatModel | None = None,
    judges: Sequence[BaseChatModel] | None = None,
    alternate_refiner: BaseChatModel | None = None,
    rate_limiter: BaseRateLimiter | None = None,
) -> StateGraph[LoopState, Context, InputState, ChainState]:
    """The uncompiled graph; model objects given here override the context's model names.

    `rate_limiter` (e.g. LangChain's `InMemoryRateLimiter`) paces every model built from a
    name in the context; model objects you pass carry their own.
    """
    models = ModelProvider(
        refiner=refiner,
        judges=judges,
        alternate_refiner=alternate_refiner,
        rate_limiter=rate_limiter,
    )
    builder = refinement_prelude(models)
    builder.add_node(
        "alternate_refine",
        sync_and_async_node(refine, "alternate_refine", models=models, role="alternate_refiner"),
    )
    builder.add_node("judge", sync_and_async_node(judge, "judge", models=models))
    builder.add_node("finish", sync_and_async_node(finish, "finish"))
    for name in ("refine", "alternate_refine"):
        builder.add_conditional_edges(
            name,
            sync_router(after_refine, f"after_{name}"),
            {"judge": "judge", "finish": "finish", "out_of_steps": "out_of_steps"},
        )
    builder.add_conditional_edges(
        "judge",
        sync_router(after_judge, "after_judge", models=models),
        {
            "feedback": "feedback",
            "alternate_refine": "alternate_refine",
            "finish": "finish",
            "out_of_steps": "out_of_steps",
        },
    )
    builder.add_edge("finish", END)
    return builder


class RefineNJudgeGraph(CompiledStateGraph[LoopState, Context, InputState, ChainState]):
    """The compiled graph, where each input starts a chain from that input alone.

    LangGraph merges an input into the thread's state, so an optional field a second input
    leaves out would keep the first input's value. Every run goes through `stream` or
    `astream` (`invoke`, `ainvoke`, `astream_events` and the server included), so filling
    the left-out fields there gives the `initial_answer` node the whole new input; it
    resets the rest of the chain. `None` (resume) and `Command`s pass through unchanged.
    """

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return super().stream(whole_input(input), config, **kwargs)

    def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return super().astream(whole_input(input), config, **kwargs)


def whole_input(input: Any) -> Any:
    """An input with every `InputState` field present (left-out optional ones as None)."""
    if isinstance(input, InputState):
        return input.model_dump()
    if isinstance(input, dict) and "question" in input:
        return {**dict.fromkeys(InputState.model_fields), **input}
    return input


def build_graph(
    *,
    refiner: BaseChatModel | None = None,
    judges: Sequence[BaseChatModel] | None = None,
    alternate_refiner: BaseChatModel | None = None,
    rate_limiter: BaseRateLimiter | None = None,
    checkpointer: BaseCheckpointSaver | None = None,
    name: str = GRAPH_NAME,
) -> RefineNJudgeGraph:
    """A compiled Refine-n-Judge graph, optionally with your own chat model objects."""
    builder = make_builder(
        refiner=refiner,
        judges=judges,
        alternate_refiner=alternate_refiner,
        rate_limiter=rate_limiter,
    )
    compiled = builder.compile(checkpointer=checkpointer, name=name)
    # The same construction `Pregel.copy` uses, into the subclass.
    attrs = {key: value for key, value in vars(compiled).items() if key != "__orig_class__"}
    return RefineNJudgeGraph(**attrs)


graph = build_graph()
