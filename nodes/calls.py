"""Model calls that survive real models: retries, parse-error feedback, usage accounting.

Every node calls models through `call_text` or `call_json`. A call never raises for a
model's fault: after `max_attempts` it returns a `CallResult` with `error` set and the
last raw reply, which the node records as a failure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import BaseModel, ValidationError

from endpoints import count_message_tokens, count_tokens
from nodes.context import Context
from nodes.models import NamedModel
from nodes.parsing import ReplyParseError, parse_reply
from nodes.state import Failure, TokenUsage
from prompts import load_prompt

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")

Method = Literal["prompt", "json_mode", "function_calling", "json_schema"]

# Errors a retry cannot fix: a wrong key, a wrong model name, a request the server refuses.
# Matched on the class names in the error's MRO, so openai's `AuthenticationError`,
# langchain-openai's `OpenAIAuthenticationError`/`OpenAIModelNotFoundError` (and any other
# client's subclasses of those) all count, without importing any client.
_FATAL_ERROR_ENDINGS = (
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "BadRequestError",
)


@dataclass
class CallResult(Generic[V]):
    """What one logical model call produced, over all its attempts."""

    value: V | None
    raw: str | None
    attempts: int
    usage: TokenUsage
    error: str | None = None
    logprobs: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_failure(self, *, stage: str, model: str, iteration: int) -> Failure:
        """The failure record of a call that gave no usable reply."""
        return Failure(
            stage=stage,
            model=model,
            reason=self.error or "no usable reply",
            raw=self.raw,
            iteration=iteration,
        )


def resolve_method(ctx: Context, model: NamedModel) -> Method:
    """The structured-output method for this model (`auto` picks per model type)."""
    if ctx.structured_output != "auto":
        return ctx.structured_output
    return "json_mode" if model.is_openai_compatible else "prompt"


async def call_text(
    model: NamedModel,
    messages: Sequence[BaseMessage],
    *,
    ctx: Context,
    config: RunnableConfig,
    bind: dict[str, Any] | None = None,
    validate: Callable[[str], object] | None = None,
) -> CallResult[str]:
    """A free-text reply; an empty reply, a refusal, or text `validate` rejects (by raising
    `ReplyParseError`) is retried like a parse failure."""

    def parse(message: AIMessage) -> str:
        text = message_text(message).strip()
        refusal = message.additional_kwargs.get("refusal")
        if refusal:
            raise ReplyParseError(f"the model refused: {refusal}")
        if not text:
            raise ReplyParseError("the reply is empty")
        if validate is not None:
            validate(text)
        return text

    runnable: Runnable[Any, Any] = model.model.bind(**bind) if bind else model.model
    return await _attempts(runnable, messages, parse, ctx=ctx, config=config, model=model)


async def call_json(
    model: NamedModel,
    messages: Sequence[BaseMessage],
    schema: type[T],
    *,
    ctx: Context,
    config: RunnableConfig,
    bind: dict[str, Any] | None = None,
) -> CallResult[T]:
    """A reply parsed into `schema`, by the structured-output method the context picks.

    `bind` adds request arguments (e.g. logprobs) for the `prompt` and `json_mode` methods.
    """
    method = resolve_method(ctx, model)
    runnable: Runnable[Any, Any] = model.model.bind(**bind) if bind else model.model
    if method == "json_mode" and model.is_openai_compatible:
        runnable = model.model.bind(response_format={"type": "json_object"}, **(bind or {}))
    elif method in ("function_calling", "json_schema"):
        runnable = model.model.with_structured_output(schema, method=method, include_raw=True)

    def parse(message: AIMessage) -> T:
        for call in message.tool_calls:
            try:
                return schema.model_validate(call["args"])
            except ValidationError:
                continue
        return parse_reply(message_text(message), schema)

    return await _attempts(runnable, messages, parse, ctx=ctx, config=config, model=model)


async def _attempts(
    runnable: Runnable[Any, Any],
    messages: Sequence[BaseMessage],
    parse: Any,
    *,
    ctx: Context,
    config: RunnableConfig,
    model: NamedModel,
) -> CallResult[Any]:
    conversation = list(messages)
    usage = TokenUsage()
    raw: str | None = None
    error = "no attempt made"
    for attempt in range(1, ctx.max_attempts + 1):
        try:
            reply = await runnable.ainvoke(conversation, config=config)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any transport or provider error is recorded, not raised
            error = f"{type(exc).__name__}: {exc}"
            if any(c.__name__.endswith(_FATAL_ERROR_ENDINGS) for c in type(exc).__mro__):
                return CallResult(None, raw, attempt, usage, error=error)
            await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
            continue
        message, parsed = _unpack(reply)
        usage = usage + usage_of(message, conversation, model.name)
        raw = message_text(message) or _tool_args_text(message)
        try:
            value = parsed if parsed is not None else parse(message)
        except ReplyParseError as exc:
            error = f"unparseable reply: {exc}"
            conversation = [*messages, AIMessage(content=raw or ""), _retry_message(str(exc))]
            continue
        return CallResult(value, raw, attempt, usage, logprobs=_logprobs(message))
    return CallResult(None, raw, ctx.max_attempts, usage, error=error)


def _unpack(reply: Any) -> tuple[AIMessage, Any]:
    """`with_structured_output(include_raw=True)` gives a dict; plain models a message."""
    if isinstance(reply, dict) and "raw" in reply:
        return reply["raw"], reply.get("parsed")
    if not isinstance(reply, AIMessage):
        return AIMessage(content=str(reply)), None
    return reply, None


def _retry_message(error: str) -> HumanMessage:
    return HumanMessage(content=load_prompt("retry_parse").format(error=error))


def message_text(message: BaseMessage) -> str:
    """The text of a message whose content may be a string or a list of content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _tool_args_text(message: AIMessage) -> str:
    return "\n".join(json.dumps(call["args"]) for call in message.tool_calls)


def _logprobs(message: AIMessage) -> list[dict[str, Any]] | None:
    logprobs = message.response_metadata.get("logprobs")
    if isinstance(logprobs, dict):
        content = logprobs.get("content")
        return content if isinstance(content, list) else None
    return None


def usage_of(message: AIMessage, prompt: Sequence[BaseMessage], model_name: str) -> TokenUsage:
    """Tokens as the model reported them, or counted with tiktoken when it did not."""
    reported = message.usage_metadata
    if reported and (reported.get("input_tokens") or reported.get("output_tokens")):
        return TokenUsage(
            calls=1,
            input_tokens=int(reported.get("input_tokens", 0)),
            output_tokens=int(reported.get("output_tokens", 0)),
        )
    text = message_text(message) or _tool_args_text(message)
    return TokenUsage(
        calls=1,
        input_tokens=count_message_tokens(list(prompt)),
        output_tokens=count_tokens(text, model_name),
        estimated=True,
    )
