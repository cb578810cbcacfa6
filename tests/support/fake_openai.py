"""A local fake OpenAI-compatible chat completions server for tests and benchmarks.

Standard library only. It answers ``POST /v1/chat/completions``, ``GET /v1/models`` and
``GET /health`` the way OpenAI, vLLM and llama.cpp's server do, closely enough that
``langchain_openai.ChatOpenAI(base_url=server.base_url, api_key="sk-fake")`` and the bare
``openai`` clients work in every mode: plain text, tool calls (``with_structured_output``'s
function calling), json mode, json_schema, server-sent-event streaming, logprobs, usage.

What the "model" writes is decided by a *responder*, a function of the request::

    def responder(request: ChatRequest) -> Reply:
        if "JUDGE" in request.system:
            return Reply(content='{"winner": "B"}')
        return Reply(content=f"better: {request.last_user}")

    with FakeOpenAIServer(responder, latency=0.01) as server:
        llm = ChatOpenAI(model="fake", base_url=server.base_url, api_key="sk-fake")

The server shapes ``Reply.content`` to the request: a tool call when the request forces a
tool, message content for json modes, SSE chunks when ``stream`` is true. ``FaultPlan``
injects HTTP errors, malformed bodies, slow and empty replies. Run it in a subprocess (its
working directory or ``PYTHONPATH`` the repository root, where ``tests`` is a package) with::

    python -m tests.support.fake_openai --responder echo --port-file PORT \
        [--latency 0.02] [--faults "429:first=2,500:every=5"]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import math
import os
import random
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BUILTIN_RESPONDERS",
    "ChatRequest",
    "FakeOpenAIServer",
    "FaultPlan",
    "LogprobEntry",
    "Reply",
    "Responder",
    "echo",
    "json_echo",
    "load_responder",
    "main",
    "route_by_marker",
    "sequence",
    "with_faults",
]

DEFAULT_MODEL = "fake-model"
SYSTEM_FINGERPRINT = "fp_fake_openai"

LogprobEntry = tuple[str, float, list[tuple[str, float]]]
"""One generated token: ``(token, logprob, [(alternative_token, logprob), ...])``."""


# --------------------------------------------------------------------------------------
# Request and reply
# --------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (str, None or list of parts) into text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content]
        return "".join(str(p) for p in parts)
    return str(content)


@dataclass
class ChatRequest:
    """A view of one chat completions request as the responder sees it.

    ``messages`` holds ``{"role", "content"}`` dicts with the content flattened to text;
    ``raw`` is the full decoded JSON body; ``index`` is the server's 1-based request
    counter (order of arrival).
    """

    messages: list[dict[str, str]]
    model: str
    raw: dict[str, Any]
    index: int = 0
    temperature: float | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = None
    max_tokens: int | None = None
    n: int = 1
    stop: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(
        cls, body: dict[str, Any], index: int = 0, headers: Mapping[str, str] | None = None
    ) -> ChatRequest:
        """Build a request view from a decoded ``/chat/completions`` JSON body."""
        messages = [
            {"role": str(m.get("role", "")), "content": _content_text(m.get("content"))}
            for m in body.get("messages", [])
            if isinstance(m, dict)
        ]
        stop = body.get("stop")
        return cls(
            messages=messages,
            model=str(body.get("model") or DEFAULT_MODEL),
            raw=body,
            index=index,
            temperature=body.get("temperature"),
            tools=body.get("tools") or None,
            tool_choice=body.get("tool_choice"),
            response_format=body.get("response_format"),
            stream=bool(body.get("stream")),
            logprobs=bool(body.get("logprobs")),
            top_logprobs=body.get("top_logprobs"),
            max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
            n=int(body.get("n") or 1),
            stop=[stop] if isinstance(stop, str) else list(stop or []),
            headers={k.lower(): v for k, v in (headers or {}).items()},
        )

    def texts(self, role: str) -> list[str]:
        """Contents of all messages with this role, in order."""
        return [m["content"] for m in self.messages if m["role"] == role]

    @property
    def system(self) -> str:
        """All system (and developer) message text, joined by newlines."""
        return "\n".join(self.texts("system") + self.texts("developer"))

    @property
    def last_user(self) -> str:
        """The text of the last user message ("" if none)."""
        users = self.texts("user")
        return users[-1] if users else ""

    @property
    def text(self) -> str:
        """All message text concatenated (what usage.prompt_tokens is estimated from)."""
        return "".join(m["content"] for m in self.messages)

    @property
    def tool_names(self) -> list[str]:
        """Names of the function tools offered in the request."""
        return [_tool_name(t) for t in self.tools or [] if _tool_name(t)]

    @property
    def stream_usage(self) -> bool:
        """Whether ``stream_options.include_usage`` asks for a final usage chunk."""
        options = self.raw.get("stream_options") or {}
        return bool(isinstance(options, dict) and options.get("include_usage"))

    @property
    def forced_tool(self) -> str | None:
        """The tool a well-behaved model must call for this request, if any."""
        return _forced_tool_name(self, Reply())

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the reply must satisfy: the forced tool's parameters or the
        ``response_format`` json_schema; ``None`` when the request has neither."""
        name = self.forced_tool
        if name is not None:
            for tool in self.tools or []:
                if _tool_name(tool) == name:
                    return tool.get("function", {}).get("parameters")
        rf = self.response_format or {}
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema")
        return None

    @property
    def wants_json(self) -> bool:
        """True when the request expects JSON (a forced tool call or a JSON response format)."""
        rf_type = (self.response_format or {}).get("type")
        return self.forced_tool is not None or rf_type in ("json_object", "json_schema")


