"""`curate --engine local` (the default): one process, one event loop, `CurateRunner`'s
workers running the graph (see `runner`); the lifecycle around it is `lifecycle`'s."""

from __future__ import annotations

import sys

from graph.builder import build_graph
from refine_n_judge.curate.cache import CountingSQLiteCache, install_cache, uninstall_cache
from refine_n_judge.curate.checks import embedded_model_running
from refine_n_judge.curate.endpoint_check import Endpoint, endpoint_of
from refine_n_judge.curate.endpoint_health import stall_limit
from refine_n_judge.curate.event_loop import run_until_done_or_stopped
from refine_n_judge.curate.lifecycle import (
    EXIT_ENDPOINT,
    EXIT_INTERRUPTED,
    CheckedRun,
    finished_code,
    iter_all_inputs,
    resume,
    resume_notes,
    start_message,
    summary,
    total_rows,
)
from refine_n_judge.curate.options import CurateOptions
from refine_n_judge.curate.progress import Counters, Reporter, make_reporter
from refine_n_judge.curate.rate_limit import make_rate_limiter
from refine_n_judge.curate.run_settings import effective_concurrency
from refine_n_judge.curate.runner import CurateRunner, RunPlan


def curate_locally(
    options: CurateOptions, run: CheckedRun, reporter: Reporter | None = None
) -> int:
    """Run the items in this process after `curate`'s checks; the process exit code."""
    embedded = run.settings.uses_embedded_model
    with embedded_model_running(embedded):
        reporter = reporter or make_reporter(quiet=options.quiet, log_format=options.log_format)
        concurrency = effective_concurrency(options.concurrency, embedded=embedded)
        resumed = resume(
            run,
            dpo_pairs=options.dpo_pairs,
            retry_failed=options.retry_failed,
            concurrency=concurrency,
        )
        tally, writer = resumed.tally, resumed.writer
        writer.write("running")
        counters = Counters(total=total_rows(run.files))
        done = resumed.state.done
        reporter.start(counters, start_message(run, options.context.refiner, done, resumed.retried))
        for note in resume_notes(resumed.state, run.changed):
            reporter.note(note)

        cache: CountingSQLiteCache | None = None
        if options.cache is not None:
            cache = install_cache(options.cache)
        endpoint = endpoint_of(options.context, uses_default_model=options.uses_default_model)
        plan = RunPlan(
            graph=build_graph(rate_limiter=make_rate_limiter(options.rps)),
            context=options.context,
            concurrency=concurrency,
            dpo_pairs=options.dpo_pairs,
            limit=options.limit,
            endpoint=endpoint_name(endpoint, run.settings.default_model),
            stall_limit=stall_limit(options.context.request_timeout, options.rps),
        )
        runner = CurateRunner(plan, run.outputs, tally, done, counters, reporter)
        rows = iter_all_inputs(run.files, fields=options.fields, max_chars=options.max_chars)
        status = "failed"  # until the loop returns: an exception (a write error) leaves it so
        run.outputs.open()
        try:
            interrupted = run_until_done_or_stopped(
                runner.run(rows), lambda: writer.write("running")
            )
            status = "interrupted" if interrupted else "finished"
            if runner.stop_reason is not None:
                status = "stopped"
        finally:
            run.outputs.close()
            if cache is not None:
                writer.current.cache = cache.stats()
                uninstall_cache()
            writer.current.retried_failures = tally.redone
            report = writer.finish(status, counters)
            reporter.finish(counters, summary(report, counters, run.outputs))
        if status in ("interrupted", "stopped"):
            return _cut_short(status, counters.processed, runner.stop_reason)
        return finished_code(
            report, run.outputs, show_where=not options.quiet and options.log_format == "text"
        )


def endpoint_name(endpoint: Endpoint | None, default_model: str | None) -> str:
    """How the run names its endpoint in messages (never a secret): the endpoint's URL,
    else the default model's description."""
    if endpoint is not None:
        return endpoint.shown
    return default_model or "of the model provider"


def _cut_short(status: str, processed: int, stop_reason: str | None) -> int:
    """Say why the run ended before its input did; the exit code."""
    if status == "interrupted":
        print(
            f"interrupted: {processed} item(s) written this run; rerun the same command "
            "to finish the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(
        f"stopped early: {stop_reason}. {processed} item(s) written this "
        "run are kept; the rest are not marked failed: fix the endpoint and rerun the "
        "same command to resume",
        file=sys.stderr,
    )
    return EXIT_ENDPOINT
