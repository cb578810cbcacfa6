"""The runner with a stand-in graph: bounded read-ahead and concurrency, per-item trace
config, failures of every origin written once, duplicates and resumed ids skipped."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodes.context import Context
from nodes.state import Answer, ChainState, Failure
from refine_n_judge.curate.errors import InputRowError
from refine_n_judge.curate.outputs import OutputDir
from refine_n_judge.curate.progress import Counters, QuietReporter
from refine_n_judge.curate.records import FailureRow, InputItem
from refine_n_judge.curate.report import Tally
from refine_n_judge.curate.runner import CurateRunner, RunPlan

CONCURRENCY = 4


class StandInGraph:
    """Answers each item after yielding to the loop; records configs and the peak in flight."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []
        self.in_flight = 0
        self.peak = 0

    async def ainvoke(self, payload: dict[str, Any], *, context: Any, config: Any) -> Any:
        self.configs.append(config)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            if payload["question"] == "explode":
                raise RuntimeError("a bug in a node")
            chain = [Answer(text="a0", iteration=0, model="input", role="initial")]
            if payload["question"] == "model fails":
                return ChainState(
                    **payload,
                    chain=chain,
                    failures=[Failure(stage="feedback", model="m", reason="timeout", raw="x")],
                    stop_reason="model_error",
                ).model_dump()
            chain.append(Answer(text="a1", iteration=1, model="m", role="refiner"))
            return ChainState(**payload, chain=chain, stop_reason="rejected").model_dump()
        finally:
            self.in_flight -= 1


def item(n: int, question: str = "q") -> InputItem:
    return InputItem(id=f"i{n}", question=question, answer="a0", source="in.jsonl", line=n)


def make_runner(tmp_path: Path, done: set[str] | None = None) -> tuple[CurateRunner, StandInGraph]:
    graph = StandInGraph()
    outputs = OutputDir(tmp_path)
    outputs.create()
    outputs.open()
    plan = RunPlan(graph=graph, context=Context(), concurrency=CONCURRENCY, dpo_pairs="adjacent")
    runner = CurateRunner(plan, outputs, Tally(), done or set(), Counters(), QuietReporter())
    return runner, graph


def test_read_ahead_and_items_in_flight_stay_bounded(tmp_path: Path) -> None:
    runner, graph = make_runner(tmp_path)
    pulled = 0
    worst_lead = 0

    def rows() -> Iterator[InputItem]:
        nonlocal pulled, worst_lead
        for n in range(500):
            pulled += 1
            finished = runner.counters.processed
            worst_lead = max(worst_lead, pulled - finished)
            yield item(n)

    asyncio.run(runner.run(rows()))
    runner.outputs.close()
    assert runner.counters.succeeded == 500
    assert graph.peak == CONCURRENCY
    # queue (2 x concurrency) + in flight (concurrency) + the row being put
    assert worst_lead <= 3 * CONCURRENCY + 1


def test_each_item_is_traced_with_its_id(tmp_path: Path) -> None:
    runner, graph = make_runner(tmp_path)
    asyncio.run(runner.run([item(1), item(2)]))
    runner.outputs.close()
    configs = sorted(graph.configs, key=lambda c: c["run_name"])
    assert [c["run_name"] for c in configs] == ["curate:i1", "curate:i2"]
    assert [c["metadata"]["item_id"] for c in configs] == ["i1", "i2"]
    assert configs[0]["metadata"]["line"] == 1 and "curate" in configs[0]["tags"]


def test_failures_of_every_origin_are_written_once(tmp_path: Path) -> None:
    runner, _ = make_runner(tmp_path, done={"i9", "in.jsonl:8"})
    bad_row = InputRowError("is missing", source="in.jsonl", line=5, field="question")
    resumed_bad_row = InputRowError("is missing", source="in.jsonl", line=8, field="question")
    rows: list[Any] = [
        item(1),
        item(2, "explode"),
        item(3, "model fails"),
        bad_row,
        item(1),  # duplicate id
        item(9),  # done in an earlier run
        resumed_bad_row,  # recorded in an earlier run
    ]
    asyncio.run(runner.run(rows))
    runner.outputs.close()
    failures = {
        row.id: row
        for row in map(
            FailureRow.model_validate_json, runner.outputs.failures.read_text().splitlines()
        )
    }
    assert set(failures) == {"i2", "i3", "in.jsonl:5", "in.jsonl:1"}
    assert (failures["i2"].stage, failures["i2"].kind) == ("graph", "exception")
    assert "RuntimeError: a bug in a node" in failures["i2"].reason
    assert (failures["i3"].stage, failures["i3"].raw, failures["i3"].kind) == (
        "feedback",
        "x",
        "model_error",
    )
    assert failures["i3"].state is not None and failures["i3"].state.chain[0].text == "a0"
    assert failures["in.jsonl:1"].kind == "duplicate_id"
    assert failures["in.jsonl:1"].item_id == "i1"
    assert runner.outputs.chains.read_text().count("\n") == 1
    assert (runner.counters.skipped, runner.counters.failed) == (2, 4)
