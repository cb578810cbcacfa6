"""The curation loop: items stream from the inputs through the graph into the outputs.

One event loop; `concurrency` workers take items from a bounded queue, so however large
the input, at most `2 * concurrency` items are read ahead and `concurrency` are in flight:
memory stays flat. Each finished item is written (exports, then its commit row) and
flushed before the worker takes the next one. A model that fails never raises here (the
graph records it); anything that escapes `graph.ainvoke` is caught per item and becomes a
failure row with stage `graph`, so one item never stops the others.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import RunnableConfig

from nodes.context import Context
from nodes.state import ChainState
from refine_n_judge.curate.endpoint_health import (
    CONNECTION_FAILURES_TO_STOP,
    STALL_NOTICE_SECONDS,
    EndpointWatch,
    endpoint_trouble,
    stop_message,
)
from refine_n_judge.curate.errors import InputRowError
from refine_n_judge.curate.exports import DpoPairs, dpo_rows, sft_row
from refine_n_judge.curate.outcomes import FAILED_STOP_REASONS, is_failure
from refine_n_judge.curate.outputs import OutputDir
from refine_n_judge.curate.progress import Counters, Reporter
from refine_n_judge.curate.readers import ReadResult
from refine_n_judge.curate.records import FailureRow, InputItem
from refine_n_judge.curate.report import Tally

_DONE = None  # queue sentinel


def input_error_key(error: InputRowError) -> str:
    """The record key of a bad input row: `<file>:<line>` (the file alone if unreadable)."""
    return error.location


def failure_from_input(error: InputRowError) -> FailureRow:
    """The failures.jsonl row of a bad input row."""
    return FailureRow(
        id=input_error_key(error),
        item_id=error.item_id,
        stage="input",
        kind=error.kind,
        reason=error.describe(),
        raw=error.raw,
        source=error.source,
        line=error.line,
        field=error.field,
    )


def duplicate_id_error(item: InputItem) -> InputRowError:
    """The input error of a row that repeats an earlier row's id (both engines)."""
    return InputRowError(
        f"repeats the id {item.id!r} of an earlier row; give each row its own id "
        "(or drop the duplicate)",
        source=item.source,
        line=item.line,
        field="id",
        item_id=item.id,
        kind="duplicate_id",
    )


def failure_from_state(item: InputItem, state: ChainState) -> FailureRow:
    """The failures.jsonl row of an item the models could not finish (chain attached)."""
    last = state.failures[-1] if state.failures else None
    return FailureRow(
        id=item.id,
        item_id=item.id,
        stage=last.stage if last is not None else "graph",
        kind=state.stop_reason or "model_error",
        reason=last.reason if last is not None else f"stopped with {state.stop_reason}",
        model=last.model if last is not None else None,
        raw=last.raw if last is not None else None,
        iteration=last.iteration if last is not None else None,
        source=item.source,
        line=item.line,
        state=state,
    )


def failure_from_exception(item: InputItem, exc: BaseException) -> FailureRow:
    """The failures.jsonl row of an item whose graph run raised."""
    return FailureRow(
        id=item.id,
        item_id=item.id,
        stage="graph",
        kind="exception",
        reason=f"{type(exc).__name__}: {exc}",
        source=item.source,
        line=item.line,
    )


@dataclass
class RunPlan:
    """What the runner needs besides the items."""

    graph: Any
    context: Context
    concurrency: int
    dpo_pairs: DpoPairs
    limit: int | None = None
    endpoint: str = "the model endpoint"
    """How the endpoint is named when the run stops for it (no secrets)."""
    stall_limit: float | None = None
    """Seconds without a model reply after which the run stops (None: never)."""


