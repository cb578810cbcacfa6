"""`refine-n-judge curate`: check everything, resume the directory, run, report.

Order matters: every check that can refuse the run (inputs, settings, models, prices, the
cache path, the output directory and its lock, the endpoint, a settings mismatch with the
directory's run.json, the input against the directory's inputs.json) happens before any
model call and before anything in the directory changes. The directory's lock is held to
the end, whichever engine runs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from graph.builder import build_graph
from refine_n_judge.curate.cache import (
    CountingSQLiteCache,
    check_cache_path,
    install_cache,
    uninstall_cache,
)
from refine_n_judge.curate.checks import (
    InputFile,
    check_models,
    check_resume_settings,
    needs_embedded_model,
    resolve_inputs,
    start_embedded_model,
)
from refine_n_judge.curate.endpoint_check import check_endpoint, endpoint_of
from refine_n_judge.curate.endpoint_health import stall_limit
from refine_n_judge.curate.event_loop import run_until_done_or_stopped
from refine_n_judge.curate.exports import dpo_rows, sft_row
from refine_n_judge.curate.folder_lock import FolderLock
from refine_n_judge.curate.input_record import apply_input, check_input
from refine_n_judge.curate.options import CurateOptions
from refine_n_judge.curate.outputs import OutputDir, atomic_write_text
from refine_n_judge.curate.pricing import PriceTable
from refine_n_judge.curate.progress import Counters, Reporter, make_reporter
from refine_n_judge.curate.readers import ReadResult, count_rows, read_items
from refine_n_judge.curate.report import Invocation, RunReport, Tally, now_iso
from refine_n_judge.curate.runner import CurateRunner, RunPlan

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_SETTINGS = 2
EXIT_ENDPOINT = 3
"""The endpoint stopped the run (auth/not-found errors, connection failures, a stall):
the items written are kept, the rest are left for the next run."""
EXIT_INTERRUPTED = 130


def iter_all_inputs(files: list[InputFile], options: CurateOptions) -> Iterator[ReadResult]:
    """The rows of every input file, in order."""
    for file in files:
        yield from read_items(
            file.path,
            file.format,
            options.fields,
            source=file.display,
            max_chars=options.max_chars,
        )


def make_rate_limiter(rps: float | None) -> Any:
    """LangChain's token-bucket limiter shared by every model, or None."""
    if rps is None:
        return None
    from langchain_core.rate_limiters import InMemoryRateLimiter

    return InMemoryRateLimiter(
        requests_per_second=rps,
        check_every_n_seconds=min(0.05, 1.0 / rps),
        max_bucket_size=max(1.0, rps),
    )


