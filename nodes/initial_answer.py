"""START: take the initial answer Ans0 from the input, or have the refiner write one."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Answer, ChainState
from nodes.calls import call_text
from nodes.common import call_config, context_of, usage_update
from nodes.models import ModelProvider
from prompts import load_prompt, quote_data

INPUT_MODEL = "input"
"""The model name recorded for an answer that came with the data."""


async def initial_answer(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> dict[str, Any]:
    """Ans0: the given answer, or a generated one when the input has none."""
    if state.chain:  # resumed from a checkpoint: Ans0 is already there
        return {}
    ctx = context_of(runtime)
    models.check(ctx)
    if state.answer and state.answer.strip():
        return {
            "chain": [Answer(text=state.answer, iteration=0, model=INPUT_MODEL, role="initial")]
        }
    refiner = models.get_refiner(ctx)
    prompt = load_prompt("initial_answer").format(question=quote_data(state.question))
    result = await call_text(
        refiner,
        [HumanMessage(content=prompt)],
        ctx=ctx,
        config=call_config(
            state=state, run_name="initial_answer", role="refiner", model=refiner.name, iteration=0
        ),
    )
    update: dict[str, Any] = {"usage": usage_update(refiner.name, "initial_answer", result.usage)}
    if result.value is None:
        update["failures"] = [
            result.as_failure(stage="initial_answer", model=refiner.name, iteration=0)
        ]
        update["stop_reason"] = "model_error"
        return update
    update["chain"] = [Answer(text=result.value, iteration=0, model=refiner.name, role="initial")]
    return update
