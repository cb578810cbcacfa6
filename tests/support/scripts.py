"""Scripted model behaviour shared by the in-process fake chat model (tests) and the fake
OpenAI-compatible HTTP server (subprocess tests, benchmarks).

A script is a `Handler`: `(role, prompt) -> reply text | exception`, where the role is read
off the real prompt by a phrase only that prompt file contains.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from tests.support.fake_openai import ChatRequest, Reply

Handler = Callable[[str, str], "str | BaseException | object"]

ROLE_MARKERS = {
    "judge": "evaluating two answers",
    "rate": "rating one answer",
    "refine": "Refine the answer using the feedback",
    "feedback": "Give feedback for improving the answer",
    "initial": "Answer the question below",
    "retry": "could not be used",
}
CRITERIA = ("accuracy", "completeness", "clarity", "conciseness", "relevance")


def role_of(prompt: str) -> str:
    """Which prompt this is, from a phrase only that prompt file contains."""
    for role, marker in ROLE_MARKERS.items():
        if marker in prompt:
            return role
    raise ValueError(f"unknown prompt: {prompt[:200]!r}")


def tag(prompt: str, name: str) -> str:
    """The text of the last <name>...</name> block in a prompt (the instructions above the
    data may mention the tag names too)."""
    start = prompt.rfind(f"<{name}>")
    end = prompt.find(f"</{name}>", start)
    if start == -1 or end == -1:
        raise ValueError(f"no complete <{name}> block in prompt")
    return prompt[start + len(name) + 2 : end]


def judge_json(winner: str, a: float = 7, b: float = 7, why: str = "scripted") -> str:
    """A well-formed pairwise judge reply."""
    return json.dumps(
        {
            "justification": why,
            "scores_a": dict.fromkeys(CRITERIA, a),
            "scores_b": dict.fromkeys(CRITERIA, b),
            "winner": winner,
        }
    )


def refine_json(answer: str, explanation: str = "Made it better.") -> str:
    """A well-formed refine reply."""
    return json.dumps({"explanation": explanation, "answer": answer})


def version(text: str) -> int:
    """N of the first `vN` in a text."""
    match = re.search(r"v(\d+)", text)
    if match is None:
        raise ValueError(f"no version in {text!r}")
    return int(match.group(1))


def versioned_handler(
    *, stop_at: int, judge: Callable[[int, int], str] | None = None
) -> Callable[[str, str], str]:
    """Answers are `v<N>`: refine writes v<N+1>; the judge prefers the higher version while
    it is <= stop_at and the lower one after, so every chain grows to v<stop_at> (counting
    from the input's version) and then stops on a rejection."""

    def default_judge(a: int, b: int) -> str:
        best = max(a, b) if max(a, b) <= stop_at else min(a, b)
        return "A" if a == best else "B"

    pick = judge or default_judge

    def handler(role: str, prompt: str) -> str:
        if role == "initial":
            return "v0 generated"
        if role == "feedback":
            return f"Improve {tag(prompt, 'answer')}."
        if role == "refine":
            return refine_json(f"v{version(tag(prompt, 'answer')) + 1}")
        if role == "judge":
            return judge_json(
                pick(version(tag(prompt, "answer_A")), version(tag(prompt, "answer_B")))
            )
        raise ValueError(f"no scripted reply for role {role}")

    return handler


def http_responder(handler: Callable[[str, str], object]) -> Callable[[ChatRequest], Reply]:
    """Serve a script from the fake OpenAI server: the first user message is the prompt; a
    parse retry (its last message) is role `<role>_retry`."""

    def respond(request: ChatRequest) -> Reply:
        users = request.texts("user")
        prompt = users[0]
        role = role_of(prompt)
        if len(users) > 1 and role_of(users[-1]) == "retry":
            role += "_retry"
        reply = handler(role, prompt)
        if isinstance(reply, Reply):
            return reply
        if isinstance(reply, BaseException):
            return Reply(status=500, error_message=str(reply))
        return Reply(content=str(reply))

    return respond


def versioned_responder(stop_at: int = 3) -> Callable[[ChatRequest], Reply]:
    """The versioned script over HTTP, for the fake server's CLI:
    `--responder tests.support.scripts:versioned_responder`."""
    return http_responder(versioned_handler(stop_at=stop_at))


def one_accepted_step_responder() -> Callable[[ChatRequest], Reply]:
    """Every chain accepts v1 and rejects v2: 2 iterations, 8 calls per item (the curate
    benchmark's script)."""
    return versioned_responder(stop_at=1)
