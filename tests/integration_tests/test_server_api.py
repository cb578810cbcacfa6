"""The LangGraph server API, end to end: the real `langgraph_api` server (in-memory
runtime, started once for the module in a subprocess) serving our `langgraph.json`,
driven by the real `langgraph-sdk` client, with every model call answered by the local
fake OpenAI-compatible server running in this process.

The fake server plays all roles with the versioned script: answers are `v<N>`, refine
writes `v<N+1>`, and the judge prefers the higher version up to `v2`, so a chain that
starts at `v0` grows to `v0, v1, v2` and stops when `v3` is rejected.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from graph import ChainState, Context
from tests.integration_tests.langgraph_server import LangGraphServer
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.scripts import versioned_responder

GRAPH_ID = "refine_n_judge"
STOP_AT = 2
SERVER_MODEL = "fake-model"
"""The model name the server process uses when a run names none (REFINE_N_JUDGE_MODEL)."""


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """The fake OpenAI-compatible endpoint every run of the module talks to."""
    with FakeOpenAIServer(versioned_responder(stop_at=STOP_AT)) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    fake_openai: FakeOpenAIServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LangGraphServer]:
    """One langgraph_api server for the module, its default model pointed at the fake."""
    workdir = tmp_path_factory.mktemp("langgraph-api")
    env = {"REFINE_N_JUDGE_BASE_URL": fake_openai.base_url, "REFINE_N_JUDGE_MODEL": SERVER_MODEL}
    with LangGraphServer(workdir, env=env) as running:
        yield running
    assert not running.running


@pytest.fixture
async def client(server: LangGraphServer) -> AsyncIterator[LangGraphClient]:
    """A langgraph-sdk client for this test's event loop (no API key sent)."""
    sdk = get_client(url=server.url, api_key=None)
    try:
        yield sdk
    finally:
        await sdk.aclose()


def item(item_id: str, answer: str = "v0") -> dict[str, Any]:
    """A run input: one question with the answer to refine."""
    return {"question": "What is v?", "answer": answer, "id": item_id}


# --------------------------------------------------------------------------------------
# Assistants
# --------------------------------------------------------------------------------------


async def test_assistants_search_finds_the_graph_and_its_settings(
    client: LangGraphClient,
) -> None:
    # The server makes one assistant per graph of langgraph.json (other tests add more).
    assistants = await client.assistants.search(
        graph_id=GRAPH_ID, metadata={"created_by": "system"}
    )
    assert [a["name"] for a in assistants] == [GRAPH_ID]
    default = assistants[0]
    assert default["context"] == {}

    schemas = await client.assistants.get_schemas(default["assistant_id"])
    context = schemas["context_schema"]
    assert context is not None
    assert set(context["properties"]) == set(Context.model_fields)
    for setting in ("refiner", "judges", "alternate_refiner", "criteria", "max_iterations"):
        assert context["properties"][setting]["description"], setting
    assert context["properties"]["max_iterations"]["default"] == 10
    assert context["properties"]["max_iterations"]["minimum"] == 1
    assert schemas["input_schema"]["required"] == ["question"]
    assert {"chain", "judgments", "decisions", "stop_reason"} <= set(
        schemas["output_schema"]["properties"]
    )


async def test_an_assistant_carries_its_own_context(
    client: LangGraphClient, fake_openai: FakeOpenAIServer
) -> None:
    assistant = await client.assistants.create(
        GRAPH_ID,
        context={"refiner": "assistant-model", "base_url": fake_openai.base_url},
        name="one-refinement",
    )
    assert assistant["context"]["refiner"] == "assistant-model"

    state = ChainState.model_validate(
        await client.runs.wait(
            None,
            assistant["assistant_id"],
            input=item("assistant-1"),
            context={"max_iterations": 1},
        )
    )

    assert [a.text for a in state.chain] == ["v0", "v1"]
    assert state.chain[1].model == "assistant-model"
    assert {j.judge_model for j in state.judgments} == {"assistant-model"}
    assert state.stop_reason == "max_iterations"


# --------------------------------------------------------------------------------------
# Threads, runs.wait, runs.stream
# --------------------------------------------------------------------------------------


