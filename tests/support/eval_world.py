"""Scripted models and a network guard for offline runs of the evals in tests.

`ScriptedWorld` answers the real prompts for a dataset whose right answers are known, so
every metric of an experiment has a known value: it looks the item up by the question in
the prompt, refines with a function you give, and judges by a quality function (higher
wins in either position, equal is a tie). Use it as the `handler` of
`tests.support.chat_models.ScriptedChatModel` or, over HTTP, with
`tests.support.scripts.http_responder` (see `shipped_world_responder`).
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from evals.datasets import SHIPPED, EvalItem, load_dataset
from evals.evaluators import expansion_matches, normalize
from tests.support.scripts import http_responder, judge_json, refine_json, tag

Quality = Callable[[EvalItem, str], float]
"""(item, answer text) -> quality 0-10; the judge's per-criterion score for that answer."""


def acronym_quality(item: EvalItem, text: str) -> float:
    """9 for an answer with the right expansion, 2 otherwise."""
    return 9.0 if item.reference and expansion_matches(text, item.reference, item.aliases) else 2.0


def reference_quality(item: EvalItem, text: str) -> float:
    """9 for an answer that is the reference, 2 otherwise."""
    return 9.0 if item.reference and normalize(text) == normalize(item.reference) else 2.0


def concise_quality(item: EvalItem, text: str) -> float:
    """9 for an answer under 200 characters, 4 for a longer one."""
    return 9.0 if len(text) < 200 else 4.0


class ScriptedWorld:
    """A script for every role of the pipeline, over a known set of items."""

    def __init__(
        self,
        items: list[EvalItem],
        *,
        quality: Quality,
        refine: Callable[[EvalItem, str], str] | None = None,
        fresh: Callable[[EvalItem, int], str] | None = None,
    ) -> None:
        self.items = {item.question: item for item in items}
        self.quality = quality
        self.refine = refine or (lambda item, current: item.reference or current)
        self.fresh = fresh or (lambda item, k: f"fresh answer {k}")
        self.fresh_calls: Counter[str] = Counter()
        self.prompts: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, role: str, prompt: str) -> str:
        with self._lock:
            self.prompts.append((role, prompt))
        item = self.items[tag(prompt, "question")]
        if role == "initial":
            with self._lock:
                self.fresh_calls[item.id] += 1
                k = self.fresh_calls[item.id]
            return self.fresh(item, k)
        if role == "feedback":
            return "Fix what is wrong and cut what is not needed."
        if role == "refine":
            return refine_json(self.refine(item, tag(prompt, "answer")))
        if role == "judge":
            a = self.quality(item, tag(prompt, "answer_A"))
            b = self.quality(item, tag(prompt, "answer_B"))
            return judge_json("A" if a > b else "B" if b > a else "tie", a=a, b=b)
        raise ValueError(f"no scripted reply for role {role}")

    def prompts_for(self, role: str) -> list[str]:
        """Every prompt this script answered for `role`."""
        return [p for r, p in self.prompts if r == role]


class NetworkAttemptError(RuntimeError):
    """Raised by `no_network` for a connection or lookup outside loopback."""


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@contextmanager
def no_network(*, allow_loopback: bool = False) -> Iterator[list[Any]]:
    """Refuse (and record) every connection and DNS lookup; with `allow_loopback`, let
    loopback through (a local fake server). Yields the list of refused attempts."""
    attempts: list[Any] = []
    original = (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo)

    def allowed(address: Any) -> bool:
        host = address[0] if isinstance(address, tuple) else address
        return allow_loopback and host in _LOOPBACK

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX or allowed(address):
            return original[0](self, address)
        attempts.append(("connect", address))
        raise NetworkAttemptError(f"network access in an offline run: connect {address}")

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX or allowed(address):
            return original[1](self, address)
        attempts.append(("connect_ex", address))
        raise NetworkAttemptError(f"network access in an offline run: connect {address}")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if allowed((host,)):
            return original[2](host, *args, **kwargs)
        attempts.append(("getaddrinfo", host))
        raise NetworkAttemptError(f"network access in an offline run: DNS lookup of {host}")

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    try:
        yield attempts
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = original  # type: ignore[method-assign]


def shipped_world() -> ScriptedWorld:
    """A world over the three shipped datasets that refines every item to its reference
    (the right expansion, the concise answer, the truth) and judges by the matching
    quality: what a perfect refiner and judge would do."""
    quality_of: dict[str, Quality] = {}
    items: list[EvalItem] = []
    for name, kind in SHIPPED.items():
        quality = {"acronym": acronym_quality, "verbose": concise_quality}.get(
            kind, reference_quality
        )
        for item in load_dataset(name).items:
            quality_of[item.id] = quality
            items.append(item)
    return ScriptedWorld(items, quality=lambda item, text: quality_of[item.id](item, text))


def shipped_world_responder() -> Any:
    """`shipped_world` for the fake OpenAI server (`python -m tests.support.fake_openai
    --responder tests.support.eval_world:shipped_world_responder`)."""
    return http_responder(shipped_world())