@dataclass
class Reply:
    """What the fake model answers.

    ``content`` is the text the model writes (tool-call arguments when the request forces a
    tool). ``status`` >= 400 returns an OpenAI-shaped error with ``error_message`` (429 and
    503 carry ``Retry-After``/``retry-after-ms`` headers of ``retry_after`` seconds).
    ``delay`` overrides the server latency. ``logprobs`` are returned (in OpenAI's format) when
    the request asks for them. ``raw_body`` is sent verbatim with ``status``.
    ``tool_name``/``as_tool_call`` override the server's choice between a tool call and text.
    """

    content: str = ""
    status: int = 200
    error_message: str | None = None
    delay: float | None = None
    logprobs: list[LogprobEntry] | None = None
    finish_reason: str | None = None
    raw_body: str | None = None
    retry_after: float | None = None
    tool_name: str | None = None
    as_tool_call: bool | None = None


Responder = Callable[[ChatRequest], Reply]
"""Decides the reply to a request. May also return a ``str`` (content) or a ``dict``
(JSON-encoded into content)."""


def _coerce_reply(value: Reply | str | Mapping[str, Any] | Sequence[Any]) -> Reply:
    """Accept the shortcut return types a responder may use."""
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(content=value)
    if isinstance(value, Mapping | list):
        return Reply(content=json.dumps(value))
    raise TypeError(f"responder must return Reply, str or dict, got {type(value).__name__}")


# --------------------------------------------------------------------------------------
# Built-in responders and combinators
# --------------------------------------------------------------------------------------


def echo(request: ChatRequest) -> Reply:
    """Answer with the last user message, verbatim."""
    return Reply(content=request.last_user)


def json_echo(request: ChatRequest) -> Reply:
    """Answer ``{"answer": <last user message>}`` as JSON text."""
    return Reply(content=json.dumps({"answer": request.last_user}))


BUILTIN_RESPONDERS: dict[str, Responder] = {"echo": echo, "json_echo": json_echo}