async def test_thread_run_wait_returns_the_chain_state(client: LangGraphClient) -> None:
    thread = await client.threads.create(metadata={"dataset": "server-test"})

    result = await client.runs.wait(thread["thread_id"], GRAPH_ID, input=item("thread-1"))

    state = ChainState.model_validate(result)
    assert state.id == "thread-1"
    assert [a.text for a in state.chain] == ["v0", "v1", "v2"]
    assert all(a.model == SERVER_MODEL for a in state.chain[1:])
    assert state.last_rejected is not None and state.last_rejected.text == "v3"
    assert [d.accepted for d in state.decisions] == [True, True, False]
    assert {(j.iteration, j.position) for j in state.judgments} == {
        (i, p) for i in (1, 2, 3) for p in ("refined_first", "refined_second")
    }
    assert state.stop_reason == "rejected"

    # The thread keeps the final state; it reads back as the same ChainState.
    saved = await client.threads.get_state(thread["thread_id"])
    assert ChainState.model_validate(saved["values"]) == state
    assert saved["next"] == []
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"
    runs = await client.runs.list(thread["thread_id"])
    assert [r["status"] for r in runs] == ["success"]


async def test_a_second_input_on_a_thread_starts_a_new_chain(
    client: LangGraphClient, server: LangGraphServer
) -> None:
    thread = (await client.threads.create())["thread_id"]
    first = {**item("first"), "reference": "v9", "history": [{"role": "system", "content": "S"}]}
    await client.runs.wait(thread, GRAPH_ID, input=first)

    # The second input leaves out reference and history: they must not carry over.
    second = await client.runs.wait(
        thread, GRAPH_ID, input={"question": "Second question", "answer": "v1", "id": "second"}
    )

    state = ChainState.model_validate(second)
    assert (state.id, state.question, state.reference, state.history) == (
        "second",
        "Second question",
        None,
        None,
    )
    assert [a.text for a in state.chain] == ["v1", "v2"]
    assert [d.iteration for d in state.decisions] == [1, 2]
    assert {j.iteration for j in state.judgments} == {1, 2}
    assert state.last_rejected is not None and state.last_rejected.text == "v3"
    assert state.stop_reason == "rejected"
    calls = state.usage[SERVER_MODEL]
    assert (calls["feedback"].calls, calls["refine"].calls, calls["judge"].calls) == (2, 2, 4)
    saved = await client.threads.get_state(thread)
    assert ChainState.model_validate(saved["values"]) == state
    # The checkpoints hold plain data: nothing for the serializer to warn about.
    assert "unregistered type" not in server.log_path.read_text(encoding="utf-8")


async def test_stream_gives_node_updates_and_judged_events_in_order(
    client: LangGraphClient,
) -> None:
    events: list[tuple[str, Any]] = []
    async for part in client.runs.stream(
        None, GRAPH_ID, input=item("stream-1"), stream_mode=["updates", "custom"]
    ):
        events.append((part.event, part.data))

    assert events[0][0] == "metadata"
    assert "run_id" in events[0][1]
    steps = [
        (event, next(iter(data)) if event == "updates" else data["event"])
        for event, data in events[1:]
    ]
    one_iteration = [
        ("updates", "feedback"),
        ("updates", "refine"),
        ("custom", "judged"),
        ("updates", "judge"),
    ]
    assert steps == [
        ("updates", "initial_answer"),
        *one_iteration * (STOP_AT + 1),
        ("updates", "finish"),
    ]

    judged = [data for event, data in events if event == "custom"]
    assert [(e["iteration"], e["accepted"], e["outcome"]) for e in judged] == [
        (1, True, "refined"),
        (2, True, "refined"),
        (3, False, "previous"),
    ]
    assert {e["item_id"] for e in judged} == {"stream-1"}
    assert all(e["votes_for_refined"] in (0, 1) and e["answered"] == 1 for e in judged)

    updates = [data for event, data in events if event == "updates"]
    candidates = [u["refine"]["candidate"]["text"] for u in updates if "refine" in u]
    assert candidates == ["v1", "v2", "v3"]
    assert updates[-1] == {"finish": {"stop_reason": "rejected"}}


async def test_a_run_context_can_point_at_another_endpoint_for_the_full_ten_iterations(
    client: LangGraphClient,
) -> None:
    # A judge that accepts every refinement up to v20: the loop runs the paper's 10
    # iterations (40 model calls, 30+ graph steps) and stops on max_iterations.
    with FakeOpenAIServer(versioned_responder(stop_at=20)) as long_fake:
        result = await client.runs.wait(
            None,
            GRAPH_ID,
            input=item("long-1"),
            context={"refiner": "long-model", "base_url": long_fake.base_url},
        )
        models = {request.model for request in long_fake.requests}

    state = ChainState.model_validate(result)
    assert [a.text for a in state.chain] == [f"v{n}" for n in range(11)]
    assert state.stop_reason == "max_iterations"
    assert models == {"long-model"}


