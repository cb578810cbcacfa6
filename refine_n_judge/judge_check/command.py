"""`refine-n-judge judge-check`: check, resume the directory, judge the pairs, report.

As in `curate`, every check that can refuse the run (the pairs file, settings, models, a
settings change against the directory's report.json, the endpoint) happens before any
model call; a kill loses nothing (rerun the same command), and the cache makes redone
work free.
"""

from __future__ import annotations

import sys

from nodes.models import ModelProvider
from refine_n_judge.curate.cache import CountingSQLiteCache, install_cache, uninstall_cache
from refine_n_judge.curate.checks import (
    check_models,
    settings_differences,
    start_embedded_model,
)
from refine_n_judge.curate.command import make_rate_limiter
from refine_n_judge.curate.endpoint_check import probe_endpoint
from refine_n_judge.curate.errors import SettingsMismatchError
from refine_n_judge.curate.event_loop import run_until_done_or_stopped
from refine_n_judge.curate.progress import Reporter, make_reporter
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

    def __init__(self, options: JudgeCheckOptions, fmt: PairFormat, results: ResultsDir) -> None:
        self.options = options
        self.fmt = fmt
        self.results = results
        self.judged: list[PairResult] = []
        self.counts = RunCounts()

    def report(self, status: str, *, plots: bool = False) -> JudgeCheckReport:
        report = build_report(
            self.judged,
            self.options.context,
            status=status,
            pairs_file=str(self.options.pairs),
            pair_format=self.fmt,
            settings=self.options.report_settings(),
            counts=self.counts,
            target_precision=self.options.target_precision,
        )
        if plots:
            try:
                report.plots = [p.name for p in write_plots(report, self.results.path)]
            except ImportError:
                report.plots_note = "matplotlib is missing: pip install 'refine-n-judge[evals]'"
        document = report.model_dump(mode="json")
        document["compared_settings"] = self.options.compared_settings()
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
    changed = _check_resume_settings(results, options)
    if options.report_only:
        return _report_only(options, fmt, results)
    endpoint = _endpoint(options)
    if endpoint is not None:
        probe_endpoint(
            endpoint, "--base-url" if options.context.base_url else "REFINE_N_JUDGE_BASE_URL"
        )
    embedded = _embedded(options)
    if embedded:
        start_embedded_model()
    reporter = reporter or make_reporter(
        quiet=options.quiet, log_format=options.log_format, title=TITLE
    )
    try:
        return _run(options, fmt, results, reporter, embedded, changed)
    finally:
        if embedded:
            from endpoints.settings import stop_embedded_server

            stop_embedded_server()


def _run(
    options: JudgeCheckOptions,
    fmt: PairFormat,
    results: ResultsDir,
    reporter: Reporter,
    embedded: bool,
    changed: list[str],
) -> int:
    session = _Session(options, fmt, results)
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
    concurrency = options.effective_concurrency(embedded=embedded)
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


def _report_only(options: JudgeCheckOptions, fmt: PairFormat, results: ResultsDir) -> int:
    """The report over what OUT holds, with this run's report settings; no model call."""
    session = _Session(options, fmt, results)
    results.repair()
    session.judged, failures = results.load()
    session.counts.input_errors = sum(f.stage == "input" for f in failures)
    session.counts.failed_pairs = sum(f.stage != "input" for f in failures)
    previous = results.read_report() or {}
    earlier = RunCounts.model_validate(previous.get("counts") or {})
    session.counts.filtered_out, session.counts.cache = earlier.filtered_out, earlier.cache
    report = session.report(str(previous.get("status") or "finished"), plots=options.plots)
    if not options.quiet:
        reporter = make_reporter(quiet=False, log_format=options.log_format, title=TITLE)
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


def _check_resume_settings(results: ResultsDir, options: JudgeCheckOptions) -> list[str]:
    """How the settings changed since the directory's last run; refused unless --force."""
    previous = results.read_report()
    has_rows = any(p.exists() and p.stat().st_size for p in (results.judgments, results.failures))
    if previous is None or not has_rows:
        return []
    diffs = settings_differences(previous.get("compared_settings"), options.compared_settings())
    if diffs and not options.force:
        shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
        raise SettingsMismatchError(
            f"{results.path} holds judgments made with other settings ({shown}); rerun with "
            "the same settings to resume, use another --out, or pass --force to continue anyway"
        )
    return diffs


def _endpoint(options: JudgeCheckOptions) -> str | None:
    """The base URL the judges will call, when there is one to probe."""
    if options.context.base_url:
        return options.context.base_url
    if options.uses_default_model:
        from endpoints.settings import Settings

        return Settings().base_url
    return None


def _embedded(options: JudgeCheckOptions) -> bool:
    """True when the default model judges and it is the embedded one."""
    return options.uses_default_model and str(
        options.compared_settings()["default_model"]
    ).endswith("(embedded model)")
