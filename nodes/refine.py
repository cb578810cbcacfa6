"""refine: a new answer that acts on the feedback, with a one-sentence explanation."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from nodes.calls import call_json
from nodes.common import call_config, context_of, conversation_block, usage_update
from nodes.context import Context
from nodes.models import ModelProvider, NamedModel
from nodes.schemas import RefineReply
from nodes.state import Answer, ChainState, Role
from prompts import criteria_list, load_prompt, quote_data


def refiner_for(
    state: ChainState, ctx: Context, models: ModelProvider, role: Role
) -> tuple[NamedModel, Role]:
    """The model that writes this candidate, and the role it is recorded under.

    The alternate refiner writes when asked for (its one more try after a rejection), and,
    with `alternate_trigger="rejection_or_low_confidence"`, also the refinement that
    follows a win the judges were unsure of.
    """
    alternate = models.get_alternate_refiner(ctx)
    if alternate is not None and role == "refiner" and _unsure_last_win(state, ctx):
        return alternate, "alternate_refiner"
    if role == "alternate_refiner":
        if alternate is None:
            raise ValueError("the alternate refiner was asked for but none is configured")
        return alternate, role
    return models.get_refiner(ctx), "refiner"


def _unsure_last_win(state: ChainState, ctx: Context) -> bool:
    if ctx.alternate_trigger != "rejection_or_low_confidence" or not state.decisions:
        return False
    last = state.decisions[-1]
    return (
        last.accepted and last.confidence is not None and last.confidence < ctx.confidence_threshold
    )


async def refine(
    state: ChainState,
    runtime: Runtime[Context],
    *,
    models: ModelProvider,
    role: Role = "refiner",
) -> dict[str, Any]:
    """Write the candidate refinement of the current answer (judged next)."""
    ctx = context_of(runtime)
    model, writer_role = refiner_for(state, ctx, models, role)
    node = "alternate_refine" if role == "alternate_refiner" else "refine"
    prompt = load_prompt("refine").format(
        question=quote_data(state.question),
        answer=quote_data(state.chain[-1].text),
        feedback=quote_data(state.feedback or ""),
        criteria=criteria_list(ctx.criteria),
        conversation_block=conversation_block(state),
    )
    result = await call_json(
        model,
        [HumanMessage(content=prompt)],
        RefineReply,
        ctx=ctx,
        config=call_config(
            state=state,
            run_name=node,
            role=writer_role,
            model=model.name,
            iteration=state.iteration,
        ),
    )
    update: dict[str, Any] = {"usage": usage_update(model.name, node, result.usage)}
    if result.value is None:
        update["failures"] = [
            result.as_failure(stage=node, model=model.name, iteration=state.iteration)
        ]
        update["candidate"] = None
        if node == "refine":  # the alternate's extra try failing leaves the rejection as the end
            update["stop_reason"] = "model_error"
        return update
    update["candidate"] = Answer(
        text=result.value.answer,
        explanation=result.value.explanation,
        feedback=state.feedback,
        model=model.name,
        iteration=state.iteration,
        role=writer_role,
    )
    return update
