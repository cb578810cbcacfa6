"""The fake OpenAI-compatible server works with ChatOpenAI and the bare openai client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

import tests.support.fake_openai as fake_module
from tests.support.fake_openai import (
    ChatRequest,
    FakeOpenAIServer,
    FaultPlan,
    Reply,
    build_completion,
    echo,
    json_echo,
    route_by_marker,
    sequence,
    with_faults,
)

LONG_TEXT = "The refined answer is clearer, shorter and more accurate than before."
PROJECT_ROOT = Path(fake_module.__file__).resolve().parents[2]


class Answer(BaseModel):
    """Structured output used by the tests."""

    answer: str


ServerFactory = Callable[..., FakeOpenAIServer]


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start fake servers on free ports; stop them all at teardown."""
    servers: list[FakeOpenAIServer] = []

    def start(responder=echo, latency: float = 0.0) -> FakeOpenAIServer:
        server = FakeOpenAIServer(responder, latency=latency).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def chat(server: FakeOpenAIServer, **kwargs) -> ChatOpenAI:
    """A ChatOpenAI pointed at the fake server."""
    kwargs.setdefault("max_retries", 0)
    return ChatOpenAI(model="fake-model", base_url=server.base_url, api_key="sk-fake", **kwargs)


# ------------------------------------------------------------------------------ basics


def test_plain_invoke(start_server: ServerFactory) -> None:
    server = start_server(lambda req: Reply(content=f"you said: {req.last_user}"))
    message = chat(server).invoke("hello")
    assert message.content == "you said: hello"
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.response_metadata["model_name"] == "fake-model"
    assert message.response_metadata["id"].startswith("chatcmpl-")
    (request,) = server.requests
    assert request.index == 1
    assert request.messages == [{"role": "user", "content": "hello"}]
    assert request.model == "fake-model"
    assert request.stream is False


def test_usage_metadata_populated(start_server: ServerFactory) -> None:
    server = start_server(lambda _req: Reply(content="x" * 40))
    prompt = "y" * 80
    message = chat(server).invoke(prompt)
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == len(prompt) // 4
    assert message.usage_metadata["output_tokens"] == 10
    assert message.usage_metadata["total_tokens"] == len(prompt) // 4 + 10


@pytest.mark.parametrize("method", ["function_calling", "json_mode", "json_schema"])
def test_structured_output_methods(start_server: ServerFactory, method: str) -> None:
    server = start_server(json_echo)
    structured = chat(server).with_structured_output(Answer, method=method)
    assert structured.invoke("forty-two") == Answer(answer="forty-two")
    raw = server.requests[-1].raw
    if method == "function_calling":
        assert raw["tool_choice"]["function"]["name"] == "Answer"
        assert server.requests[-1].json_schema is not None
    else:
        expected = "json_object" if method == "json_mode" else "json_schema"
        assert raw["response_format"]["type"] == expected


def test_default_structured_output_is_json_schema(start_server: ServerFactory) -> None:
    server = start_server(json_echo)
    assert chat(server).with_structured_output(Answer).invoke("hi") == Answer(answer="hi")
    request = server.requests[-1]
    assert request.response_format is not None
    assert request.response_format["type"] == "json_schema"
    assert request.json_schema is not None
    assert "answer" in request.json_schema["properties"]


def test_tool_call_message_shape(start_server: ServerFactory) -> None:
    server = start_server(json_echo)
    llm = chat(server).bind_tools([Answer], tool_choice="Answer")
    message = llm.invoke("q")
    assert message.content == ""
    assert message.tool_calls[0]["name"] == "Answer"
    assert message.tool_calls[0]["args"] == {"answer": "q"}
    assert message.tool_calls[0]["id"].startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_auto_tool_choice_with_two_tools_answers_text(start_server: ServerFactory) -> None:
    class Other(BaseModel):
        """Another tool."""

        x: int

    server = start_server(lambda _req: Reply(content="plain text"))
    message = chat(server).bind_tools([Answer, Other]).invoke("q")
    assert message.content == "plain text"
    assert message.tool_calls == []


# ----------------------------------------------------------------------------- streaming


def test_streaming_invoke(start_server: ServerFactory) -> None:
    server = start_server(lambda _req: Reply(content=LONG_TEXT))
    assert chat(server, streaming=True).invoke("q").content == LONG_TEXT
    assert server.requests[-1].stream is True


async def test_astream_yields_several_chunks(start_server: ServerFactory) -> None:
    server = start_server(lambda _req: Reply(content=LONG_TEXT))
    pieces = [chunk.content async for chunk in chat(server).astream("q")]
    assert len([p for p in pieces if p]) >= 3
    assert "".join(pieces) == LONG_TEXT