class ReportWriter:
    """Writes run.json from the tally (at the start, at the end, on interruption)."""

    def __init__(
        self,
        options: CurateOptions,
        outputs: OutputDir,
        files: list[InputFile],
        tally: Tally,
        prices: PriceTable,
        previous: dict[str, Any] | None,
    ) -> None:
        self.options = options
        self.outputs = outputs
        self.tally = tally
        self.prices = prices
        self.inputs = [{"path": str(f.path), "format": f.format, "name": f.display} for f in files]
        earlier = (previous or {}).get("invocations") or []
        self.invocations = [Invocation.model_validate(i) for i in earlier]
        for invocation in self.invocations:
            if invocation.status == "running":  # it never wrote its end: it was killed
                invocation.status = "killed"
        self.current = Invocation(started_at=now_iso())
        self.invocations.append(self.current)
        self._started = time.monotonic()

    def build(self, status: str) -> RunReport:
        """The report as of now."""
        self.current.status = status
        self.current.wall_seconds = round(time.monotonic() - self._started, 3)
        if status != "running":
            self.current.finished_at = now_iso()
        return RunReport.build(
            tally=self.tally,
            status=status,
            output_dir=str(self.outputs.path),
            files=self.outputs.files(),
            inputs=self.inputs,
            settings=self.options.report_settings(),
            prices=self.prices,
            invocations=self.invocations,
        )

    def write(self, status: str) -> RunReport:
        """Write run.json atomically and return the report."""
        report = self.build(status)
        document = report.model_dump(mode="json")
        document["compared_settings"] = self.options.compared_settings()
        atomic_write_text(self.outputs.report, _dumps(document))
        return report


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def curate(options: CurateOptions, reporter: Reporter | None = None) -> int:
    """Run the `curate` command with validated options; the process exit code.

    Raises:
        SettingsError: the run cannot start (nothing was called or changed).
    """
    files = resolve_inputs(options)
    check_models(options.context)
    prices = PriceTable.load(options.prices)
    if options.cache is not None:
        check_cache_path(options.cache)
    outputs = OutputDir(options.out)
    outputs.create()
    with FolderLock(outputs.path):
        options = check_endpoint(options)
        previous, changed = check_resume_settings(outputs, options)
        inputs = check_input(outputs, files, options)
        replaced = apply_input(outputs, inputs)
        if inputs.differs:
            changed = [*changed, f"input: {inputs.describe()} ({replaced} result(s) to redo)"]
        if options.engine == "ray":
            from refine_n_judge.curate.ray_engine import curate_on_ray

            return curate_on_ray(options, files, outputs, prices, previous, changed, reporter)
        embedded = needs_embedded_model(options)
        if embedded:
            start_embedded_model()
        reporter = reporter or make_reporter(quiet=options.quiet, log_format=options.log_format)
        concurrency = options.effective_concurrency(embedded=embedded)
        try:
            return _run(options, files, outputs, prices, previous, reporter, concurrency, changed)
        finally:
            if embedded:
                from endpoints.settings import stop_embedded_server

                stop_embedded_server()


def endpoint_name(options: CurateOptions) -> str:
    """How the run names its endpoint in messages (never a secret)."""
    endpoint = endpoint_of(options)
    if endpoint is not None:
        return endpoint.shown
    return options.compared_settings()["default_model"] or "of the model provider"


