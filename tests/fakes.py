"""Scripted fake chat models: they see the real prompts and answer per role and call."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

Reply = str | BaseException | AIMessage
Handler = Callable[[str, str], Reply]
"""(role, prompt text) -> what the model answers; an exception is raised as a failed call."""

ROLE_MARKERS = {
    "judge": "evaluating two answers",
    "refine": "Refine the answer using the feedback",
    "feedback": "Give feedback for improving the answer",
    "initial": "Answer the question below",
    "retry": "could not be used",
}


def role_of(prompt: str) -> str:
    """Which prompt this is, from a phrase only that prompt file contains."""
    for role, marker in ROLE_MARKERS.items():
        if marker in prompt:
            return role
    raise AssertionError(f"unknown prompt: {prompt[:200]!r}")


def tag(prompt: str, name: str) -> str:
    """The text of the last <name>...</name> block in a prompt (the instructions above the
    data may mention the tag names too)."""
    start = prompt.rfind(f"<{name}>")
    end = prompt.find(f"</{name}>", start)
    assert start != -1, f"no <{name}> block in prompt"
    assert end != -1, f"<{name}> is never closed"
    return prompt[start + len(name) + 2 : end]


def judge_json(winner: str, a: float = 7, b: float = 7, why: str = "scripted") -> str:
    """A well-formed pairwise judge reply."""
    crit = ["accuracy", "completeness", "clarity", "conciseness", "relevance"]
    return json.dumps(
        {
            "justification": why,
            "scores_a": {c: a for c in crit},
            "scores_b": {c: b for c in crit},
            "winner": winner,
        }
    )


def refine_json(answer: str, explanation: str = "Made it better.") -> str:
    return json.dumps({"explanation": explanation, "answer": answer})


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


def versioned_handler(*, stop_at: int, judge: Callable[[int, int], str] | None = None) -> Handler:
    """Answers are `v<N>`: refine writes v<N+1>; the judge prefers the higher version while
    it is <= stop_at, the lower one after (so the chain grows to v<stop_at>)."""

    def version(text: str) -> int:
        match = re.search(r"v(\d+)", text)
        assert match, text
        return int(match.group(1))

    def default_judge(a: int, b: int) -> str:
        best = max(a, b) if max(a, b) <= stop_at else min(a, b)
        return "A" if a == best else "B"

    pick = judge or default_judge

    def handler(role: str, prompt: str) -> Reply:
        if role == "initial":
            return "v0 generated"
        if role == "feedback":
            return f"Improve {tag(prompt, 'answer')}."
        if role == "refine":
            return refine_json(f"v{version(tag(prompt, 'answer')) + 1}")
        if role == "judge":
            winner = pick(version(tag(prompt, "answer_A")), version(tag(prompt, "answer_B")))
            return judge_json(winner)
        raise AssertionError(role)

    return handler