def sequence(*replies: Reply | str, cycle: bool = False) -> Responder:
    """A responder that returns the given replies in order (thread-safe).

    After the last one it repeats the last reply, or starts over when ``cycle`` is true.
    """
    if not replies:
        raise ValueError("sequence() needs at least one reply")
    items = [_coerce_reply(r) for r in replies]
    lock = threading.Lock()
    position = [0]

    def respond(_request: ChatRequest) -> Reply:
        with lock:
            i = position[0]
            position[0] += 1
        return items[i % len(items)] if cycle else items[min(i, len(items) - 1)]

    return respond


def route_by_marker(
    routes: Mapping[str, Responder | Reply | str], default: Responder | Reply | str = echo
) -> Responder:
    """Dispatch on the first marker (substring) found in the system prompt.

    Each route is a responder, a fixed ``Reply`` or a fixed content string.
    """

    def as_responder(target: Responder | Reply | str) -> Responder:
        if callable(target):
            return target
        reply = _coerce_reply(target)
        return lambda _request: reply

    table = [(marker, as_responder(target)) for marker, target in routes.items()]
    fallback = as_responder(default)

    def respond(request: ChatRequest) -> Reply:
        system = request.system
        for marker, responder in table:
            if marker in system:
                return responder(request)
        return fallback(request)

    return respond


# --------------------------------------------------------------------------------------
# Fault injection
# --------------------------------------------------------------------------------------

_ERROR_SHAPES: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", None, "Request timed out."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded."),
}


@dataclass
class FaultPlan:
    """When and how to fail requests, wrapping any responder.

    ``kind`` is an HTTP status (``"429"``, ``"500"``, ``"503"``, any other code) or one of
    ``"malformed"`` (a body that is not valid JSON / SSE), ``"slow"`` (the real reply after
    ``slow_seconds``, beyond a client timeout) and ``"empty"`` (the real reply with empty
    content). A call fails when it is among the plan's first ``first_n`` calls, or every
    ``every_k``-th call, or with ``probability`` from an RNG seeded with ``seed``.
    ``injected`` lists the (1-based) call numbers this plan failed.
    """

    kind: str = "500"
    first_n: int = 0
    every_k: int = 0
    probability: float = 0.0
    seed: int = 0
    slow_seconds: float = 30.0
    retry_after: float = 0.01
    injected: list[int] = field(default_factory=list)
    _calls: int = field(default=0, repr=False)
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.kind = str(self.kind).lower()
        if not (self.kind.isdigit() or self.kind in ("malformed", "slow", "empty")):
            raise ValueError(f"unknown fault kind {self.kind!r}")
        self._rng.seed(self.seed)

    @classmethod
    def parse(cls, spec: str) -> list[FaultPlan]:
        """Parse ``"KIND[:first=N][:every=K][:p=P][:seed=S][:slow=SEC]"``, comma-separated.

        Example: ``"429:first=2,malformed:p=0.1:seed=7"``.
        """
        keys = {
            "first": ("first_n", int),
            "every": ("every_k", int),
            "p": ("probability", float),
            "seed": ("seed", int),
            "slow": ("slow_seconds", float),
            "retry_after": ("retry_after", float),
        }
        plans = []
        for item in filter(None, (s.strip() for s in spec.split(","))):
            kind, *options = item.split(":")
            kwargs: dict[str, Any] = {}
            for option in options:
                key, _, value = option.partition("=")
                if key not in keys:
                    raise ValueError(f"unknown fault option {key!r} in {item!r}")
                name, convert = keys[key]
                kwargs[name] = convert(value)
            plans.append(cls(kind=kind, **kwargs))
        return plans

    def should_fail(self) -> bool:
        """Count one call and decide whether it fails (thread-safe)."""
        with self._lock:
            self._calls += 1
            n = self._calls
            draw = self._rng.random() if self.probability > 0 else 1.0
            fail = (
                n <= self.first_n
                or (self.every_k > 0 and n % self.every_k == 0)
                or draw < self.probability
            )
            if fail:
                self.injected.append(n)
            return fail

    def fault_reply(self, request: ChatRequest, responder: Responder) -> Reply:
        """The faulty reply for this request (calls ``responder`` for slow/empty kinds)."""
        if self.kind == "malformed":
            body = (
                'data: {"id": "chatcmpl-broken", "choices": [\n\n'
                if request.stream
                else ('{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{')
            )
            return Reply(raw_body=body)
        if self.kind in ("slow", "empty"):
            reply = _coerce_reply(responder(request))
            if self.kind == "slow":
                return replace(reply, delay=self.slow_seconds)
            return replace(reply, content="", logprobs=None)
        return Reply(status=int(self.kind), retry_after=self.retry_after)

    def wrap(self, responder: Responder) -> Responder:
        """A responder that fails per this plan and otherwise delegates to ``responder``."""

        def respond(request: ChatRequest) -> Reply:
            if self.should_fail():
                return self.fault_reply(request, responder)
            return _coerce_reply(responder(request))

        return respond