def _run(
    options: CurateOptions,
    files: list[InputFile],
    outputs: OutputDir,
    prices: PriceTable,
    previous: dict[str, Any] | None,
    reporter: Reporter,
    concurrency: int,
    changed: list[str],
) -> int:
    tally = Tally()

    def export(state: Any) -> tuple[Any, Any]:
        return sft_row(state), dpo_rows(state, options.dpo_pairs)

    resume = outputs.scan(
        tally.add_chain,
        tally.add_failure,
        tally.add_retired,
        export,
        retry_failed=options.retry_failed,
    )
    tally.sft_rows, tally.dpo_rows = resume.sft_rows, resume.dpo_rows
    tally.expect_retries(resume.retrying)
    retired = len(resume.retrying)
    writer = ReportWriter(options, outputs, files, tally, prices, previous)
    writer.current.retried_failures = retired
    writer.current.concurrency = concurrency
    writer.current.forced_settings_changes = changed
    writer.current.repaired = resume.repaired + [f"rebuilt {name}" for name in resume.rebuilt]
    writer.write("running")

    total = _total_rows(files)
    counters = Counters(total=total)
    reporter.start(counters, _start_message(options, files, resume.done, retired))
    for name in resume.repaired:
        reporter.note(f"repaired a torn last line in {name} (a kill mid-write); redoing that item")
    if resume.dropped_uncommitted:
        reporter.note(
            f"removed {resume.dropped_uncommitted} export row(s) of items that were in flight "
            "at the last stop; they are redone"
        )
    for name in resume.rebuilt:
        reporter.note(f"rebuilt {name} from chains.jsonl")
    if changed:
        reporter.note("--force: continuing with changed settings: " + "; ".join(changed))

    cache: CountingSQLiteCache | None = None
    if options.cache is not None:
        cache = install_cache(options.cache)
    graph = build_graph(rate_limiter=make_rate_limiter(options.rps))
    plan = RunPlan(
        graph=graph,
        context=options.context,
        concurrency=concurrency,
        dpo_pairs=options.dpo_pairs,
        limit=options.limit,
        endpoint=endpoint_name(options),
        stall_limit=stall_limit(options.context.request_timeout, options.rps),
    )
    runner = CurateRunner(plan, outputs, tally, resume.done, counters, reporter)
    status = "failed"  # until the loop returns: an exception (a write error) leaves it so
    outputs.open()
    try:
        interrupted = run_until_done_or_stopped(
            runner.run(iter_all_inputs(files, options)), lambda: writer.write("running")
        )
        status = "interrupted" if interrupted else "finished"
        if runner.stop_reason is not None:
            status = "stopped"
    finally:
        outputs.close()
        if cache is not None:
            writer.current.cache = cache.stats()
            uninstall_cache()
        writer.current.retried_failures = tally.redone
        writer.current.new_items = counters.succeeded
        writer.current.new_failures = counters.failed
        writer.current.skipped_done = counters.skipped
        report = writer.write(status)
        reporter.finish(counters, _summary(report, counters, outputs))
    if status == "interrupted":
        print(
            f"interrupted: {counters.processed} item(s) written this run; rerun the same command "
            "to finish the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if status == "stopped":
        print(
            f"stopped early: {runner.stop_reason}. {counters.processed} item(s) written this "
            "run are kept; the rest are not marked failed: fix the endpoint and rerun the "
            "same command to resume",
            file=sys.stderr,
        )
        return EXIT_ENDPOINT
    if not options.quiet and options.log_format == "text":
        print(_where_message(report, outputs))
    return EXIT_FAILURES if tally.failures else EXIT_OK


def _total_rows(files: list[InputFile]) -> int | None:
    counts = [count_rows(f.path, f.format) for f in files]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


def _start_message(
    options: CurateOptions, files: list[InputFile], done: set[str], retired: int
) -> str:
    names = ", ".join(f.display for f in files)
    model = options.context.refiner or options.compared_settings()["default_model"]
    text = f"curating {names} with {model} -> {options.out}"
    if done:
        text += f" (resuming: {len(done)} item(s) already done)"
    if retired:
        text += f" (retrying {retired} failure(s))"
    return text


def _summary(report: RunReport, counters: Counters, outputs: OutputDir) -> dict[str, Any]:
    health = report.judge_health
    return {
        "items in directory": report.counts["items"],
        "this run": (
            f"{counters.processed} processed, {counters.skipped} skipped (done before), "
            f"{counters.elapsed:.1f}s, {counters.rate:.2f} items/s"
        ),
        "succeeded": report.counts["succeeded"],
        "failed": report.counts["failed"],
        "failures by kind": report.failures_by_kind,
        "accepted refinements": report.counts["accepted_refinements"],
        "mean refinements per chain": report.mean_chain_length,
        "refinements per chain": report.chain_length_histogram,
        "stop reasons": report.stop_reasons,
        "model calls": report.total_calls,
        "tokens": report.total_tokens,
        "cost (USD)": report.cost_usd if report.cost_usd is not None else "unknown prices",
        "judge swap consistency": health.get("swap_consistency"),
        "first-position preference": health.get("first_position_preference"),
        "sft rows": report.counts["sft_rows"],
        "dpo rows": report.counts["dpo_rows"],
    }


def _where_message(report: RunReport, outputs: OutputDir) -> str:
    return (
        f"outputs in {outputs.path}/: {outputs.chains.name} ({report.counts['succeeded']}), "
        f"{outputs.sft.name} ({report.counts['sft_rows']}), "
        f"{outputs.dpo.name} ({report.counts['dpo_rows']}), "
        f"{outputs.failures.name} ({report.counts['failed']}), {outputs.report.name}"
    )