async def test_twenty_concurrent_runs_all_complete(client: LangGraphClient) -> None:
    # Starting versions differ so that a run answered with another run's text would show.
    inputs = [item(f"concurrent-{i:02d}", answer=f"v{i % 3}") for i in range(20)]

    results = await asyncio.gather(
        *(client.runs.wait(None, GRAPH_ID, input=payload) for payload in inputs)
    )

    states = [ChainState.model_validate(r) for r in results]
    assert [s.id for s in states] == [p["id"] for p in inputs]
    for payload, state in zip(inputs, states, strict=True):
        start = int(payload["answer"][1:])
        assert [a.text for a in state.chain] == [f"v{n}" for n in range(start, STOP_AT + 1)]
        assert state.stop_reason == "rejected"
        assert state.failures == []


# --------------------------------------------------------------------------------------
# Bad requests
# --------------------------------------------------------------------------------------

# What the server does with a bad run, found by running it (langgraph-api 0.16.7):
# - a request the API schema refuses (context not an object, unknown assistant): HTTP 422;
# - input or context the graph's pydantic models refuse: the run is created and fails
#   before any node runs; /runs/wait answers 200 with `__error__` (the SDK raises it),
#   the stream ends with an `error` event, the run and thread are marked `error`;
# - a context key the context schema does not have: dropped by the server, not refused.


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            {"input": {"answer": "v0"}},
            ["validation error", "question", "Field required"],
            id="missing-question",
        ),
        pytest.param(
            {"input": {"question": ""}},
            ["validation error", "question", "at least 1 character"],
            id="empty-question",
        ),
        pytest.param(
            {"input": {"question": "q"}, "context": {"max_iterations": 0}},
            ["validation error for Context", "max_iterations", "greater than or equal to 1"],
            id="max-iterations-0",
        ),
        pytest.param(
            {"input": {"question": "q"}, "context": {"judges": ["a", "b"], "quorum": 3}},
            ["validation error for Context", "quorum=3 is more than the 2 judge(s)"],
            id="quorum-above-judges",
        ),
    ],
)
async def test_invalid_input_or_context_fails_the_run_naming_the_field(
    client: LangGraphClient,
    fake_openai: FakeOpenAIServer,
    payload: dict[str, Any],
    expected: list[str],
) -> None:
    calls_before = len(fake_openai.requests)
    thread = await client.threads.create()

    result = await client.runs.wait(thread["thread_id"], GRAPH_ID, raise_error=False, **payload)

    error = result["__error__"]
    assert error["error"] == "ValidationError"
    for fragment in expected:
        assert fragment in error["message"]
    assert [r["status"] for r in await client.runs.list(thread["thread_id"])] == ["error"]
    assert (await client.threads.get(thread["thread_id"]))["status"] == "error"
    # By default the SDK raises it, with the same message.
    with pytest.raises(Exception, match=re.escape(expected[1])):
        await client.runs.wait(None, GRAPH_ID, **payload)
    assert len(fake_openai.requests) == calls_before, "a refused run called a model"


async def test_invalid_input_ends_the_stream_with_an_error_event(client: LangGraphClient) -> None:
    events = [
        (part.event, part.data)
        async for part in client.runs.stream(
            None, GRAPH_ID, input={"answer": "v0"}, stream_mode=["updates", "custom"]
        )
    ]

    assert [event for event, _ in events] == ["metadata", "error"]
    error = events[-1][1]
    assert error["error"] == "ValidationError"
    assert "question" in error["message"] and "Field required" in error["message"]


@pytest.mark.parametrize(
    ("assistant", "body", "expected"),
    [
        pytest.param(GRAPH_ID, {"context": "fast"}, "is not of type", id="context-not-object"),
        pytest.param("no-such-graph", {}, "Invalid assistant: 'no-such-graph'", id="assistant"),
    ],
)
async def test_malformed_request_is_a_422(
    client: LangGraphClient, assistant: str, body: dict[str, Any], expected: str
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await client.runs.wait(None, assistant, input=item("bad-request"), **body)

    assert caught.value.response.status_code == 422
    assert expected in caught.value.response.json()["detail"]


async def test_unknown_context_key_is_dropped_by_the_server(client: LangGraphClient) -> None:
    # In Python, Context(max_iteration=1) is refused (extra="forbid"); the server filters the
    # context by its JSON schema first, so the typo is ignored and the default (10) applies.
    result = await client.runs.wait(
        None, GRAPH_ID, input=item("typo-1"), context={"max_iteration": 1}
    )

    state = ChainState.model_validate(result)
    assert [a.text for a in state.chain] == ["v0", "v1", "v2"]
    assert state.stop_reason == "rejected"
