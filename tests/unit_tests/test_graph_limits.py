"""The graph within LangGraph's limits: the caller's recursion limit ends a chain with its
own stop reason, an interrupted sync run stops paying for calls, public APIs only."""

from __future__ import annotations

import ast
import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from langgraph.errors import GraphRecursionError
from pydantic import Field

from graph import ChainState, build_graph
from tests.support.chat_models import (
    ScriptedChatModel,
    judge_json,
    refine_json,
    tag,
    versioned_handler,
)
from tests.support.scripts import version

ROOT = Path(__file__).resolve().parents[2]
OWN_PACKAGES = {
    "graph",
    "nodes",
    "prompts",
    "endpoints",
    "refine_n_judge",
    "evals",
    "tests",
    "benchmarks",
}


def test_the_graph_keeps_langgraphs_default_recursion_limit() -> None:
    graph = build_graph(refiner=ScriptedChatModel(handler=versioned_handler(stop_at=1)))
    assert "recursion_limit" not in (graph.config or {})


@pytest.mark.parametrize("alternate", [False, True], ids=["refiner", "with-alternate"])
@pytest.mark.parametrize("limit", range(3, 26))
def test_a_small_recursion_limit_ends_the_chain_instead_of_raising(
    limit: int, alternate: bool
) -> None:
    """Limits from 3 (the least that runs initial_answer and ends the chain) up; with an
    alternate refiner every other candidate is rejected first, so its extra try runs too."""
    primary = versioned_handler(stop_at=100)

    def rejecting(role: str, prompt: str) -> object:  # the primary's refinements are "x<N>"
        reply = primary(role, prompt)
        return (
            refine_json("x" + str(version(tag(prompt, "answer")) + 1))
            if role == "refine"
            else reply
        )

    def judging(role: str, prompt: str) -> object:  # the higher v<N> wins; an x<N> never does
        a, b = tag(prompt, "answer_A"), tag(prompt, "answer_B")
        if a.startswith("x") or b.startswith("x"):
            return judge_json("B" if a.startswith("x") else "A")
        return primary(role, prompt)

    graph = build_graph(
        refiner=ScriptedChatModel(handler=rejecting if alternate else primary),
        judges=[ScriptedChatModel(handler=judging, model_name="judge")],
        alternate_refiner=(
            ScriptedChatModel(handler=primary, model_name="alt") if alternate else None
        ),
    )
    try:
        result = graph.invoke(
            {"question": "q", "answer": "v0"},
            {"recursion_limit": limit},
            context={"max_iterations": 100},
        )
    except GraphRecursionError as exc:  # pragma: no cover - the failure this test is for
        pytest.fail(f"recursion_limit={limit} raised {exc}")
    state = ChainState.model_validate(result)
    assert state.stop_reason == "step_limit"
    assert state.chain[0].text == "v0"
    # every accepted step is kept, and each has its decision
    assert [a.text for a in state.chain] == [f"v{i}" for i in range(len(state.chain))]
    if alternate and len(state.chain) > 1:
        assert {a.role for a in state.chain[1:]} == {"alternate_refiner"}
    assert sum(d.accepted for d in state.decisions) == len(state.chain) - 1


def test_a_large_limit_still_runs_the_papers_ten_iterations() -> None:
    graph = build_graph(refiner=ScriptedChatModel(handler=versioned_handler(stop_at=100)))
    state = ChainState.model_validate(
        graph.invoke({"question": "q", "answer": "v0"}, {"recursion_limit": 100})
    )
    assert len(state.chain) == 11 and state.stop_reason == "max_iterations"


class SlowModel(ScriptedChatModel):
    """Answers after `delay` seconds; records calls started, and cancelled mid-flight."""

    started: list[str] = Field(default_factory=list)
    cancelled: list[str] = Field(default_factory=list)
    finished: list[str] = Field(default_factory=list)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):  # type: ignore[no-untyped-def]
        self.started.append("call")
        try:
            result = await super()._agenerate(messages, stop, run_manager, **kwargs)
        except asyncio.CancelledError:
            self.cancelled.append("call")
            raise
        self.finished.append("call")
        return result


def test_interrupting_a_sync_run_cancels_its_model_call() -> None:
    """Ctrl-C during `graph.invoke` (SIGINT to this process while the first model call is
    in flight) raises KeyboardInterrupt here and cancels the call on the background loop."""
    model = SlowModel(handler=versioned_handler(stop_at=1), delay=30.0, cancelled=[], finished=[])
    graph = build_graph(refiner=model)

    def interrupt_when_the_call_started() -> None:
        deadline = time.monotonic() + 10
        while not model.started and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # well inside the call
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_the_call_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        graph.invoke({"question": "q", "answer": "v0"})
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 5
    while not model.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert model.started == ["call"]
    assert model.cancelled == ["call"]
    assert model.finished == []


def _private_imports(path: Path) -> list[str]:
    """`module._x` or `from module import _x` of another package in one file."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        modules: list[tuple[str, list[str]]] = []
        if isinstance(node, ast.Import):
            modules = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [(node.module, [alias.name for alias in node.names])]
        for module, names in modules:
            if module.split(".")[0] in OWN_PACKAGES:
                continue
            private_parts = [p for p in module.split(".") if _private(p)]
            private_names = [n for n in names if _private(n)]
            if private_parts or private_names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module} {names}")
    return found


def _private(name: str) -> bool:
    """`_x` is private; `__future__`-style dunder names are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_api_of_another_package_is_imported() -> None:
    files = [
        p
        for folder in sorted(OWN_PACKAGES)
        if (ROOT / folder).is_dir()
        for p in (ROOT / folder).rglob("*.py")
    ]
    assert len(files) > 50
    offenders = [hit for path in files for hit in _private_imports(path)]
    assert offenders == []


def test_the_private_import_check_catches_one(tmp_path: Path) -> None:
    sample = ROOT / "tests" / "unit_tests" / "_private_import_sample.py"
    sample.write_text(
        "from langgraph._internal._runnable import RunnableCallable\n"
        "from langchain.chat_models.base import _BUILTIN_PROVIDERS\n"
        "import langgraph._internal\n"
        "from graph._private import fine\n",
        encoding="utf-8",
    )
    try:
        hits = _private_imports(sample)
    finally:
        sample.unlink()
    assert [h.split(": ", 1)[1] for h in hits] == [
        "langgraph._internal._runnable ['RunnableCallable']",
        "langchain.chat_models.base ['_BUILTIN_PROVIDERS']",
        "langgraph._internal []",
    ]
