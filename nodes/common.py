"""Helpers every node shares: its settings, its trace labels, its usage record."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from nodes.context import Context
from nodes.state import ChainState, TokenUsage, UsageTable
from prompts import load_prompt, quote_data


def context_of(runtime: Runtime[Context] | None) -> Context:
    """The run's settings; the defaults when the caller passed none."""
    ctx = runtime.context if runtime is not None else None
    if ctx is None:
        return Context()
    if isinstance(ctx, dict):
        return Context(**ctx)
    return ctx


def call_config(
    *,
    state: ChainState,
    run_name: str,
    role: str,
    model: str,
    iteration: int,
    **extra: Any,
) -> RunnableConfig:
    """Name, tags and metadata for one model call, so its trace says what it was."""
    metadata: dict[str, Any] = {"iteration": iteration, "role": role, "model": model, **extra}
    if state.id is not None:  # else keep an item_id the caller put in the run's metadata
        metadata["item_id"] = state.id
    tags = [f"role:{role}", f"model:{model}", f"iteration:{iteration}"]
    tags += [f"{key}:{value}" for key, value in extra.items() if isinstance(value, str)]
    return RunnableConfig(run_name=run_name, tags=tags, metadata=metadata)


def usage_update(model: str, node: str, usage: TokenUsage) -> UsageTable:
    """One model's usage in one node, as the `usage` reducer takes it."""
    return {model: {node: usage}}


def conversation_block(state: ChainState) -> str:
    """The earlier turns of a chat row as a prompt section, or nothing for a plain question."""
    if not state.history:
        return ""
    turns = "\n".join(
        f'<turn role="{turn.role}">{quote_data(turn.content)}</turn>' for turn in state.history
    )
    return load_prompt("conversation_block").format(turns=turns)


def reference_block(state: ChainState) -> str:
    """The reference-answer section of a prompt, or nothing when the item has none."""
    if not state.reference:
        return ""
    return load_prompt("reference_block").format(reference=quote_data(state.reference))
