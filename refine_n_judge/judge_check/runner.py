"""Each labelled pair through the graph's own judge node, in both directions.

A direction is the state the loop is in when a refinement waits for the judge: the chain
holds the previous answer, `candidate` the refinement. It runs through a one-node graph
made of the real `nodes.judge.judge` node (same prompts, same swapped calls, same
decision rule, same usage records), so what is measured is what `curate` would decide.
The two directions of a pair run one after the other: with `--cache` the second one
replays the first one's identical judge prompts (pointwise scores, pairwise orders) from
the cache instead of paying for them again.

Pairs stream through `concurrency` workers from a bounded queue, as in `curate`; each
finished pair is one line of judgments.jsonl, written before the next is taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graph.sync_bridge import sync_and_async_node
from nodes.context import Context
from nodes.judge import judge
from nodes.models import ModelProvider
from nodes.state import Answer, ChainState
from refine_n_judge.curate.errors import InputRowError
from refine_n_judge.curate.progress import Counters, Reporter
from refine_n_judge.curate.records import FailureRow
from refine_n_judge.curate.runner import failure_from_input
from refine_n_judge.judge_check.readers import LabelledPair, ReadPair
from refine_n_judge.judge_check.records import DirectionName, DirectionResult, PairResult
from refine_n_judge.judge_check.store import ResultsDir

GRAPH_NAME = "judge_check"
_DONE = None  # queue sentinel


def build_judge_graph(models: ModelProvider) -> CompiledStateGraph[Any, Any, Any, Any]:
    """START -> judge -> END, with the loop's judge node and model provider."""
    builder = StateGraph(ChainState, context_schema=Context)
    builder.add_node("judge", sync_and_async_node(judge, "judge", models=models))
    builder.add_edge(START, "judge")
    builder.add_edge("judge", END)
    return builder.compile(name=GRAPH_NAME)


def direction_state(
    *,
    item_id: str,
    question: str,
    reference: str | None,
    previous: str,
    refinement: str,
) -> ChainState:
    """The loop's state at the judge step: `refinement` is the first refinement of
    `previous`, which came with the data."""
    return ChainState(
        id=item_id,
        question=question,
        reference=reference,
        chain=[Answer(text=previous, iteration=0, model="input", role="initial")],
        candidate=Answer(text=refinement, iteration=1, model="input", role="refiner"),
        iteration=1,
    )


async def judge_direction(
    graph: Any, state: ChainState, ctx: Context, *, name: str
) -> DirectionResult:
    """One direction through the judge node; an exception is kept in the result."""
    started = time.monotonic()
    config = RunnableConfig(
        run_name=f"judge-check:{state.id}:{name}",
        tags=["judge-check", f"direction:{name}"],
        metadata={"item_id": state.id, "direction": name},
    )
    try:
        result = await graph.ainvoke(state, context=ctx, config=config)
        return DirectionResult(
            state=ChainState.model_validate(result), seconds=round(time.monotonic() - started, 3)
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug or a bad setting: the pair becomes a failure row
        return DirectionResult(
            error=f"{type(exc).__name__}: {exc}", seconds=round(time.monotonic() - started, 3)
        )


def pair_states(pair: LabelledPair) -> dict[DirectionName, ChainState]:
    """The two directions of a pair: a as the refinement of b, and b as that of a."""
    common = {"item_id": pair.id, "question": pair.question, "reference": pair.reference}
    return {
        "a_refines_b": direction_state(**common, previous=pair.b, refinement=pair.a),
        "b_refines_a": direction_state(**common, previous=pair.a, refinement=pair.b),
    }


async def judge_pair(graph: Any, pair: LabelledPair, ctx: Context) -> PairResult:
    """Both directions, one after the other (see the module docstring)."""
    started = time.monotonic()
    done = {
        name: await judge_direction(graph, state, ctx, name=name)
        for name, state in pair_states(pair).items()
    }
    return pair_result(pair, done, seconds=round(time.monotonic() - started, 3))


def pair_result(
    pair: LabelledPair, directions: dict[DirectionName, DirectionResult], *, seconds: float
) -> PairResult:
    """The record of a pair judged in both directions."""
    return PairResult(
        id=pair.id,
        source=pair.source,
        line=pair.line,
        label=pair.label,
        annotators=pair.annotators,
        has_sides=pair.has_sides,
        chars_a=len(pair.a),
        chars_b=len(pair.b),
        a_refines_b=directions["a_refines_b"],
        b_refines_a=directions["b_refines_a"],
        seconds=seconds,
    )


def failure_of_pair(pair: LabelledPair, result: PairResult) -> FailureRow:
    """The failures.jsonl row of a pair whose judge run raised."""
    error = result.a_refines_b.error or result.b_refines_a.error or "no decision"
    return FailureRow(
        id=pair.id,
        item_id=pair.id,
        stage="judge",
        kind="exception",
        reason=error,
        source=pair.source,
        line=pair.line,
    )


@dataclass
class PairCounters(Counters):
    """`curate`'s live counts, shown with the figures a judge check has: how many better
    and worse answers were accepted so far (labelled pairs judged in this run)."""

    better_accepted: int = 0
    worse_accepted: int = 0
    labelled: int = 0

    def add(self, result: PairResult) -> None:
        if result.label == "tie":
            return
        self.labelled += 1
        self.better_accepted += result.better_refines_worse.accepted
        self.worse_accepted += result.worse_refines_better.accepted

    def line(self, *, with_done: bool = True) -> str:
        done = f"{self.completed}" + (f"/{self.total}" if self.total is not None else "")
        parts = [f"pairs {done}"] if with_done else []
        parts += [
            f"failed {self.failed}",
            f"better accepted {self.better_accepted}/{self.labelled}",
            f"worse accepted {self.worse_accepted}/{self.labelled}",
            f"{self.elapsed / self.processed:.1f} s/pair" if self.processed else "- s/pair",
        ]
        eta = self.eta_seconds
        if eta is not None:
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return " · ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            **super().as_dict(),
            "better_accepted": self.better_accepted,
            "worse_accepted": self.worse_accepted,
            "labelled": self.labelled,
        }


