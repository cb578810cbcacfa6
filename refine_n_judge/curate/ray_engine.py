"""`curate --engine ray`: the same graph run by Ray Data actors, locally or on a cluster.

The pipeline (measured on ray 2.60, see issue 7)::

    stage (driver)  ->  read_json  ->  map_batches(CurateActor, concurrency=N)  ->  write_json
    inputs, ids,        Arrow           each actor: the graph compiled once,        one shard
    input errors        reader          many graph.ainvoke under a semaphore        per block
                                                        |
    merge (driver): shards -> chains.jsonl, sft.jsonl, dpo.jsonl, failures.jsonl, run.json

Staging: the driver reads every input with the single-process engine's readers, so items
get the same stable ids and bad rows the same failure rows, and writes the items still to
do to `OUT/.ray_work/input.jsonl` (`--limit` applies here). Ray reads that file with its
Arrow JSON reader (the pandas `lines=True` path is avoided).

Actors: `CurateActor.__call__` is a coroutine, so Ray runs it on one event loop per actor
process for the actor's whole life (langchain-openai binds its cached async HTTP client to
the first loop it ran on; see `event_loop.py`). Ray runs at most 4 batches of an async actor
at once, so the batch size is half the items in flight per actor (>= in-flight / 4, as the
ceiling needs) and a semaphore keeps exactly `in_flight_per_actor` graph runs going.
Anything a graph run raises becomes that row's failure row: by default one exception fails
the whole Ray job, and with `max_errored_blocks` Ray would drop the whole block. An actor
process that dies is restarted by Ray (`max_restarts=-1`) and its block retried. Ray Data
places the actor pool with its default `SPREAD` strategy (`DataContext.scheduling_strategy`;
passing one to `map_batches` is deprecated in 2.60), so on a cluster the actors go to every
node with room; each asks for a quarter of a logical CPU (see `ray_cluster`). `--rps` is
one token bucket for all of them, a named actor each actor's LangChain rate limiter asks
(`ray_rate_limit`).

A failed pipeline (a node lost with blocks Ray cannot rebuild, for one) is not the end of
the run: its shards are merged and the staged items not written yet run again, up to
`MAX_ATTEMPTS` times; after that the run stops as `failed` and a rerun goes on from there.

Exactly once, and why not `CheckpointConfig`: resume is the project's own, over the output
shards. Ray Data's checkpoint API is beta, keeps its own record next to the outputs (so
the two can disagree after a kill between them) and needed a CPU and a GiB of headroom for
its filter. Here the output *is* the record: every shard row carries the item id, and the
merge writes an id only if the directory does not hold it yet (the first row of an id
wins). So a block retried after an actor died, or a shard left by a killed driver (merged
at the start of the next run, before staging), can never double an item, and a torn last
line of a shard is skipped, so that item is simply redone. Shards are deleted only after
they are merged; a kill during the merge is repaired by the single-process engine's own
resume scan (torn lines, uncommitted exports), and the merge then runs again.

Loopback: a local Ray binds every interface by default; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`
(read by Ray when it is imported) is the setting that kept every socket on 127.0.0.1 here,
so local mode sets it before importing Ray, and always calls `ray.init(address="local")`
(a stale cluster file otherwise breaks `num_cpus`) with a logical CPU count that leaves the
pipeline room. Joining a cluster (`--ray-address`, `RAY_ADDRESS`, `auto`) changes nothing
of the cluster's and never stops it (see `ray_cluster`).

Imports: Ray, Ray Data, pyarrow and the modules built on them (`ray_cluster`,
`ray_rate_limit`) are the heavy optional `ray` extra, imported inside the functions that use
them: this module loads without the extra (`curate` imports it for every run), and the
loopback setting above must be in the environment before Ray is first imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graph.builder import build_graph
from nodes.context import Context
from nodes.state import ChainState
from refine_n_judge.curate.errors import CurateError, InputRowError, SettingsError
from refine_n_judge.curate.exports import DpoPairs, dpo_rows, sft_row
from refine_n_judge.curate.lifecycle import (
    EXIT_INTERRUPTED,
    CheckedRun,
    finished_code,
    iter_all_inputs,
    resume,
    start_message,
    summary,
    total_rows,
)
from refine_n_judge.curate.options import CurateOptions
from refine_n_judge.curate.outcomes import is_failure
from refine_n_judge.curate.outputs import OutputDir, iter_lines
from refine_n_judge.curate.progress import Counters, Reporter, make_reporter
from refine_n_judge.curate.records import FailureRow, InputItem
from refine_n_judge.curate.report import Tally
from refine_n_judge.curate.run_settings import DEFAULT_CONCURRENCY
from refine_n_judge.curate.runner import (
    duplicate_id_error,
    failure_from_exception,
    failure_from_state,
    record_input_error,
)

WORK_DIR = ".ray_work"
"""Inside the output directory (shared storage on a cluster): the staged input and the
shards of runs not merged yet. Removed after a complete merge."""
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_ATTEMPTS = 3
"""Pipeline runs per invocation: the first, and two for what a failed one left undone."""
ITEMS_PER_BLOCK = 200
"""Default block size: small blocks spread the work and bound what a retry redoes."""
JSON_BLOCK_BYTES = 64 << 20
"""Arrow's JSON reader needs a whole row in one block (rows can be long)."""
CRASH_MARKER_ENV = "REFINE_N_JUDGE_RAY_CRASH_MARKER"
"""Fault injection for tests: `PATH[:N]` makes one actor process `os._exit` after its N-th
finished item (default 1), once: the file PATH is created first and stops any repeat."""
_STAGED_COLUMNS = ("id", "question", "answer", "reference", "source", "line")


