"""feedback: the refiner's critique of the current answer on the criteria."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from nodes.calls import call_text
from nodes.common import (
    call_config,
    context_of,
    conversation_block,
    reference_block,
    usage_update,
)
from nodes.context import Context
from nodes.models import ModelProvider
from nodes.state import ChainState
from prompts import criteria_list, load_prompt, quote_data


async def feedback(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> dict[str, Any]:
    """Start iteration i+1 with feedback on Ans_i."""
    ctx = context_of(runtime)
    iteration = state.iteration + 1
    refiner = models.get_refiner(ctx)
    prompt = load_prompt("feedback").format(
        question=quote_data(state.question),
        answer=quote_data(state.chain[-1].text),
        criteria=criteria_list(ctx.criteria),
        reference_block=reference_block(state),
        conversation_block=conversation_block(state),
    )
    result = await call_text(
        refiner,
        [HumanMessage(content=prompt)],
        ctx=ctx,
        config=call_config(
            state=state,
            run_name="feedback",
            role="refiner",
            model=refiner.name,
            iteration=iteration,
        ),
    )
    update: dict[str, Any] = {
        "iteration": iteration,
        "usage": usage_update(refiner.name, "feedback", result.usage),
    }
    if result.value is None:
        update["failures"] = [
            result.as_failure(stage="feedback", model=refiner.name, iteration=iteration)
        ]
        update["stop_reason"] = "model_error"
        return update
    update["feedback"] = result.value
    return update
