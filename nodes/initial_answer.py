"""START: a new chain from the input; Ans0 is the given answer, or the refiner writes one."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from nodes.calls import call_text
from nodes.common import call_config, context_of, conversation_block, usage_update
from nodes.context import Context
from nodes.models import ModelProvider
from nodes.state import Answer, ChainState
from prompts import load_prompt, quote_data

INPUT_MODEL = "input"
"""The model name recorded for an answer that came with the data."""

_ACCUMULATED = ("chain", "judgments", "decisions", "failures")


async def initial_answer(
    state: ChainState, runtime: Runtime[Context], *, models: ModelProvider
) -> dict[str, Any]:
    """Start a new chain for the input that began this run.

    This node runs once per input (a run resumed with `None` continues after it), so it
    clears whatever an earlier run on the same thread left: the chain, the judgments, the
    usage, the stop reason. Lists grow through reducers, hence `Overwrite`.
    """
    update = await write_initial_answer(state, context_of(runtime), models=models)
    fresh: dict[str, Any] = {name: Overwrite(update.get(name, [])) for name in _ACCUMULATED}
    return {
        **update,
        **fresh,
        "usage": Overwrite(update.get("usage", {})),
        "iteration": 0,
        "feedback": None,
        "candidate": None,
        "last_rejected": None,
        "stop_reason": update.get("stop_reason"),
    }


async def write_initial_answer(
    state: ChainState, ctx: Context, *, models: ModelProvider
) -> dict[str, Any]:
    """Ans0 as a plain state update: the given answer, or one the refiner writes."""
    models.check(ctx)
    if state.answer and state.answer.strip():
        return {
            "chain": [Answer(text=state.answer, iteration=0, model=INPUT_MODEL, role="initial")]
        }
    refiner = models.get_refiner(ctx)
    prompt = load_prompt("initial_answer").format(
        question=quote_data(state.question), conversation_block=conversation_block(state)
    )
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
