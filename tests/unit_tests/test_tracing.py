"""LangSmith tracing of a run, captured in process: the tree, its labels, and no secrets.

The graph runs with tracing switched on the usual way (``LANGSMITH_TRACING=true``) against
the local fake OpenAI server with real `ChatOpenAI` models. The LangSmith client is real
too, but its HTTP session records every request and answers it itself, so nothing leaves
the process; `LANGSMITH_ENDPOINT` points at a closed loopback port besides.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import langsmith
import pytest
import requests
from langchain_core.tracers.langchain import wait_for_all_tracers
from langsmith import utils as ls_utils
from langsmith.run_helpers import tracing_context

from graph import ChainState, build_graph
from refine_n_judge.tracing import (
    describe_tracing,
    item_config,
    tracing_disabled,
    tracing_enabled,
    tracing_project,
)
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.scripts import versioned_responder

MODEL = "fake-model"
OPENAI_KEY = "sk-SECRET-OPENAI-123"
ENDPOINT_KEY = "sk-SECRET-ENDPOINT-456"
LANGSMITH_KEY = "lsv2_SECRET_LANGSMITH_789"
NODE_NAMES = ["initial_answer", "feedback", "refine", "judge", "feedback", "refine", "judge"]
"""The root's children for a chain that grows once (v0 -> v1) and stops on v2's rejection,
before the final `finish`."""


# --------------------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """One HTTP request the LangSmith client made."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class RecordingSession(requests.Session):
    """A `requests` session that records each request and answers 200 `{}` itself."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[Recorded] = []
        self._lock = threading.Lock()

    def request(  # type: ignore[override]
        self, method: str, url: str, **kwargs: Any
    ) -> requests.Response:
        """Record the request; never touch the network."""
        data = kwargs.get("data") or b""
        body = data.encode() if isinstance(data, str) else bytes(data)
        headers = {str(k): str(v) for k, v in (kwargs.get("headers") or {}).items()}
        with self._lock:
            self.recorded.append(Recorded(method.upper(), url, headers, body))
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.url = url
        response.headers["Content-Type"] = "application/json"
        return response


@dataclass
class Trace:
    """The runs a client would have sent, rebuilt from its create (POST) and update
    (PATCH) payloads, with helpers to walk the tree."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_requests(cls, recorded: list[Recorded]) -> Trace:
        """Merge each run's create and update payloads; refuse any other request."""
        trace = cls()
        for request in recorded:
            path = urlsplit(request.url).path.rstrip("/").split("/")
            if (request.method, path[-1]) == ("POST", "runs"):
                run_id = None  # a new run: its id is in the payload
            elif request.method == "PATCH" and path[-2:-1] == ["runs"]:
                run_id = path[-1]
            else:
                raise AssertionError(f"unexpected LangSmith request {request.method} {path}")
            payload = json.loads(request.body)
            run_id = payload.get("id") or run_id
            run = trace.runs.setdefault(str(run_id), {})
            run.update({k: v for k, v in payload.items() if v is not None})
        return trace

    def roots(self) -> list[dict[str, Any]]:
        """Runs without a parent (a trace has exactly one)."""
        return [r for r in self.runs.values() if not r.get("parent_run_id")]

    def children(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Direct children, in the order they started."""
        kids = [r for r in self.runs.values() if r.get("parent_run_id") == run["id"]]
        return sorted(kids, key=lambda r: r["dotted_order"])

    def of_type(self, run_type: str) -> list[dict[str, Any]]:
        """Runs of one type: `chain` (graph, nodes, judge calls) or `llm` (model calls)."""
        return [r for r in self.runs.values() if r["run_type"] == run_type]


def metadata(run: dict[str, Any]) -> dict[str, Any]:
    """A run's metadata (LangSmith keeps it under `extra`)."""
    return run.get("extra", {}).get("metadata", {})


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """The model endpoint: the versioned script, accepting v1 and rejecting v2."""
    with FakeOpenAIServer(versioned_responder(stop_at=1)) as server:
        yield server


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAIServer) -> Iterator[None]:
    """Keys set to sentinels, the default model routed to the fake server; tracing off."""
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("REFINE_N_JUDGE_API_KEY", ENDPOINT_KEY)
    monkeypatch.setenv("REFINE_N_JUDGE_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("REFINE_N_JUDGE_MODEL", MODEL)
    monkeypatch.setenv("LANGSMITH_API_KEY", LANGSMITH_KEY)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("LANGSMITH_PROJECT", "refine-n-judge-tests")
    _clear_langsmith_env_cache()
    yield
    monkeypatch.undo()  # restore the environment first, then forget what was read from it
    _clear_langsmith_env_cache()


@pytest.fixture
def tracing_on(monkeypatch: pytest.MonkeyPatch, secrets_env: None) -> None:
    """Tracing switched on the way a user does it."""
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    _clear_langsmith_env_cache()


def _clear_langsmith_env_cache() -> None:
    """LangSmith caches what it read from the environment; make it read again."""
    ls_utils.get_env_var.cache_clear()
    ls_utils.get_tracer_project.cache_clear()


@pytest.fixture
def session() -> RecordingSession:
    """Where the LangSmith client's requests end up."""
    return RecordingSession()


@pytest.fixture
def client(session: RecordingSession) -> langsmith.Client:
    """A real LangSmith client whose requests never leave the process."""
    return langsmith.Client(
        api_url=f"http://127.0.0.1:{closed_port()}",
        api_key=LANGSMITH_KEY,
        session=session,
        auto_batch_tracing=False,
    )


def traced_run(
    client: langsmith.Client,
    session: RecordingSession,
    inputs: dict[str, Any],
    *,
    config: dict[str, Any] | None = None,
    mode: Literal["sync", "async"] = "sync",
) -> tuple[ChainState, Trace]:
    """Run a fresh graph (default models from the environment) with `client` as the
    tracing client; return its state and what the client sent."""
    graph = build_graph()
    with tracing_context(client=client):
        if mode == "sync":
            result = graph.invoke(inputs, config=config)
        else:
            result = asyncio.run(graph.ainvoke(inputs, config=config))
    wait_for_all_tracers()
    client.flush()
    return ChainState.model_validate(result), Trace.from_requests(session.recorded)


# --------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_run_is_one_readable_trace(
    tracing_on: None, client: langsmith.Client, session: RecordingSession, mode: str
) -> None:
    state, trace = traced_run(
        client, session, {"question": "What is v?", "answer": "v0", "id": "item-7"}, mode=mode
    )
    assert [a.text for a in state.chain] == ["v0", "v1"]
    assert state.stop_reason == "rejected"

    # One root: the graph, under its compiled name, holding the final state.
    (root,) = trace.roots()
    assert root["name"] == "refine_n_judge"
    assert root["run_type"] == "chain"
    assert root["outputs"]["stop_reason"] == "rejected"
    assert {r["trace_id"] for r in trace.runs.values()} == {root["id"]}
    assert {r.get("session_name") for r in trace.runs.values()} == {"refine-n-judge-tests"}

    # Its children: each node, once per iteration, in order.
    nodes = trace.children(root)
    assert [n["name"] for n in nodes] == [*NODE_NAMES, "finish"]
    assert all(n["run_type"] == "chain" for n in nodes)
    assert [metadata(n)["langgraph_node"] for n in nodes] == [n["name"] for n in nodes]
    steps = [metadata(n)["langgraph_step"] for n in nodes]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)

    # feedback and refine: one model call each, labelled with role, model, iteration.
    for iteration, start in ((1, 1), (2, 4)):
        for node in nodes[start : start + 2]:
            (call,) = trace.children(node)
            assert call["run_type"] == "llm"
            assert call["name"] == node["name"]
            assert {"role:refiner", f"model:{MODEL}", f"iteration:{iteration}"} <= set(call["tags"])
            labels = metadata(call)
            assert (labels["role"], labels["model"], labels["iteration"]) == (
                "refiner",
                MODEL,
                iteration,
            )
            assert labels["ls_model_name"] == MODEL

    # judge: one named run per position, each holding its model call.
    for iteration, judge in ((1, nodes[3]), (2, nodes[6])):
        calls = trace.children(judge)
        assert sorted(c["name"] for c in calls) == ["judge[refined_first]", "judge[refined_second]"]
        for call in calls:
            position = call["name"][len("judge[") : -1]
            assert call["run_type"] == "chain"
            expected_tags = {
                "role:judge",
                f"model:{MODEL}",
                f"iteration:{iteration}",
                f"position:{position}",
            }
            assert expected_tags <= set(call["tags"])
            labels = metadata(call)
            assert (labels["role"], labels["model"], labels["position"]) == (
                "judge",
                MODEL,
                position,
            )
            assert labels["iteration"] == iteration
            (llm,) = trace.children(call)
            assert llm["run_type"] == "llm"
            assert llm["name"] == call["name"]
            assert metadata(llm)["position"] == position
            assert expected_tags <= set(llm["tags"])

    # Every model call of the run is in the tree: 2 feedback + 2 refine + 2x2 judge.
    assert len(trace.of_type("llm")) == 8
    # The item id labels every model call and judge call (from the state's id).
    labelled = [r for r in trace.runs.values() if "role" in metadata(r)]
    assert len(labelled) == 12
    assert {metadata(r)["item_id"] for r in labelled} == {"item-7"}


