"""A thread is one conversation with the graph: a new input starts a new chain, `None`
resumes the current one, and checkpoints hold nothing the serializer has to trust."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graph import ChainState, build_graph
from tests.support.chat_models import ScriptedChatModel, versioned_handler


def thread(name: str) -> dict:
    return {"configurable": {"thread_id": name}}


def test_a_second_input_on_a_thread_starts_a_new_chain(caplog: pytest.LogCaptureFixture) -> None:
    model = ScriptedChatModel(handler=versioned_handler(stop_at=2))
    graph = build_graph(refiner=model, checkpointer=InMemorySaver())
    first = graph.invoke(
        {
            "question": "First question",
            "answer": "v0",
            "reference": "v9",
            "id": "one",
            "history": [{"role": "system", "content": "Be brief."}],
        },
        thread("t1"),
    )
    assert [a["text"] for a in first["chain"]] == ["v0", "v1", "v2"]

    with caplog.at_level(logging.DEBUG):
        second = ChainState.model_validate(
            graph.invoke({"question": "Second question", "answer": "v1"}, thread("t1"))
        )

    assert second.question == "Second question"
    assert (second.reference, second.id, second.history) == (None, None, None)
    assert [a.text for a in second.chain] == ["v1", "v2"]
    assert [(d.iteration, d.accepted) for d in second.decisions] == [(1, True), (2, False)]
    assert {j.iteration for j in second.judgments} == {1, 2}
    assert second.failures == []
    assert second.stop_reason == "rejected"
    assert second.last_rejected is not None and second.last_rejected.text == "v3"
    usage = second.usage["scripted"]
    assert (usage["feedback"].calls, usage["refine"].calls, usage["judge"].calls) == (2, 2, 4)
    assert "unregistered type" not in caplog.text
    # The thread's state is the second chain too.
    saved = graph.get_state(thread("t1"))
    assert ChainState.model_validate(saved.values) == second


def test_none_resumes_an_interrupted_chain() -> None:
    model = ScriptedChatModel(handler=versioned_handler(stop_at=2))
    graph = build_graph(refiner=model, checkpointer=InMemorySaver())
    config = thread("t2")
    graph.invoke({"question": "q", "answer": "v0", "id": "x"}, config, interrupt_before=["judge"])
    assert graph.get_state(config).next == ("judge",)

    resumed = ChainState.model_validate(graph.invoke(None, config))

    assert resumed.id == "x"
    assert [a.text for a in resumed.chain] == ["v0", "v1", "v2"]
    assert resumed.stop_reason == "rejected"
    assert model.roles().count("feedback") == 3  # nothing was redone


def test_a_checkpoint_loads_under_strict_msgpack() -> None:
    """A fresh interpreter with LANGGRAPH_STRICT_MSGPACK=true (read at import) runs two
    inputs on one thread and reads the state back: no warning, nothing dropped."""
    script = textwrap.dedent(
        """
        import logging, warnings
        from langgraph.checkpoint.memory import InMemorySaver
        from graph import ChainState, build_graph
        from tests.support.chat_models import ScriptedChatModel, versioned_handler

        logging.basicConfig(level=logging.DEBUG)
        warnings.simplefilter("error")
        graph = build_graph(
            refiner=ScriptedChatModel(handler=versioned_handler(stop_at=1)),
            checkpointer=InMemorySaver(),
        )
        config = {"configurable": {"thread_id": "t"}}
        graph.invoke({"question": "q", "answer": "v0"}, config)
        graph.invoke({"question": "q2", "answer": "v0"}, config)
        state = ChainState.model_validate(graph.get_state(config).values)
        assert [a.text for a in state.chain] == ["v0", "v1"], state.chain
        assert state.question == "q2"
        print("OK", len(state.judgments))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**_environ(), "LANGGRAPH_STRICT_MSGPACK": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "OK 4"
    assert "unregistered" not in result.stderr.lower()
    assert "blocked" not in result.stderr.lower()


def _environ() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("LANGSMITH")}