# --------------------------------------------------------------------------- the actor


class CurateActor:
    """A Ray Data actor: the graph compiled once, many items through it concurrently."""

    def __init__(
        self,
        context: dict[str, Any],
        in_flight: int,
        rate_bucket: str | None = None,
        monitor: str | None = None,
        crash_marker: str | None = None,
    ) -> None:
        """`rate_bucket` and `monitor` name the run's shared actors (None: not used)."""
        limiter = None
        if rate_bucket is not None:
            # the `ray` extra (as every Ray import here: this module loads without it)
            from refine_n_judge.curate.ray_rate_limit import SharedRateLimiter

            limiter = SharedRateLimiter(rate_bucket)
        self.context = Context.model_validate(context)
        self.graph = build_graph(rate_limiter=limiter)
        self.in_flight = in_flight
        self.finished = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._crash_path, self._crash_after = _parse_crash_marker(crash_marker)
        self._monitor: Any = None
        self._node = ""  # "IP/node id": which node wrote each row (run.json counts them)
        if monitor is not None:
            import ray  # the `ray` extra

            from refine_n_judge.curate.ray_cluster import MONITOR_NAMESPACE, node_label

            self._monitor = ray.get_actor(monitor, namespace=MONITOR_NAMESPACE)
            self._node = node_label()
            self._monitor.actor_started.remote(self._node, os.getpid())

    async def __call__(self, batch: Any) -> Any:
        """Run a batch (a pyarrow Table of staged items); one output row per item."""
        import pyarrow as pa  # the `ray` extra (Ray Data brings pyarrow)

        if self._semaphore is None:  # made on Ray's actor loop, the one it serves
            self._semaphore = asyncio.Semaphore(self.in_flight)
        rows = batch.to_pylist()
        results = await asyncio.gather(*(self._run_row(row) for row in rows))
        return pa.table(
            {
                "id": [r[0] for r in results],
                "kind": [r[1] for r in results],
                "record": [r[2] for r in results],
                "node": [self._node] * len(results),
            }
        )

    async def _run_row(self, row: dict[str, Any]) -> tuple[str, str, str]:
        """(id, "chain" | "failure", the chains.jsonl or failures.jsonl line) of one item."""
        assert self._semaphore is not None
        async with self._semaphore:
            result = await self._run_item(row)
        self.finished += 1
        if self._monitor is not None:
            self._monitor.item_done.remote(self._node)
        self._maybe_crash()
        return result

    async def _run_item(self, row: dict[str, Any]) -> tuple[str, str, str]:
        item_id = str(row.get("id"))
        try:
            item = InputItem.model_validate(row)
            result = await self.graph.ainvoke(
                item.graph_input(),
                context=self.context,
                config={
                    "run_name": f"curate:{item.id}",
                    "tags": ["curate", "ray"],
                    "metadata": {"item_id": item.id, "source": item.source, "line": item.line},
                },
            )
            state = ChainState.model_validate(result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a bad setting: this row fails, the block goes on
            failed = _fallback_item(row)
            return item_id, "failure", failure_from_exception(failed, exc).to_json_line()
        if is_failure(state):
            return item.id, "failure", failure_from_state(item, state).to_json_line()
        return item.id, "chain", state.to_json_line()

    def _maybe_crash(self) -> None:
        """The test hook of `CRASH_MARKER_ENV`: die once, like a lost node would."""
        if self._crash_path is None or self.finished < self._crash_after:
            return
        try:
            fd = os.open(self._crash_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            self._crash_path = None
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(1)


def _parse_crash_marker(spec: str | None) -> tuple[str | None, int]:
    if not spec:
        return None, 0
    path, _, count = spec.partition(":")
    return path, int(count or 1)


def _fallback_item(row: dict[str, Any]) -> InputItem:
    """An item for a failure row even when the staged row itself is bad."""
    return InputItem(
        id=str(row.get("id")),
        question=str(row.get("question") or ""),
        source=str(row.get("source") or "?"),
        line=int(row.get("line") or 0),
    )


# --------------------------------------------------------------------------- settings


def ray_address(given: str | None) -> str:
    """Where Ray runs: `given` (--ray-address), else RAY_ADDRESS (set inside `ray job
    submit`), else a private local Ray."""
    return given or os.environ.get("RAY_ADDRESS") or "local"


def in_flight_per_actor(given: int | None, concurrency: int | None, actors: int) -> int:
    """`given` (--in-flight-per-actor), else --concurrency (default 16) split across the
    actors."""
    if given is not None:
        return given
    total = concurrency or DEFAULT_CONCURRENCY
    return max(1, math.ceil(total / actors))


def batch_size_for(in_flight: int) -> int:
    """Rows per batch: Ray runs at most 4 batches of an async actor at once, so at least
    in-flight / 4; half of it keeps the semaphore full while a batch's slowest item ends."""
    return max(1, math.ceil(in_flight / 2))


def check_ray_options(address: str, *, cache: Path | None, embedded: bool) -> None:
    """Refuse what the Ray engine cannot do, before anything runs (`embedded`: the run would
    use the embedded model); on a loopback `address`, keep Ray's sockets on it.

    Raises:
        SettingsError: --cache, the embedded model, or Ray not installed.
    """
    if cache is not None:
        raise SettingsError(
            "--cache works with --engine local only (one SQLite file is not shared by actors "
            "on several machines); drop --cache or use --engine local"
        )
    if embedded:
        raise SettingsError(
            "--engine ray needs a model server: pass --base-url (or set "
            "REFINE_N_JUDGE_BASE_URL / OPENAI_API_KEY); the embedded model serves one process"
        )
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if address == "local" or host in LOOPBACK_HOSTS:
        # read by Ray at import: a driver of a cluster on 127.0.0.1 must be on it too (else
        # Ray takes this machine's first address for it and listens on every interface)
        os.environ.update(LOOPBACK_ENV)
    try:
        import ray.data  # noqa: F401 - the `ray` extra
    except ImportError as exc:
        raise SettingsError(
            "--engine ray needs Ray Data: pip install 'refine-n-judge[ray]'"
        ) from exc


# --------------------------------------------------------------------------- staging


class Stager:
    """Writes the items still to do to the staged JSONL; input errors go to failures."""

    def __init__(
        self,
        outputs: OutputDir,
        tally: Tally,
        done: set[str],
        counters: Counters,
        reporter: Reporter,
        limit: int | None,
    ) -> None:
        self.outputs = outputs
        self.tally = tally
        self.done = done
        self.counters = counters
        self.reporter = reporter
        self.limit = limit
        self.seen: set[str] = set()
        self.staged = 0

    def stage(self, rows: Iterator[InputItem | InputRowError], path: Path) -> int:
        """Write the pending items to `path`; how many were written."""
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                if isinstance(row, InputRowError):
                    self._input_error(row)
                    continue
                if row.id in self.seen:
                    self._input_error(duplicate_id_error(row))
                    continue
                self.seen.add(row.id)
                if row.id in self.done:
                    self.counters.skipped += 1
                    continue
                if self.limit is not None and self.staged >= self.limit:
                    break
                self.staged += 1
                handle.write(json.dumps(row.model_dump(include=set(_STAGED_COLUMNS))) + "\n")
        return self.staged

    def _input_error(self, error: InputRowError) -> None:
        record_input_error(self, error)


def restage(staged: Path, done: set[str], path: Path) -> int:
    """Write the staged items not done yet to `path` (for another attempt); how many."""
    kept = 0
    with open(path, "wb") as handle:
        for _, line in iter_lines(staged):
            if json.loads(line)["id"] not in done:
                handle.write(line)
                kept += 1
    return kept


# --------------------------------------------------------------------------- merging


def merge_shards(
    shards: Path,
    outputs: OutputDir,
    tally: Tally,
    done: set[str],
    dpo_pairs: DpoPairs,
    counters: Counters | None = None,
    by_node: Counter[str] | None = None,
) -> int:
    """Append every shard row whose id the directory does not hold yet; rows merged
    (counted in `by_node` under the node that ran them).

    The exports are made from the chain as the single-process engine makes them, so the
    rows are byte for byte what it writes. A torn or unreadable shard line is skipped (its
    item was never merged, so the next run redoes it).
    """
    merged = 0
    if not shards.exists():
        return 0
    for path in sorted(shards.rglob("*.json")):
        for _, line in iter_lines(path):
            try:
                row = json.loads(line)
                item_id, kind, record = str(row["id"]), row["kind"], row["record"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if item_id in done:
                continue
            if kind == "chain":
                state = ChainState.model_validate_json(record)
                sft = sft_row(state)
                pairs = dpo_rows(state, dpo_pairs)
                outputs.write_chain(state, sft, pairs)
                tally.add_chain(state, sft_rows=int(sft is not None), dpo_rows=len(pairs))
                if counters is not None:
                    counters.succeeded += 1
                    counters.accepted_refinements += state.accepted_refinements
            else:
                failure = FailureRow.model_validate_json(record)
                outputs.write_failure(failure)
                tally.add_failure(failure)
                if counters is not None:
                    counters.failed += 1
            done.add(item_id)
            merged += 1
            if by_node is not None:
                by_node[str(row.get("node") or "?")] += 1
    return merged


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RayPlan:
    """What the Ray side of a run is given (made from the options by `curate_on_ray`)."""

    address: str
    """Where Ray runs (see `ray_address`)."""
    actors: int
    in_flight: int
    """Items in flight in each actor (see `in_flight_per_actor`)."""
    blocks: int | None
    """Blocks the input is split into (None: by `ITEMS_PER_BLOCK`)."""
    rps: float | None
    quiet: bool
    context: Context


def run_pipeline(
    plan: RayPlan,
    staged: Path,
    shards: Path,
    n_items: int,
    shared: dict[str, str | None],
) -> None:
    """read_json -> map_batches(CurateActor) -> write_json, on the Ray this process uses.

    `shared` names the run's rate bucket and monitor actors (`CurateActor` arguments).
    """
    # the `ray` extra (Ray Data brings pyarrow)
    import pyarrow as pa
    import pyarrow.json as pajson
    import ray.data

    from refine_n_judge.curate.ray_cluster import ACTOR_CPUS

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = not plan.quiet
    in_flight = plan.in_flight
    blocks = plan.blocks or max(2 * plan.actors, math.ceil(n_items / ITEMS_PER_BLOCK))
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("question", pa.string()),
            ("answer", pa.string()),
            ("reference", pa.string()),
            ("source", pa.string()),
            ("line", pa.int64()),
        ]
    )
    dataset = ray.data.read_json(
        str(staged),
        override_num_blocks=min(blocks, max(n_items, 1)),
        read_options=pajson.ReadOptions(block_size=JSON_BLOCK_BYTES),
        parse_options=pajson.ParseOptions(explicit_schema=schema),
    )
    results = dataset.map_batches(
        CurateActor,
        fn_constructor_kwargs={
            "context": plan.context.model_dump(mode="json"),
            "in_flight": in_flight,
            "crash_marker": os.environ.get(CRASH_MARKER_ENV),
            **shared,
        },
        batch_format="pyarrow",
        batch_size=batch_size_for(in_flight),
        compute=ray.data.ActorPoolStrategy(size=plan.actors),
        num_cpus=ACTOR_CPUS,  # Ray Data places the pool with its default, SPREAD, strategy
    )
    results.write_json(str(shards))


class RayRun:
    """The Ray side of one invocation: connect once, the shared actors, the attempts."""

    def __init__(
        self, plan: RayPlan, warn: Callable[[str], None], note: Callable[[str], None]
    ) -> None:
        self.plan = plan
        self.warn = warn
        self.note = note
        self.session: Any = None
        self.disconnect = False
        self.shared: dict[str, str | None] = {}
        self._handles: list[Any] = []
        self.items_by_node: Counter[str] = Counter()

    def connect(self) -> Any:
        """Start or join Ray (once) and start the run's shared actors; the session."""
        # the `ray` extra
        from refine_n_judge.curate.ray_cluster import connect, start_monitor
        from refine_n_judge.curate.ray_rate_limit import start_bucket

        if self.session is not None:
            return self.session
        plan = self.plan
        self.session, self.disconnect = connect(plan.address, plan.actors, plan.quiet)
        self.note(self.session.describe())
        run_id = f"curate-{os.getpid()}-{int(time.time() * 1000)}"
        self.shared = {"monitor": f"{run_id}-monitor", "rate_bucket": None}
        self._handles.append(start_monitor(f"{run_id}-monitor"))
        if plan.rps is not None:
            self.shared["rate_bucket"] = f"{run_id}-rps"
            self._handles.append(start_bucket(f"{run_id}-rps", plan.rps))
        return self.session

    def run(self, staged: Path, shards: Path, n_items: int) -> None:
        """One pipeline run, watched (a warning if it cannot start or stalls)."""
        from refine_n_judge.curate.ray_cluster import StallWatch  # the `ray` extra

        with StallWatch(self._handles[0], self.plan.actors, self.warn):
            run_pipeline(self.plan, staged, shards, n_items, self.shared)

    def close(self) -> None:
        """Stop the shared actors; stop (or leave) Ray."""
        if self.session is None:
            return
        import ray  # the `ray` extra

        for handle in self._handles:  # gone with the driver anyway; not with a reused Ray
            with contextlib.suppress(Exception):  # already gone (a lost node, a broken Ray)
                ray.kill(handle)
        if self.disconnect:
            ray.shutdown()

    def report(self) -> dict[str, Any] | None:
        """run.json's `ray` entry of this invocation."""
        if self.session is None:
            return None
        self.session.items_by_node = dict(sorted(self.items_by_node.items()))
        return self.session.model_dump(mode="json")


def curate_on_ray(options: CurateOptions, run: CheckedRun, reporter: Reporter | None = None) -> int:
    """Run `curate --engine ray` after `curate`'s checks; the process exit code.

    Raises:
        SettingsError: the Ray engine cannot run these settings, or the cluster cannot be
            joined or has too few CPUs (nothing was called).
    """
    plan = RayPlan(
        address=ray_address(options.ray_address),
        actors=options.actors,
        in_flight=in_flight_per_actor(
            options.in_flight_per_actor, options.concurrency, options.actors
        ),
        blocks=options.blocks,
        rps=options.rps,
        quiet=options.quiet,
        context=options.context,
    )
    check_ray_options(plan.address, cache=options.cache, embedded=run.settings.uses_embedded_model)
    reporter = reporter or make_reporter(quiet=options.quiet, log_format=options.log_format)

    def warn(message: str) -> None:  # a stalled run is said even with --quiet
        if options.quiet:
            print(message, file=sys.stderr)
        else:
            reporter.note(message)

    resumed = resume(
        run,
        dpo_pairs=options.dpo_pairs,
        retry_failed=options.retry_failed,
        concurrency=plan.in_flight * plan.actors,
    )
    tally, writer, done = resumed.tally, resumed.writer, resumed.state.done
    outputs = run.outputs
    counters = Counters(total=total_rows(run.files))
    work = outputs.path / WORK_DIR
    shards_root = work / "shards"
    ray_run = RayRun(plan, warn, reporter.note)

    def merge() -> None:
        merge_shards(
            shards_root, outputs, tally, done, options.dpo_pairs, counters, ray_run.items_by_node
        )

    status = "failed"
    outputs.open()
    try:
        leftover = merge_shards(shards_root, outputs, tally, done, options.dpo_pairs)
        shutil.rmtree(shards_root, ignore_errors=True)
        writer.write("running")
        reporter.start(counters, start_message(run, options.context.refiner, done, resumed.retried))
        if leftover:
            reporter.note(f"merged {leftover} item(s) a stopped run had finished")
        work.mkdir(parents=True, exist_ok=True)
        staged_path = work / "input.jsonl"
        stager = Stager(outputs, tally, done, counters, reporter, options.limit)
        rows = iter_all_inputs(run.files, fields=options.fields, max_chars=options.max_chars)
        staged = stager.stage(rows, staged_path)
        interrupted = False
        attempt = 0
        while staged and not interrupted:
            attempt += 1
            ray_run.connect()
            writer.current.ray = ray_run.report()
            writer.write("running")
            shards = shards_root / f"run-{int(time.time() * 1000)}-{os.getpid()}-{attempt}"
            try:
                ray_run.run(staged_path, shards, staged)
                staged = 0
            except KeyboardInterrupt:
                interrupted = True
            except CurateError:
                raise
            except Exception as exc:  # a lost node, a dead pipeline: redo what it left
                merge()
                if attempt >= MAX_ATTEMPTS:
                    raise
                retry_path = work / f"input-{attempt + 1}.jsonl"
                staged = restage(staged_path, done, retry_path)
                staged_path = retry_path
                warn(
                    f"the Ray pipeline failed ({type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                    f"running the {staged} item(s) it left undone again "
                    f"(attempt {attempt + 1} of {MAX_ATTEMPTS})"
                )
            finally:
                merge()
        if not interrupted:
            shutil.rmtree(work, ignore_errors=True)
        status = "interrupted" if interrupted else "finished"
    finally:
        try:
            ray_run.close()
        finally:
            outputs.close()
            writer.current.ray = ray_run.report()
            report = writer.finish(status, counters)
            reporter.finish(counters, summary(report, counters, outputs))
    if status == "interrupted":
        return EXIT_INTERRUPTED
    return finished_code(
        report, outputs, show_where=not options.quiet and options.log_format == "text"
    )