async def test_streamed_tool_call_parses(start_server: ServerFactory) -> None:
    server = start_server(lambda _req: json.dumps({"answer": LONG_TEXT}))
    structured = chat(server).with_structured_output(Answer, method="function_calling")
    outputs = [out async for out in structured.astream("q")]
    assert len(outputs) >= 2  # arguments arrived in several deltas
    assert outputs[-1] == Answer(answer=LONG_TEXT)
    assert server.requests[-1].stream is True


# openai's stream helper dumps its parsed snapshot; pydantic warns (client side, not ours).
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
async def test_streamed_json_schema_parses(start_server: ServerFactory) -> None:
    server = start_server(json_echo)
    structured = chat(server).with_structured_output(Answer, method="json_schema")
    outputs = [out async for out in structured.astream("streamed")]
    assert outputs[-1] == Answer(answer="streamed")


async def test_stream_usage_chunk(start_server: ServerFactory) -> None:
    server = start_server(lambda _req: Reply(content="x" * 40))
    total = None
    async for chunk in chat(server, stream_usage=True).astream("y" * 80):
        total = chunk if total is None else total + chunk
    assert total is not None
    assert total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == 10
    assert server.requests[-1].stream_usage is True


# --------------------------------------------------------------------------- concurrency


async def test_async_openai_client_concurrent(start_server: ServerFactory) -> None:
    server = start_server(echo, latency=0.05)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-fake")
    try:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="fake-model", messages=[{"role": "user", "content": f"q{i}"}]
                )
                for i in range(20)
            )
        )
    finally:
        await client.close()
    assert [r.choices[0].message.content for r in replies] == [f"q{i}" for i in range(20)]
    assert all(r.usage is not None for r in replies)
    assert len(server.requests) == 20
    assert sorted(r.index for r in server.requests) == list(range(1, 21))


async def test_64_concurrent_connections_are_served_in_parallel(
    start_server: ServerFactory,
) -> None:
    server = start_server(echo, latency=0.3)
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-fake", max_retries=0)
    started = time.monotonic()
    try:
        await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="fake-model", messages=[{"role": "user", "content": str(i)}]
                )
                for i in range(64)
            )
        )
    finally:
        await client.close()
    assert len(server.requests) == 64
    assert time.monotonic() - started < 5.0  # serially it would take 19 s


# -------------------------------------------------------------------------------- faults


def test_rate_limit_then_success_is_retried(start_server: ServerFactory) -> None:
    server = start_server(sequence(Reply(status=429), Reply(content="ok")))
    started = time.monotonic()
    assert chat(server, max_retries=2).invoke("q").content == "ok"
    assert time.monotonic() - started < 2.0
    assert len(server.requests) == 2
    assert server.requests[1].headers.get("x-stainless-retry-count") == "1"


def test_rate_limit_headers_and_error_shape(start_server: ServerFactory) -> None:
    server = start_server(lambda _req: Reply(status=429, retry_after=0.25))
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "q"}]},
    )
    assert response.status_code == 429
    assert response.headers["retry-after-ms"] == "250"
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "rate_limit_exceeded"


def test_server_error_without_retries_raises(start_server: ServerFactory) -> None:
    server = start_server(FaultPlan("500", first_n=1).wrap(echo))
    with pytest.raises(openai.InternalServerError):
        chat(server, max_retries=0).invoke("q")
    assert len(server.requests) == 1


@pytest.mark.parametrize("streaming", [False, True])
def test_malformed_body_raises(start_server: ServerFactory, streaming: bool) -> None:
    server = start_server(FaultPlan("malformed", first_n=1).wrap(echo))
    # The openai client does not wrap this: a json.JSONDecodeError (a ValueError) escapes.
    with pytest.raises(json.JSONDecodeError):
        chat(server, streaming=streaming).invoke("q")


def test_slow_reply_times_out_then_recovers(start_server: ServerFactory) -> None:
    server = start_server(FaultPlan("slow", first_n=1, slow_seconds=5).wrap(echo))
    with pytest.raises(openai.APITimeoutError):
        chat(server, timeout=0.3).invoke("q")
    assert chat(server, timeout=5).invoke("again").content == "again"


def test_empty_fault_and_responder_error(start_server: ServerFactory) -> None:
    server = start_server(FaultPlan("empty", every_k=2).wrap(echo))
    llm = chat(server)
    assert llm.invoke("a").content == "a"
    assert llm.invoke("b").content == ""

    def broken(_req: ChatRequest) -> Reply:
        raise RuntimeError("boom")

    failing = start_server(broken)
    with pytest.raises(openai.InternalServerError, match="boom"):
        chat(failing).invoke("q")
    assert isinstance(failing.errors[0], RuntimeError)


def test_fault_plan_triggers_and_parse() -> None:
    every = FaultPlan("503", every_k=3)
    assert [every.should_fail() for _ in range(6)] == [False, False, True] * 2
    assert every.injected == [3, 6]

    def draws(seed: int) -> list[bool]:
        plan = FaultPlan("429", probability=0.5, seed=seed)
        return [plan.should_fail() for _ in range(50)]

    assert draws(7) == draws(7)
    assert 5 < sum(draws(7)) < 45

    first, second = FaultPlan.parse("429:first=2, malformed:p=0.1:seed=3")
    assert (first.kind, first.first_n) == ("429", 2)
    assert (second.kind, second.probability, second.seed) == ("malformed", 0.1, 3)
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan("teapot")