def with_faults(responder: Responder, *plans: FaultPlan) -> Responder:
    """Wrap ``responder`` in each plan in turn (the last plan is checked first)."""
    for plan in plans:
        responder = plan.wrap(responder)
    return responder


# --------------------------------------------------------------------------------------
# Formatting replies the way a real server does
# --------------------------------------------------------------------------------------


def _tool_name(tool: Mapping[str, Any]) -> str:
    """The function name of a tool definition ("" for non-function tools)."""
    function = tool.get("function")
    return str(function.get("name", "")) if isinstance(function, dict) else ""


def _forced_tool_name(request: ChatRequest, reply: Reply) -> str | None:
    """Which tool the reply is a call to, or None for a plain message."""
    names = request.tool_names
    if not names or reply.as_tool_call is False:
        return None
    if reply.tool_name:
        return reply.tool_name
    choice = request.tool_choice
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        return named or (names[0] if len(names) == 1 else None)
    if choice == "none":
        return None
    if choice == "required" or reply.as_tool_call or len(names) == 1:
        return names[0]
    return None


def _random_id(prefix: str, length: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:length]


def _apply_stop(content: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``content`` at the first stop sequence, as real servers do."""
    cuts = [content.find(s) for s in stop if s and s in content]
    if not cuts:
        return content, False
    return content[: min(cuts)], True


def _split_text(text: str, max_chars: int = 12) -> list[str]:
    """Split text into token-like pieces (whitespace-led words, at most ``max_chars``)."""
    pieces: list[str] = []
    for word in re.findall(r"\s*\S+|\s+", text):
        pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    return pieces


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def _logprob_item(token: str, logprob: float, top: Sequence[tuple[str, float]]) -> dict:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": _token_bytes(token),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": _token_bytes(t)} for t, lp in top],
    }


def _logprob_entries(request: ChatRequest, reply: Reply, text: str) -> list[dict] | None:
    """OpenAI ``logprobs.content`` items, or None when the request did not ask for them.

    Without ``Reply.logprobs`` every piece of ``text`` gets logprob -0.01 and itself as the
    only alternative.
    """
    if not request.logprobs:
        return None
    entries = reply.logprobs
    if entries is None:
        entries = [(piece, -0.01, [(piece, -0.01)]) for piece in _split_text(text)]
    limit = request.top_logprobs if request.top_logprobs is not None else 0
    return [_logprob_item(tok, lp, list(top)[:limit]) for tok, lp, top in entries]


def _usage(request: ChatRequest, completion_text: str) -> dict[str, Any]:
    prompt_tokens = len(request.text) // 4
    completion_tokens = len(completion_text) // 4
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


@dataclass
class _Shaped:
    """A reply resolved against its request: text or tool call, finish reason, logprobs."""

    text: str
    tool_name: str | None
    tool_call_id: str
    finish_reason: str
    logprobs: list[dict] | None


def _shape(request: ChatRequest, reply: Reply) -> _Shaped:
    tool = _forced_tool_name(request, reply)
    text, stopped = (reply.content, False) if tool else _apply_stop(reply.content, request.stop)
    default_finish = "tool_calls" if tool else "stop"
    return _Shaped(
        text=text,
        tool_name=tool,
        tool_call_id=_random_id("call_"),
        finish_reason=reply.finish_reason or ("stop" if stopped else default_finish),
        logprobs=_logprob_entries(request, reply, text),
    )


def _message(shaped: _Shaped) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": shaped.text,
        "refusal": None,
        "annotations": [],
    }
    if shaped.tool_name is not None:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": shaped.tool_call_id,
                "type": "function",
                "function": {"name": shaped.tool_name, "arguments": shaped.text},
            }
        ]
    return message


def _envelope(obj: str, completion_id: str, created: int, model: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": obj,
        "created": created,
        "model": model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "service_tier": "default",
    }


def build_completion(request: ChatRequest, reply: Reply) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` body for ``reply`` (``request.n`` choices)."""
    shaped = [_shape(request, reply) for _ in range(max(1, request.n))]
    body = _envelope(
        "chat.completion", _random_id("chatcmpl-", 29), int(time.time()), request.model
    )
    body["choices"] = [
        {
            "index": i,
            "message": _message(s),
            "logprobs": None if s.logprobs is None else {"content": s.logprobs, "refusal": None},
            "finish_reason": s.finish_reason,
        }
        for i, s in enumerate(shaped)
    ]
    body["usage"] = _usage(request, "".join(s.text for s in shaped))
    return body


def _stream_pieces(shaped: _Shaped) -> list[tuple[str, list[dict] | None]]:
    """Content pieces for the SSE deltas, each with the logprob items it carries."""
    if shaped.tool_name is not None:
        text = shaped.text
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
    elif shaped.logprobs and "".join(e["token"] for e in shaped.logprobs) == shaped.text:
        return [(e["token"], [e]) for e in shaped.logprobs]
    else:
        pieces = _split_text(shaped.text)
    if shaped.logprobs is None:
        return [(p, None) for p in pieces]
    if not pieces:
        return [("", shaped.logprobs)] if shaped.logprobs else []
    k, items = len(pieces), shaped.logprobs
    return [
        (p, items[i * len(items) // k : (i + 1) * len(items) // k]) for i, p in enumerate(pieces)
    ]


def _chunk_choice(
    index: int,
    delta: dict,
    logprobs: list[dict] | None,
    finish: str | None,
) -> dict[str, Any]:
    return {
        "index": index,
        "delta": delta,
        "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
        "finish_reason": finish,
    }


def _choice_deltas(index: int, shaped: _Shaped) -> Iterator[dict[str, Any]]:
    """The ``choices[0]`` objects of all chunks for one choice, in order."""
    first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
    if shaped.tool_name is not None:
        first["content"] = None
        first["tool_calls"] = [
            {
                "index": 0,
                "id": shaped.tool_call_id,
                "type": "function",
                "function": {"name": shaped.tool_name, "arguments": ""},
            }
        ]
    yield _chunk_choice(index, first, None, None)
    for piece, logprobs in _stream_pieces(shaped):
        if shaped.tool_name is not None:
            delta: dict[str, Any] = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
        else:
            delta = {"content": piece}
        yield _chunk_choice(index, delta, logprobs, None)
    yield _chunk_choice(index, {}, None, shaped.finish_reason)


def build_stream_chunks(request: ChatRequest, reply: Reply) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a streamed reply, usage chunk last if asked."""
    base = _envelope(
        "chat.completion.chunk", _random_id("chatcmpl-", 29), int(time.time()), request.model
    )
    if request.stream_usage:
        base["usage"] = None
    texts = []
    for index in range(max(1, request.n)):
        shaped = _shape(request, reply)
        texts.append(shaped.text)
        for choice in _choice_deltas(index, shaped):
            yield {**base, "choices": [choice]}
    if request.stream_usage:
        yield {**base, "choices": [], "usage": _usage(request, "".join(texts))}


def error_body(status: int, message: str | None = None, code: str | None = None) -> dict:
    """An OpenAI-shaped error body: ``{"error": {message, type, param, code}}``."""
    err_type, default_code, default_message = _ERROR_SHAPES.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}"),
    )
    return {
        "error": {
            "message": message or default_message,
            "type": err_type,
            "param": None,
            "code": code or default_code,
        }
    }


# --------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server that tracks open connections so stop() can close them."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: FakeOpenAIServer) -> None:
        self.owner = owner
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (socket.getfqdn can be slow)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.open_connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the owning FakeOpenAIServer."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr logging."""

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        """Send a complete JSON response with Content-Length (keeps the connection alive)."""
        data = json.dumps(body).encode("utf-8")
        self.send_raw(status, data, "application/json", headers)

    def send_raw(
        self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send ``data`` verbatim with the given status and content type."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", _random_id("req_"))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def send_not_found(self) -> None:
        message = f"Invalid URL ({self.command} {self._path()})"
        self.send_json(404, error_body(404, message, code="unknown_url"))

    def do_GET(self) -> None:
        path = self._path()
        if path in ("/health", "/v1/health"):
            self.send_json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            self.send_json(200, self.server.owner.models_body())
        elif path in ("/v1/chat/completions", "/chat/completions"):
            self.send_json(405, error_body(405, "Method not allowed; use POST."))
        else:
            self.send_not_found()

    def do_POST(self) -> None:
        raw = self._read_body()
        if self._path() not in ("/v1/chat/completions", "/chat/completions"):
            self.send_not_found()
            return
        try:
            self.server.owner.handle_chat(self, raw)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def write_chunk(self, data: bytes) -> None:
        """Write one HTTP/1.1 chunk (chunked transfer encoding)."""
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def send_stream(self, events: Iterator[dict[str, Any]]) -> None:
        """Send server-sent events, one chunk each, then ``data: [DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", _random_id("req_"))
        self.end_headers()
        for event in events:
            self.write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self.write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")


def _retry_headers(retry_after: float) -> dict[str, str]:
    """``retry-after-ms`` (what the openai client prefers) and a whole-second Retry-After."""
    return {
        "retry-after-ms": str(max(0, round(retry_after * 1000))),
        "Retry-After": str(max(0, math.ceil(retry_after))),
    }


class FakeOpenAIServer:
    """A fake OpenAI-compatible server on 127.0.0.1, in background threads.

    Use as a context manager (or ``start()``/``stop()``). ``base_url`` is what
    ``ChatOpenAI(base_url=...)`` takes; ``requests`` lists every chat request received;
    ``errors`` lists exceptions raised by the responder (answered as HTTP 500).
    ``latency`` seconds delay every reply unless ``Reply.delay`` says otherwise.
    """

    def __init__(
        self,
        responder: Responder = echo,
        latency: float = 0.0,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = DEFAULT_MODEL,
    ) -> None:
        self.responder = responder
        self.latency = latency
        self.model = model
        self._address = (host, port)
        self._lock = threading.Lock()
        self._requests: list[ChatRequest] = []
        self._counter = 0
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind (port 0 picks a free port) and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-openai-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, abort pending delays and close open connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_all_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # properties -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after start())."""
        if self._httpd is None:
            raise RuntimeError("server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://{self._address[0]}:{self.port}/v1"

    @property
    def requests(self) -> list[ChatRequest]:
        """A snapshot of the chat requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by the responder so far."""
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """Forget recorded requests and errors (the request counter keeps counting)."""
        with self._lock:
            self._requests.clear()
            self._errors.clear()

    def models_body(self) -> dict[str, Any]:
        """The ``GET /v1/models`` body."""
        return {
            "object": "list",
            "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}],
        }

    # request handling -----------------------------------------------------------------

    def _record(self, body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
        with self._lock:
            self._counter += 1
            request = ChatRequest.from_body(body, index=self._counter, headers=headers)
            self._requests.append(request)
        return request

    def _decide(self, request: ChatRequest) -> Reply:
        try:
            return _coerce_reply(self.responder(request))
        except Exception as exc:
            with self._lock:
                self._errors.append(exc)
            traceback.print_exc(file=sys.stderr)
            return Reply(status=500, error_message=f"responder raised {exc!r}")

    def handle_chat(self, handler: _Handler, raw: bytes) -> None:
        """Answer one ``POST /chat/completions`` on ``handler``."""
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            handler.send_json(400, error_body(400, f"Invalid JSON body: {exc}"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            handler.send_json(400, error_body(400, "'messages' is a required property"))
            return
        request = self._record(body, dict(handler.headers.items()))
        reply = self._decide(request)
        delay = self.latency if reply.delay is None else reply.delay
        if delay > 0 and self._stopping.wait(delay):
            handler.close_connection = True
            return
        self._send_reply(handler, request, reply)

    def _send_reply(self, handler: _Handler, request: ChatRequest, reply: Reply) -> None:
        if reply.raw_body is not None:
            content_type = "text/event-stream" if request.stream else "application/json"
            handler.send_raw(reply.status, reply.raw_body.encode(), content_type)
        elif reply.status >= 400:
            headers = {}
            if reply.status in (429, 503) or reply.retry_after is not None:
                headers = _retry_headers(0.01 if reply.retry_after is None else reply.retry_after)
            handler.send_json(reply.status, error_body(reply.status, reply.error_message), headers)
        elif request.stream:
            handler.send_stream(build_stream_chunks(request, reply))
        else:
            handler.send_json(reply.status, build_completion(request, reply))


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _is_factory(obj: Any) -> bool:
    """True for classes and callables that take no required positional argument."""
    if isinstance(obj, type):
        return True
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return not any(
        p.kind in positional and p.default is inspect.Parameter.empty
        for p in signature.parameters.values()
    )


def load_responder(spec: str) -> Responder:
    """Resolve ``"echo"``, ``"json_echo"`` or ``"package.module:attr"``.

    ``attr`` is a responder, or a factory (no-argument callable or class) returning one.
    """
    if spec in BUILTIN_RESPONDERS:
        return BUILTIN_RESPONDERS[spec]
    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ValueError(f"responder must be 'echo', 'json_echo' or 'module:attr', got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    responder = obj() if _is_factory(obj) else obj
    if not callable(responder):
        raise TypeError(f"{spec!r} did not give a callable responder")
    return responder


def _write_port_file(path: str, port: int) -> None:
    """Write the port atomically (temp file + rename in the same directory)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fake_openai",
        description="Serve a fake OpenAI-compatible chat completions API on loopback.",
    )
    parser.add_argument(
        "--responder", default="echo", help="echo | json_echo | package.module:callable_or_factory"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per reply")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id for /v1/models")
    parser.add_argument(
        "--faults",
        default="",
        help='fault plans, e.g. "429:first=2,500:every=5,malformed:p=0.1:seed=1"',
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: serve until SIGTERM/SIGINT, then exit 0."""
    args = _parse_args(argv)
    responder = with_faults(load_responder(args.responder), *FaultPlan.parse(args.faults))
    server = FakeOpenAIServer(
        responder, latency=args.latency, host=args.host, port=args.port, model=args.model
    ).start()
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.port_file:
        _write_port_file(args.port_file, server.port)
    print(f"fake openai server listening on {server.base_url}", file=sys.stderr, flush=True)
    while not done.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    # Under -m this file runs as "__main__", a second copy of the module: run main() of the
    # copy imported under its own name, so responders loaded by "module:attr" return the
    # Reply class the server checks for.
    sys.exit(importlib.import_module(__spec__.name).main())