@dataclass
class PairFilter:
    """Which labelled pairs to judge."""

    unanimous: bool = False
    no_ties: bool = False
    limit: int | None = None

    def keeps(self, pair: LabelledPair) -> bool:
        if self.no_ties and pair.label == "tie":
            return False
        return not (self.unanimous and not pair.unanimous)

    def count(self, rows: Iterable[ReadPair]) -> int:
        """How many pairs of `rows` this filter selects (the progress bar's total)."""
        kept = sum(1 for row in rows if isinstance(row, LabelledPair) and self.keeps(row))
        return kept if self.limit is None else min(kept, self.limit)


class JudgeCheckRunner:
    """Judges every pair not already in the results directory, exactly once."""

    def __init__(
        self,
        graph: Any,
        context: Context,
        results: ResultsDir,
        done: set[str],
        counters: PairCounters,
        reporter: Reporter,
        *,
        concurrency: int,
        selection: PairFilter,
        on_result: Callable[[PairResult], None] | None = None,
    ) -> None:
        self.graph = graph
        self.context = context
        self.results = results
        self.done = done
        self.counters = counters
        self.reporter = reporter
        self.concurrency = concurrency
        self.selection = selection
        self.on_result = on_result
        self.filtered = 0
        self.selected = 0

    async def run(self, rows: Iterable[ReadPair]) -> None:
        """Judge the selected pairs; returns when every one is written."""
        queue: asyncio.Queue[LabelledPair | None] = asyncio.Queue(maxsize=2 * self.concurrency)
        workers = [
            asyncio.create_task(self._worker(queue), name=f"judge-check-{n}")
            for n in range(self.concurrency)
        ]
        try:
            await self._produce(rows, queue)
            for _ in workers:
                await queue.put(_DONE)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _produce(
        self, rows: Iterable[ReadPair], queue: asyncio.Queue[LabelledPair | None]
    ) -> None:
        for row in rows:
            if isinstance(row, InputRowError):
                self._input_error(row)
                continue
            if not self.selection.keeps(row):
                self.filtered += 1
                continue
            if self.selection.limit is not None and self.selected >= self.selection.limit:
                break
            self.selected += 1  # done pairs count towards --limit: a resume judges the same set
            if row.id in self.done:
                self.counters.skipped += 1
                continue
            await queue.put(row)

    def _input_error(self, error: InputRowError) -> None:
        key = error.location
        if key in self.done:
            self.counters.skipped += 1
            return
        self.results.write_failure(failure_from_input(error))
        self.done.add(key)
        self.counters.failed += 1
        self.counters.input_errors += 1
        self.reporter.input_error(error)

    async def _worker(self, queue: asyncio.Queue[LabelledPair | None]) -> None:
        while True:
            pair = await queue.get()
            if pair is _DONE:
                return
            result = await judge_pair(self.graph, pair, self.context)
            tokens = result.a_refines_b.usage() + result.b_refines_a.usage()
            if result.failed:
                failure = failure_of_pair(pair, result)
                self.results.write_failure(failure)
                self.counters.failed += 1
                status, extra = "failed", {"reason": failure.reason}
            else:
                self.results.write_result(result)
                self.counters.add(result)
                if self.on_result is not None:
                    self.on_result(result)
                self.counters.succeeded += 1
                status = "judged"
                extra = {
                    "label": pair.label,
                    "a_refines_b": result.a_refines_b.outcome,
                    "b_refines_a": result.b_refines_a.outcome,
                }
            self.done.add(pair.id)
            self.counters.tokens += tokens.input_tokens + tokens.output_tokens
            self.reporter.item(
                self.counters,
                {"id": pair.id, "status": status, "seconds": result.seconds, **extra},
            )
