"""Against zero-shot and best-of-N (paper 5.1, table 2): Refine-n-Judge's final answer
(refined from the item's initial answer) against one fresh answer and against the judge's
pick of N fresh answers, judged pairwise in both orders by an evaluation judge. On the
acronym set, the exact-match accuracy of every method too (table 2's Acronym rows)."""

from __future__ import annotations

from typing import Any

from evals.datasets import Dataset
from evals.evaluators import RNJ, method_accuracy, pairwise_win
from evals.judging import EvalJudge
from evals.metrics import keys_with_prefix, mean_of, pct, win_counts
from evals.records import Headline, ResultRow
from evals.runner import Experiment
from evals.setup import EvalSetup, Pipeline

ZERO_SHOT, BEST_OF_N = "zero_shot", "best_of_n"


def pipelines(setup: EvalSetup) -> dict[str, Pipeline]:
    return {RNJ: setup.refine_n_judge(), ZERO_SHOT: setup.zero_shot(), BEST_OF_N: setup.best_of_n()}


def evaluators(setup: EvalSetup, dataset: Dataset, judge: EvalJudge) -> list[Any]:
    chosen: list[Any] = [
        pairwise_win(judge, ours=RNJ, theirs=ZERO_SHOT, key="win_vs_zero_shot"),
        pairwise_win(judge, ours=RNJ, theirs=BEST_OF_N, key="win_vs_best_of_n"),
    ]
    if dataset.kind == "acronym":
        chosen.append(method_accuracy)
    return chosen


def metrics(rows: list[ResultRow], dataset: Dataset) -> tuple[dict[str, Any], Headline | None]:
    result: dict[str, Any] = {
        "win_vs_zero_shot": win_counts(rows, "win_vs_zero_shot"),
        "win_vs_best_of_n": win_counts(rows, "win_vs_best_of_n"),
    }
    accuracy = {
        key.removeprefix("accuracy_"): pct(mean_of(rows, key)[0])
        for key in keys_with_prefix(rows, "accuracy_")
    }
    if accuracy:
        result["accuracy"] = accuracy
    return result, None


BASELINES = Experiment(
    name="baselines",
    title="Against zero-shot and best-of-N (paper 5.1, table 2)",
    pipelines=pipelines,
    evaluators=evaluators,
    metrics=metrics,
)
