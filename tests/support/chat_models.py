"""Scripted fake chat models: they see the real prompts and answer per role and call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from tests.support.scripts import (
    judge_json,
    refine_json,
    role_of,
    tag,
    versioned_handler,
)

__all__ = [
    "ScriptedChatModel",
    "judge_json",
    "refine_json",
    "role_of",
    "tag",
    "versioned_handler",
]

Reply = str | BaseException | AIMessage
Handler = Callable[[str, str], Reply]
"""(role, prompt text) -> what the model answers; an exception is raised as a failed call."""


class ScriptedChatModel(BaseChatModel):
    """A chat model whose replies come from `handler(role, prompt)`.

    The last message of the conversation is the prompt; on a parse retry the role is
    `retry` and `history` holds the whole conversation.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    handler: Handler
    model_name: str = "scripted"
    delay: float = 0.0
    report_usage: bool = True
    calls: list[tuple[str, str]] = Field(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        prompt = str(messages[-1].content)
        role = role_of(prompt)
        if role == "retry":
            role = role_of(str(messages[0].content)) + "_retry"
        with self._lock:
            self.calls.append((role, str(messages[0].content)))
        reply = self.handler(role, str(messages[0].content) if role.endswith("_retry") else prompt)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, AIMessage):
            return reply
        usage = (
            {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
            if self.report_usage
            else None
        )
        return AIMessage(content=reply, usage_metadata=usage)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def roles(self) -> list[str]:
        return [role for role, _ in self.calls]