def test_item_id_from_the_config_reaches_every_run(
    tracing_on: None, client: langsmith.Client, session: RecordingSession
) -> None:
    # What the curate command does for each item: the id in the input and in the config.
    _, trace = traced_run(
        client,
        session,
        {"question": "What is v?", "answer": "v0", "id": "cli-42"},
        config=item_config("cli-42", metadata={"dataset": "noisy"}),
    )

    assert len(trace.runs) == 1 + 8 + 4 + 8  # graph, nodes, judge calls, model calls
    assert {metadata(r)["item_id"] for r in trace.runs.values()} == {"cli-42"}
    assert {metadata(r)["dataset"] for r in trace.runs.values()} == {"noisy"}
    assert all("item:cli-42" in r["tags"] for r in trace.runs.values())


def test_item_id_from_the_config_alone_is_not_overwritten(
    tracing_on: None, client: langsmith.Client, session: RecordingSession
) -> None:
    # An input without an id: the config's item_id must still label the model calls.
    _, trace = traced_run(
        client,
        session,
        {"question": "What is v?", "answer": "v0"},
        config=item_config("config-only-1"),
    )

    assert {metadata(r).get("item_id") for r in trace.runs.values()} == {"config-only-1"}


# --------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------


def test_no_secret_reaches_the_trace(
    tracing_on: None,
    client: langsmith.Client,
    session: RecordingSession,
    fake_openai: FakeOpenAIServer,
) -> None:
    _, trace = traced_run(
        client,
        session,
        {"question": "What is v?", "answer": "v0", "id": "secret-1"},
        config=item_config("secret-1"),
    )

    # The endpoint key was really in use: the model server received it on every call.
    assert fake_openai.requests
    assert {r.headers["authorization"] for r in fake_openai.requests} == {f"Bearer {ENDPOINT_KEY}"}
    # The trace has the model calls, their settings and the models' serialised form...
    llm = trace.of_type("llm")[0]
    assert llm["serialized"]["kwargs"]["openai_api_key"]["type"] == "secret"
    assert session.recorded
    # ...and no key anywhere: not in a URL, a body, or a header other than LangSmith's own.
    for request in session.recorded:
        text = request.url + request.body.decode("utf-8", errors="replace")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "x-api-key"}
        text += json.dumps(headers)
        for secret in (OPENAI_KEY, ENDPOINT_KEY, LANGSMITH_KEY):
            assert secret not in text, f"{secret} sent to LangSmith in {request.method}"
        assert "SECRET" not in text
        assert request.headers.get("x-api-key") == LANGSMITH_KEY


