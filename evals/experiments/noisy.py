"""Noisy-data robustness (paper 5.3, table 3): Refine-n-Judge on flawed initial answers.

- acronyms: exact-match accuracy of the expansion, before and after (paper: +85%);
- verbose: tokens per answer, before and after (paper: -52%), and key facts kept;
- misconceptions: an evaluation judge that sees the reference scores the initial and the
  final answer (0-100) and says which is better (paper: +92% truthfulness on TruthfulQA).
"""

from __future__ import annotations

from typing import Any

from evals.datasets import Dataset
from evals.evaluators import (
    acronym_exact_match,
    keywords_retained,
    reference_judge,
    token_length_change,
)
from evals.judging import EvalJudge
from evals.metrics import mean_of, pct, relative_change
from evals.records import Headline, ResultRow
from evals.runner import Experiment
from evals.setup import EvalSetup, Pipeline

PAPER = {
    "acronym": "+85% (binary accuracy, Acronym)",
    "verbose": "-52% (token length, UltraChat)",
    "misconception": "+92% (LLM-judge score, TruthfulQA)",
}


def pipelines(setup: EvalSetup) -> dict[str, Pipeline]:
    return {"refine_n_judge": setup.refine_n_judge()}


def evaluators(setup: EvalSetup, dataset: Dataset, judge: EvalJudge) -> list[Any]:
    if dataset.kind == "acronym":
        return [acronym_exact_match]
    if dataset.kind == "verbose":
        return [token_length_change, keywords_retained]
    if dataset.kind == "misconception":
        return [reference_judge(judge)]
    chosen: list[Any] = [token_length_change]
    if any(item.keywords for item in dataset.items):
        chosen.append(keywords_retained)
    if any(item.reference for item in dataset.items):
        chosen.append(reference_judge(judge))
    return chosen


def metrics(rows: list[ResultRow], dataset: Dataset) -> tuple[dict[str, Any], Headline | None]:
    if dataset.kind == "acronym":
        before, n = mean_of(rows, "exact_match_before")
        after, _ = mean_of(rows, "exact_match_after")
        headline = Headline(
            metric="exact-match accuracy",
            before=pct(before),
            after=pct(after),
            change=None if before is None or after is None else round(100 * (after - before), 2),
            change_kind="points",
            unit="%",
            paper=PAPER["acronym"],
            n=n,
        )
        return {"accuracy_before": pct(before), "accuracy_after": pct(after)}, headline
    extra: dict[str, Any] = {}
    tokens_before, n_tokens = mean_of(rows, "tokens_before")
    tokens_after, _ = mean_of(rows, "tokens_after")
    if n_tokens:
        extra["tokens_before"] = _r(tokens_before)
        extra["tokens_after"] = _r(tokens_after)
        extra["token_change_of_means"] = _r(relative_change(tokens_before, tokens_after), 4)
        extra["keywords_retained"] = _r(mean_of(rows, "keywords_retained")[0], 4)
    score_before, n_judged = mean_of(rows, "judge_score_before")
    score_after, _ = mean_of(rows, "judge_score_after")
    if n_judged:
        extra["judge_score_before"] = _r(score_before)
        extra["judge_score_after"] = _r(score_after)
        extra["judge_score_change"] = _r(relative_change(score_before, score_after), 4)
        extra["improved_rate"] = _r(mean_of(rows, "judged_improved")[0], 4)
    if dataset.kind == "misconception" or (dataset.kind == "generic" and n_judged):
        headline = Headline(
            metric="judged score vs reference (0-100)",
            before=_r(score_before),
            after=_r(score_after),
            change=_r(extra.get("judge_score_change"), 4),
            change_kind="relative",
            paper=PAPER["misconception"] if dataset.kind == "misconception" else None,
            n=n_judged,
        )
    else:
        headline = Headline(
            metric="tokens per answer",
            before=_r(tokens_before),
            after=_r(tokens_after),
            change=extra.get("token_change_of_means"),
            change_kind="relative",
            paper=PAPER["verbose"] if dataset.kind == "verbose" else None,
            n=n_tokens,
        )
    return extra, headline


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


NOISY = Experiment(
    name="noisy",
    title="Noisy-data robustness (paper 5.3, table 3)",
    pipelines=pipelines,
    evaluators=evaluators,
    metrics=metrics,
)
