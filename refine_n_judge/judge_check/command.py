"""`refine-n-judge judge-check`: check, resume the directory, judge the pairs, report.

As in `curate`, every check that can refuse the run (the pairs file, settings, models, a
settings change against the directory's report.json, the endpoint) happens before any
model call; a kill loses nothing (rerun the same command), and the cache makes redone
work free.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nodes.context import Context
from nodes.models import ModelProvider
from refine_n_judge.curate.cache import CountingSQLiteCache, install_cache, uninstall_cache
from refine_n_judge.curate.checks import (
    check_models,
    embedded_model_running,
    refuse_changed_settings,
)
from refine_n_judge.curate.endpoint_check import endpoint_of, probe_endpoint
from refine_n_judge.curate.event_loop import run_until_done_or_stopped
from refine_n_judge.curate.progress import Reporter, make_reporter
from refine_n_judge.curate.rate_limit import make_rate_limiter
from refine_n_judge.curate.run_settings import RecordedSettings, effective_concurrency
from refine_n_judge.judge_check.options import JudgeCheckOptions
from refine_n_judge.judge_check.readers import PairFormat, detect_pair_format, read_pairs
from refine_n_judge.judge_check.records import PairResult
from refine_n_judge.judge_check.report import (
    JudgeCheckReport,
    RunCounts,
    build_report,
    markdown,
    summary_rows,
    write_plots,
)
from refine_n_judge.judge_check.runner import (
    JudgeCheckRunner,
    PairCounters,
    PairFilter,
    build_judge_graph,
)
from refine_n_judge.judge_check.store import ResultsDir

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_INTERRUPTED = 130
TITLE = "refine-n-judge judge-check"


class _Session:
    """What the report is built from: the results so far and the run's counts."""

    def __init__(
        self,
        context: Context,
        pairs: Path,
        fmt: PairFormat,
        results: ResultsDir,
        settings: RecordedSettings,
        target_precision: float | None,
    ) -> None:
        self.context = context
        self.pairs = pairs
        self.fmt = fmt
        self.results = results
        self.settings = settings
        self.target_precision = target_precision
        self.judged: list[PairResult] = []
        self.counts = RunCounts()

    def report(self, status: str, *, plots: bool = False) -> JudgeCheckReport:
        report = build_report(
            self.judged,
            self.context,
            status=status,
            pairs_file=str(self.pairs),
            pair_format=self.fmt,
            settings=self.settings.reported,
            counts=self.counts,
            target_precision=self.target_precision,
        )
        if plots:
            try:
                report.plots = [p.name for p in write_plots(report, self.results.path)]
            except ImportError:
                report.plots_note = "matplotlib is missing: pip install 'refine-n-judge[evals]'"
        document = report.model_dump(mode="json")
        document["compared_settings"] = self.settings.compared
        self.results.write_report(document, markdown(report) if status != "running" else None)
        return report


def judge_check(options: JudgeCheckOptions, reporter: Reporter | None = None) -> int:
    """Run the command with validated options; the process exit code.

    Raises:
        SettingsError: the run cannot start (nothing was called or changed).
    """
    fmt = detect_pair_format(options.pairs, options.pair_format)
    check_models(options.context)
    results = ResultsDir(options.out)
    results.create()
    settings = options.recorded_settings()
    session = _Session(
        options.context, options.pairs, fmt, results, settings, options.target_precision
    )
    changed = _check_resume_settings(results, settings.compared, force=options.force)
    if options.report_only:
        return _report_only(
            session, plots=options.plots, quiet=options.quiet, log_format=options.log_format
        )
    endpoint = endpoint_of(options.context, uses_default_model=options.uses_default_model)
    if endpoint is not None:
        probe_endpoint(endpoint)
    embedded = settings.uses_embedded_model
    with embedded_model_running(embedded):
        reporter = reporter or make_reporter(
            quiet=options.quiet, log_format=options.log_format, title=TITLE
        )
        return _judge_pairs(options, session, reporter, embedded, changed)