class CurateRunner:
    """Runs the items of one invocation and records every one of them exactly once."""

    def __init__(
        self,
        plan: RunPlan,
        outputs: OutputDir,
        tally: Tally,
        done: set[str],
        counters: Counters,
        reporter: Reporter,
    ) -> None:
        self.plan = plan
        self.outputs = outputs
        self.tally = tally
        self.done = done
        self.counters = counters
        self.reporter = reporter
        self.seen: set[str] = set()
        self.queued = 0
        self.watch = EndpointWatch()
        self.stop_reason: str | None = None
        """Set when the endpoint stopped the run (see `endpoint_health`)."""
        self._held: list[tuple[InputItem, ChainState, float]] = []
        self._main: asyncio.Task[None] | None = None

    async def run(self, rows: Iterable[ReadResult]) -> None:
        """Process every row not already done; returns when all are written, or when the
        endpoint stopped the run (`stop_reason`; the items in flight are not written)."""
        self._main = asyncio.ensure_future(self._run_all(rows))
        watchdog = asyncio.ensure_future(self._watch_endpoint())
        try:
            await self._main
        except asyncio.CancelledError:
            if self.stop_reason is None:  # SIGINT/SIGTERM: wind the workers down, then stop
                self._main.cancel()
                await asyncio.gather(self._main, return_exceptions=True)
                raise
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _run_all(self, rows: Iterable[ReadResult]) -> None:
        queue: asyncio.Queue[InputItem | None] = asyncio.Queue(maxsize=2 * self.plan.concurrency)
        workers = [
            asyncio.create_task(self._worker(queue), name=f"curate-worker-{n}")
            for n in range(self.plan.concurrency)
        ]
        try:
            await self._produce(rows, queue)
            for _ in workers:
                await queue.put(_DONE)
            await asyncio.gather(*workers)
            self._release_held()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _stop(self, reason: str) -> None:
        """Stop the run for the endpoint: nothing more is started or written."""
        if self.stop_reason is None:
            self.stop_reason = reason
            if self._main is not None:
                self._main.cancel()

    async def _watch_endpoint(self) -> None:
        """Show a stall in the progress line; stop the run when it lasts too long."""
        while True:
            await asyncio.sleep(1.0)
            waiting = self.watch.waiting_seconds()
            self.counters.stalled_seconds = waiting if waiting >= STALL_NOTICE_SECONDS else 0.0
            self.reporter.tick(self.counters)
            limit = self.plan.stall_limit
            if limit is not None and waiting >= limit:
                self._stop(
                    f"no reply from the endpoint {self.plan.endpoint} for {waiting:.0f} s "
                    f"(a run stops after {limit:g} s without one: twice --request-timeout)"
                )
                return

    def _release_held(self) -> None:
        """Items held back after a connection failure are the item's own trouble after all:
        a failure, or a partial chain when refinements were accepted before it."""
        held, self._held = self._held, []
        for item, state, started in held:
            if is_failure(state):
                self._record_failure(item, failure_from_state(item, state), state, started)
            else:
                self._record_chain(item, state, started)

    async def _produce(
        self, rows: Iterable[ReadResult], queue: asyncio.Queue[InputItem | None]
    ) -> None:
        for row in rows:
            if self.stop_reason is not None:
                return
            if isinstance(row, InputRowError):
                self._record_input_error(row)
                continue
            if row.id in self.seen:
                self._record_input_error(duplicate_id_error(row))
                continue
            self.seen.add(row.id)
            if row.id in self.done:
                self.counters.skipped += 1
                continue
            if self.plan.limit is not None and self.queued >= self.plan.limit:
                break
            self.queued += 1
            await queue.put(row)

    def _record_input_error(self, error: InputRowError) -> None:
        record_input_error(self, error)

    async def _worker(self, queue: asyncio.Queue[InputItem | None]) -> None:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            started = time.monotonic()
            try:
                result = await self.plan.graph.ainvoke(
                    item.graph_input(), context=self.plan.context, config=self._config(item)
                )
                state = ChainState.model_validate(result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a bad setting: one failure row, the run goes on
                self._record_failure(item, failure_from_exception(item, exc), None, started)
                continue
            if self.stop_reason is not None:
                return
            ended_by_failure = state.stop_reason in FAILED_STOP_REASONS or not state.chain
            trouble = endpoint_trouble(state) if ended_by_failure else None
            if self.watch.item_ended(trouble):
                self._stop(
                    f"{CONNECTION_FAILURES_TO_STOP} items in a row could not reach the "
                    f"endpoint: {stop_message(state, self.plan.endpoint)}"
                )
                return
            if trouble == "fatal":
                self._stop(stop_message(state, self.plan.endpoint))
                return
            if trouble == "connection":  # written only if the endpoint turns out to live
                self._held.append((item, state, started))
            elif is_failure(state):
                self._record_failure(item, failure_from_state(item, state), state, started)
            else:
                self._release_held()
                self._record_chain(item, state, started)

    def _config(self, item: InputItem) -> RunnableConfig:
        """Per-item trace settings (LangSmith runs carry the item id) and the endpoint
        watch."""
        return RunnableConfig(
            run_name=f"curate:{item.id}",
            tags=["curate"],
            metadata={"item_id": item.id, "source": item.source, "line": item.line},
            callbacks=[self.watch],
        )

    def _record_chain(self, item: InputItem, state: ChainState, started: float) -> None:
        sft = sft_row(state)
        pairs = dpo_rows(state, self.plan.dpo_pairs)
        self.outputs.write_chain(state, sft, pairs)
        self.done.add(item.id)
        self.tally.add_chain(state, sft_rows=int(sft is not None), dpo_rows=len(pairs))
        self.counters.succeeded += 1
        self.counters.accepted_refinements += state.accepted_refinements
        self._finish_item(item, state, "succeeded", started, dpo=len(pairs))

    def _record_failure(
        self, item: InputItem, row: FailureRow, state: ChainState | None, started: float
    ) -> None:
        self.outputs.write_failure(row)
        self.done.add(item.id)
        self.tally.add_failure(row)
        self.counters.failed += 1
        self._finish_item(item, state, "failed", started, reason=row.reason)

    def _finish_item(
        self,
        item: InputItem,
        state: ChainState | None,
        status: str,
        started: float,
        **extra: Any,
    ) -> None:
        tokens = 0
        if state is not None:
            tokens = sum(
                u.input_tokens + u.output_tokens
                for nodes in state.usage.values()
                for u in nodes.values()
            )
        self.counters.tokens += tokens
        self.reporter.item(
            self.counters,
            {
                "id": item.id,
                "status": status,
                "stop_reason": None if state is None else state.stop_reason,
                "accepted_refinements": 0 if state is None else state.accepted_refinements,
                "tokens": tokens,
                "seconds": round(time.monotonic() - started, 3),
                **extra,
            },
        )


def record_input_error(engine: Any, error: InputRowError) -> None:
    """A bad input row to failures.jsonl, once per key across reruns (both engines).

    `engine` has the run's `done` ids, `outputs`, `tally`, `counters` and `reporter`.
    """
    key = input_error_key(error)
    if key in engine.done:
        engine.counters.skipped += 1
        return
    row = failure_from_input(error)
    engine.outputs.write_failure(row)
    engine.done.add(key)
    engine.tally.add_failure(row)
    engine.counters.failed += 1
    engine.counters.input_errors += 1
    engine.reporter.input_error(error)