def test_with_faults_stacks_plans(start_server: ServerFactory) -> None:
    responder = with_faults(echo, FaultPlan("500", first_n=1), FaultPlan("429", first_n=1))
    server = start_server(responder)
    assert chat(server, max_retries=3).invoke("q").content == "q"
    assert len(server.requests) == 3


# ------------------------------------------------------------------------------ logprobs


def test_logprobs_returned_when_requested(start_server: ServerFactory) -> None:
    top = [("7", -0.1), ("8", -2.5), ("6", -3.0), ("9", -4.0), ("5", -5.0), ("4", -6.0)]
    server = start_server(lambda _req: Reply(content="7", logprobs=[("7", -0.1, top)]))
    message = chat(server, logprobs=True, top_logprobs=5).invoke("score it")
    content = message.response_metadata["logprobs"]["content"]
    assert content[0]["token"] == "7"
    assert content[0]["logprob"] == pytest.approx(-0.1)
    assert [t["token"] for t in content[0]["top_logprobs"]] == ["7", "8", "6", "9", "5"]
    assert server.requests[-1].top_logprobs == 5

    plain = chat(server).invoke("score it")
    assert plain.response_metadata.get("logprobs") is None


async def test_logprobs_streamed(start_server: ServerFactory) -> None:
    entries = [("The", -0.1, [("The", -0.1)]), (" end", -0.2, [(" end", -0.2)])]
    server = start_server(lambda _req: Reply(content="The end", logprobs=entries))
    tokens = []
    async for chunk in chat(server, logprobs=True, top_logprobs=1).astream("q"):
        logprobs = chunk.response_metadata.get("logprobs")
        if logprobs:
            tokens += [item["token"] for item in logprobs["content"]]
    assert tokens == ["The", " end"]


# ------------------------------------------------------------------- routing and shapes


def test_route_by_marker_dispatches_per_role(start_server: ServerFactory) -> None:
    responder = route_by_marker(
        {
            "[ROLE:judge]": lambda req: Reply(content=json.dumps({"winner": "B"})),
            "[ROLE:refine]": lambda req: f"refined: {req.last_user}",
        },
        default="feedback",
    )
    server = start_server(responder)
    llm = chat(server)
    judge = llm.invoke([SystemMessage("You judge. [ROLE:judge]"), HumanMessage("A vs B")])
    refine = llm.invoke([SystemMessage("[ROLE:refine] Improve it."), HumanMessage("draft")])
    other = llm.invoke([SystemMessage("Critique."), HumanMessage("draft")])
    assert json.loads(judge.content) == {"winner": "B"}
    assert refine.content == "refined: draft"
    assert other.content == "feedback"
    assert server.requests[0].system == "You judge. [ROLE:judge]"


def test_build_completion_honours_stop_and_n() -> None:
    request = ChatRequest.from_body(
        {"model": "m", "messages": [{"role": "user", "content": "q"}], "stop": ["END"], "n": 2}
    )
    body = build_completion(request, Reply(content="answer END trailing"))
    assert [c["message"]["content"] for c in body["choices"]] == ["answer ", "answer "]
    assert body["object"] == "chat.completion"
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 3


def test_models_health_and_unknown_path(start_server: ServerFactory) -> None:
    server = start_server()
    root = f"http://127.0.0.1:{server.port}"
    with httpx.Client() as client:
        assert client.get(f"{root}/health").json() == {"status": "ok"}
        models = client.get(f"{server.base_url}/models").json()
        assert models["data"][0]["id"] == "fake-model"
        missing = client.post(f"{server.base_url}/nope", json={})
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "invalid_request_error"
        bad = client.post(f"{server.base_url}/chat/completions", content=b"{not json")
        assert bad.status_code == 400
        # the keep-alive connection still works after errors
        assert client.get(f"{root}/health").status_code == 200


# ------------------------------------------------------------------------------------ CLI


def wait_for_port_file(path: Path, process: subprocess.Popen, timeout: float = 20.0) -> int:
    """Wait until the CLI has written its port file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return int(path.read_text().strip())
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("port file was not written")


def test_cli_subprocess_serves_until_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    command = [
        sys.executable,
        "-m",
        "tests.support.fake_openai",
        "--responder",
        "tests.support.fake_openai:json_echo",
        "--latency",
        "0.01",
        "--port-file",
        str(port_file),
        "--faults",
        "429:first=1",
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        port = wait_for_port_file(port_file, process)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-fake")
        reply = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "ping"}]
        )
        client.close()
        assert json.loads(reply.choices[0].message.content or "") == {"answer": "ping"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