def _judge_pairs(
    options: JudgeCheckOptions,
    session: _Session,
    reporter: Reporter,
    embedded: bool,
    changed: list[str],
) -> int:
    """Judge the pairs not judged yet (the command's run, after its checks)."""
    fmt, results = session.fmt, session.results
    repaired = results.repair()
    judged, failures = results.load()
    retried = 0
    if options.retry_errors:
        redo = {r.id for r in judged if has_judge_error(r)}
        redo |= {f.id for f in failures if f.stage != "input"}
        if redo:
            results.drop(redo)
            judged, failures = results.load()
            retried = len(redo)
    session.judged = judged
    done = {r.id for r in judged} | {f.id for f in failures}
    selection = PairFilter(
        unanimous=options.unanimous, no_ties=options.no_ties, limit=options.limit
    )
    counters = PairCounters(total=selection.count(read_pairs(options.pairs, fmt)))
    session.counts.input_errors = sum(f.stage == "input" for f in failures)
    session.counts.failed_pairs = sum(f.stage != "input" for f in failures)
    session.report("running")
    concurrency = effective_concurrency(options.concurrency, embedded=embedded)
    start = f"judge-check {options.pairs.name} ({fmt}) -> {options.out}"
    if done:
        start += f" (resuming: {len(done)} row(s) already done)"
    if retried:
        start += f" (judging {retried} pair(s) with errors again)"
    reporter.start(counters, start)
    for name in repaired:
        reporter.note(f"repaired a torn last line in {name} (a kill mid-write); redoing that pair")
    if changed:
        reporter.note("--force: continuing with changed settings: " + "; ".join(changed))

    cache: CountingSQLiteCache | None = None
    if options.cache is not None:
        cache = install_cache(options.cache)
    graph = build_judge_graph(ModelProvider(rate_limiter=make_rate_limiter(options.rps)))
    runner = JudgeCheckRunner(
        graph,
        options.context,
        results,
        done,
        counters,
        reporter,
        concurrency=concurrency,
        selection=selection,
        on_result=session.judged.append,
    )
    status = "failed"
    results.open()
    try:
        interrupted = run_until_done_or_stopped(
            runner.run(read_pairs(options.pairs, fmt)), lambda: session.report("running")
        )
        status = "interrupted" if interrupted else "finished"
    finally:
        results.close()
        if cache is not None:
            session.counts.cache = cache.stats()
            uninstall_cache()
        session.counts.input_errors += counters.input_errors
        session.counts.failed_pairs += counters.failed - counters.input_errors
        session.counts.filtered_out = runner.filtered
        report = session.report(status, plots=options.plots)
        reporter.finish(counters, dict(summary_rows(report)))
    if status == "interrupted":
        print(
            f"interrupted: {counters.succeeded} pair(s) judged this run; rerun the same command "
            "to finish the rest",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not options.quiet and options.log_format == "text":
        print(_where(results, report))
    failed = session.counts.input_errors + session.counts.failed_pairs
    return EXIT_FAILURES if failed else EXIT_OK


def _report_only(session: _Session, *, plots: bool, quiet: bool, log_format: str) -> int:
    """The report over what OUT holds, with this run's report settings; no model call."""
    results = session.results
    results.repair()
    session.judged, failures = results.load()
    session.counts.input_errors = sum(f.stage == "input" for f in failures)
    session.counts.failed_pairs = sum(f.stage != "input" for f in failures)
    previous = results.read_report() or {}
    earlier = RunCounts.model_validate(previous.get("counts") or {})
    session.counts.filtered_out, session.counts.cache = earlier.filtered_out, earlier.cache
    report = session.report(str(previous.get("status") or "finished"), plots=plots)
    if not quiet:
        reporter = make_reporter(quiet=False, log_format=log_format, title=TITLE)
        reporter.finish(PairCounters(), dict(summary_rows(report)))
    return EXIT_OK


def has_judge_error(result: PairResult) -> bool:
    """A direction ended with no usable verdict (every judge errored, or no quorum)."""
    return any(
        d.outcome in ("error", "no_quorum", "exception")
        for d in (result.a_refines_b, result.b_refines_a)
    )


def _where(results: ResultsDir, report: JudgeCheckReport) -> str:
    files = [results.judgments.name, results.failures.name, results.report_json.name]
    files += [results.report_md.name, *report.plots]
    return f"outputs in {results.path}/: " + ", ".join(files)


def _check_resume_settings(
    results: ResultsDir, compared: dict[str, Any], *, force: bool
) -> list[str]:
    """How the settings changed since the directory's last run; refused unless `force`."""
    previous = results.read_report()
    has_rows = any(p.exists() and p.stat().st_size for p in (results.judgments, results.failures))
    if previous is None or not has_rows:
        return []
    return refuse_changed_settings(
        previous.get("compared_settings"),
        compared,
        force=force,
        path=results.path,
        holds="judgments",
    )