# --------------------------------------------------------------------------------------
# On and off
# --------------------------------------------------------------------------------------


def test_tracing_is_off_by_default(
    secrets_env: None, client: langsmith.Client, session: RecordingSession
) -> None:
    assert not tracing_enabled()
    assert tracing_project() is None
    assert describe_tracing().startswith("LangSmith tracing off")

    state, trace = traced_run(client, session, {"question": "What is v?", "answer": "v0"})

    assert [a.text for a in state.chain] == ["v0", "v1"]
    assert session.recorded == []
    assert trace.runs == {}


def test_langsmith_tracing_variable_turns_it_on(tracing_on: None) -> None:
    assert tracing_enabled()
    assert tracing_project() == "refine-n-judge-tests"
    assert describe_tracing() == "LangSmith tracing on (project 'refine-n-judge-tests')"


def test_tracing_disabled_wins_over_the_environment(
    tracing_on: None, client: langsmith.Client, session: RecordingSession
) -> None:
    with tracing_disabled():
        assert not tracing_enabled()
        state, _ = traced_run(client, session, {"question": "What is v?", "answer": "v0"})

    assert state.stop_reason == "rejected"
    assert session.recorded == []
    assert tracing_enabled()


# --------------------------------------------------------------------------------------
# item_config
# --------------------------------------------------------------------------------------


def test_item_config_labels_an_item_and_keeps_the_base_config() -> None:
    base = {"tags": ["batch"], "metadata": {"item_id": "stale", "run": "r1"}, "max_concurrency": 4}

    config = item_config("q-1", tags=["dataset:tulu"], metadata={"line": 3}, base=base)

    assert set(config["tags"]) == {"batch", "dataset:tulu", "item:q-1"}
    assert config["metadata"] == {"item_id": "q-1", "run": "r1", "line": 3}
    assert config["max_concurrency"] == 4
    assert base["metadata"]["item_id"] == "stale", "the base config was modified"


def test_item_config_without_an_id_adds_no_item_labels() -> None:
    config = item_config(None, tags=["t"])

    assert config["tags"] == ["t"]
    assert "item_id" not in config["metadata"]
