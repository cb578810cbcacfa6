"""The judge-check report: report.json, report.md, a terminal table, and PNG plots.

The plots (a reliability plot and the calibration curves) need matplotlib, from the
`evals` extra; without it the other files are still written and the report says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from nodes.context import Context
from refine_n_judge.judge_check.calibration import (
    Calibration,
    LengthRule,
    calibrations,
    judge_models,
    length_rules,
    min_gain,
)
from refine_n_judge.judge_check.metrics import JudgeMetrics, Rate, compute_metrics
from refine_n_judge.judge_check.records import PairResult

RELIABILITY_PNG = "reliability.png"
CALIBRATION_PNG = "calibration.png"


class RunCounts(BaseModel):
    """What happened to the rows of the input."""

    input_errors: int = 0
    failed_pairs: int = Field(default=0, description="Pairs whose judge run raised.")
    filtered_out: int = Field(default=0, description="Left out by --unanimous / --no-ties.")
    cache: dict[str, int] | None = None


class JudgeCheckReport(BaseModel):
    """Everything `judge-check` measured, with the settings it measured."""

    status: str
    pairs_file: str
    pair_format: str
    settings: dict[str, Any]
    judges: list[str]
    counts: RunCounts
    metrics: JudgeMetrics
    calibrations: list[Calibration]
    length_rules: list[LengthRule]
    plots: list[str] = Field(default_factory=list)
    plots_note: str | None = None


def build_report(
    results: Sequence[PairResult],
    ctx: Context,
    *,
    status: str,
    pairs_file: str,
    pair_format: str,
    settings: dict[str, Any],
    counts: RunCounts,
    target_precision: float | None,
) -> JudgeCheckReport:
    """The report over every pair judged so far."""
    found = calibrations(results, ctx, target_precision)
    return JudgeCheckReport(
        status=status,
        pairs_file=pairs_file,
        pair_format=pair_format,
        settings=settings,
        judges=judge_models(results),
        counts=counts,
        metrics=compute_metrics(results),
        calibrations=found,
        length_rules=length_rules(results, ctx),
    )


# ----------------------------------------------------------------------- text


def _pct(value: Rate | None) -> str:
    if value is None or value.rate is None:
        return "-"
    return f"{100 * value.rate:.1f}% ({value.count}/{value.n})"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def summary_rows(report: JudgeCheckReport) -> list[tuple[str, str]]:
    """The headline figures as (name, value) rows, for the terminal and Markdown."""
    m = report.metrics
    rows = [
        (
            "pairs judged",
            f"{m.pairs} ({m.labelled_pairs} with a preferred answer, {m.tie_pairs} ties)",
        ),
        ("better accepted", _pct(m.better_accepted)),
        ("worse accepted (false accepts)", _pct(m.worse_accepted)),
        ("precision of acceptance", _pct(m.precision)),
        ("pair accuracy (better in, worse out)", _pct(m.pair_accuracy)),
        ("ties accepted in a direction", _pct(m.ties_accepted)),
        (
            "ranking accuracy (scores)",
            _pct(m.ranking_accuracy) + (f", {m.ranking_equal} equal" if m.ranking_equal else ""),
        ),
        ("judge ties (decisions)", _pct(m.judge_ties)),
        ("judge errors (decisions)", _pct(m.judge_errors) + f", {m.error_calls} failed calls"),
        ("swap consistency", _pct(m.swap_consistency)),
        ("first-position rate", _pct(m.first_position_rate)),
        (
            "kappa vs people (majority)",
            _num(m.agreement.vs_majority) if m.agreement.pairs else (m.agreement.note or "-"),
        ),
    ]
    if m.agreement.vs_each_annotator:
        each = ", ".join(_num(k) for k in m.agreement.vs_each_annotator)
        rows.append(("kappa vs each annotator", each))
        rows.append(("kappa between annotators", _num(m.agreement.between_annotators)))
    for key, group in m.length.items():
        if group.pairs:
            rows.append(
                (
                    f"length: {key.replace('_', ' ')}",
                    f"{group.pairs} pairs: better {_pct(group.better_accepted)}, "
                    f"worse {_pct(group.worse_accepted)}",
                )
            )
    c = m.cost
    rows += [
        ("seconds per pair", _num(c.seconds_per_pair, 2)),
        ("judge calls per pair (both directions)", _num(c.calls_per_pair, 2)),
        (
            "tokens per pair (in/out)",
            f"{_num(c.input_tokens_per_pair, 1)} / {_num(c.output_tokens_per_pair, 1)}",
        ),
    ]
    for cal in report.calibrations:
        if cal.chosen is not None:
            text = f"{cal.flag} {cal.chosen}"
            point = cal.chosen_point
            if point is not None:
                text += (
                    f" (precision {point.precision}, better {point.better_rate:.1%}, "
                    f"worse {point.worse_rate:.1%}; now {cal.current})"
                )
        else:
            text = cal.note or "no --target-precision given"
        rows.append((f"calibrated {cal.kind.replace('_', ' ')} [{cal.judge_model}]", text))
    for rule in report.length_rules:
        rows.append((f"length rule [{rule.judge_model}]", length_rule_text(rule)))
    counts = report.counts
    if counts.cache is not None:
        rows.append(
            (
                "LLM cache (this run)",
                f"{counts.cache['hits']} hits, {counts.cache['misses']} misses (model calls made)",
            )
        )
    rows.append(
        (
            "not judged",
            f"{counts.input_errors} bad rows, {counts.failed_pairs} failed pairs, "
            f"{counts.filtered_out} filtered out",
        )
    )
    return rows


def length_rule_text(rule: LengthRule) -> str:
    best = rule.best
    if best is None:
        return "no data"
    verdict = "earns a setting" if rule.earned else "does not earn a setting"
    here = max(rule.at_current, key=lambda p: p.fewer_false_accepts, default=None)
    at_current = ""
    if here is not None:
        at_current = (
            f"at the run's threshold {here.threshold:g}, weight {here.weight:g}: "
            f"{here.fewer_false_accepts} fewer false accepts (better {here.better_accepted}, "
            f"worse {here.worse_accepted} vs plain {here.plain_worse_accepted}); "
        )
    return (
        f"{verdict}: {at_current}best on the grid {best.fewer_false_accepts} fewer false accepts "
        f"(threshold {best.threshold:.4g}, weight {best.weight:g}: better "
        f"{best.better_accepted}, worse {best.worse_accepted} vs plain "
        f"{best.plain_worse_accepted} at {_num(best.plain_threshold, 4)}; needs >= "
        f"{min_gain(rule.pairs)} fewer)"
    )


def markdown(report: JudgeCheckReport, *, title: str = "Judge check") -> str:
    """report.md: the summary table, the reliability table, the calibration choices."""
    lines = [
        f"# {title}",
        "",
        f"Pairs: `{report.pairs_file}` ({report.pair_format}); "
        f"judges: {', '.join(report.judges) or '-'}; status: {report.status}.",
        "",
    ]
    lines += ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(report)]
    lines += [
        "",
        "## Accuracy per confidence bucket",
        "",
        "| confidence | decisions | accuracy | mean confidence |",
        "|---|---|---|---|",
    ]
    for b in report.metrics.confidence_buckets:
        lines.append(
            _row(
                f"{b.low:.1f}-{b.high:.1f}", b.decisions, _num(b.accuracy), _num(b.mean_confidence)
            )
        )
    for cal in report.calibrations:
        lines += ["", f"## Calibration: {cal.kind.replace('_', ' ')} ({cal.judge_model})", ""]
        lines.append(f"{cal.pairs} labelled pairs; the run used {cal.flag} {cal.current}.")
        if cal.target_precision is not None:
            if cal.chosen is not None:
                lines.append(f"Target precision {cal.target_precision}: `{cal.flag} {cal.chosen}`.")
            else:
                lines.append(f"Target precision {cal.target_precision}: {cal.note}.")
        lines += [
            "",
            "| threshold | better accepted | worse accepted | precision |",
            "|---|---|---|---|",
        ]
        for p in _sampled(cal.curve, 12):
            lines.append(
                _row(
                    f"{p.threshold:g}",
                    f"{p.better_rate:.1%}",
                    f"{p.worse_rate:.1%}",
                    _num(p.precision),
                )
            )
    for rule in report.length_rules:
        lines += [
            "",
            f"## Length-aware rule ({rule.kind.replace('_', ' ')}, {rule.judge_model})",
            "",
        ]
        lines.append(length_rule_text(rule) + ".")
        lines += [
            "",
            _row("weight", "better accepted", "worse accepted", "plain rule: worse accepted"),
            "|---|---|---|---|",
        ]
        for p in rule.at_current:
            lines.append(
                _row(f"{p.weight:g}", p.better_accepted, p.worse_accepted, p.plain_worse_accepted)
            )
    if report.plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in report.plots]
    elif report.plots_note:
        lines += ["", f"Plots: {report.plots_note}"]
    return "\n".join(lines) + "\n"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _sampled(points: Sequence[Any], most: int) -> list[Any]:
    if len(points) <= most:
        return list(points)
    step = (len(points) - 1) / (most - 1)
    return [points[round(i * step)] for i in range(most)]


# ----------------------------------------------------------------------- plots


def write_plots(report: JudgeCheckReport, directory: Path) -> list[Path]:
    """reliability.png and calibration.png (when there is a curve).

    Raises:
        ImportError: matplotlib is not installed (`pip install 'refine-n-judge[evals]'`).
    """
    import matplotlib  # the `evals` extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # the `evals` extra, after choosing its backend

    written: list[Path] = []
    buckets = [b for b in report.metrics.confidence_buckets if b.decisions]
    if buckets:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot([0, 1], [0.5, 1.0], linestyle=":", color="grey", label="calibrated")
        ax.plot(
            [b.mean_confidence for b in buckets],
            [b.accuracy for b in buckets],
            marker="o",
            label="judge",
        )
        for b in buckets:
            ax.annotate(str(b.decisions), (b.mean_confidence or 0, b.accuracy or 0), fontsize=7)
        ax.set_xlabel("decision confidence (bucket mean)")
        ax.set_ylabel("decisions right")
        ax.set_ylim(0, 1.05)
        ax.set_title("Reliability (labels: decisions per bucket)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = directory / RELIABILITY_PNG
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    if report.calibrations:
        fig, axes = plt.subplots(
            1, len(report.calibrations), figsize=(5 * len(report.calibrations), 4), squeeze=False
        )
        for ax, cal in zip(axes[0], report.calibrations, strict=True):
            xs = [p.threshold for p in cal.curve]
            ax.step(xs, [p.better_rate for p in cal.curve], where="post", label="better accepted")
            ax.step(xs, [p.worse_rate for p in cal.curve], where="post", label="worse accepted")
            ax.step(
                xs,
                [p.precision if p.precision is not None else float("nan") for p in cal.curve],
                where="post",
                linestyle="--",
                label="precision",
            )
            if cal.current is not None:
                ax.axvline(cal.current, color="grey", linestyle=":", label=f"now {cal.current}")
            if cal.chosen is not None:
                ax.axvline(cal.chosen, color="black", label=f"target -> {cal.chosen}")
            ax.set_xlabel(cal.flag)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{cal.judge_model} ({cal.pairs} pairs)", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = directory / CALIBRATION_PNG
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
