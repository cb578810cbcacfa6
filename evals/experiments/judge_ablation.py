"""With the judge vs without (paper 5.2, figures 3 and 5): Refine-n-Judge against
refine-only (Self-Refine, no judge) from the same initial answer at the same iteration
budget, judged pairwise in both orders by an evaluation judge. Win rate of Refine-n-Judge
by budget (the paper: ~50% at 1-2 iterations, up to 72.5%); with `matrix`, every later
answer of each chain against every earlier one."""

from __future__ import annotations

from typing import Any

from evals.datasets import Dataset
from evals.evaluators import RNJ, pairwise_matrix, win_rate_by_budget
from evals.judging import EvalJudge
from evals.metrics import keys_with_prefix, win_counts
from evals.records import Headline, ResultRow
from evals.runner import Experiment
from evals.setup import EvalSetup, Pipeline

REFINE_ONLY = "refine_only"


def pipelines(setup: EvalSetup) -> dict[str, Pipeline]:
    budget = setup.options.budget
    return {
        RNJ: setup.refine_n_judge(max_iterations=budget),
        REFINE_ONLY: setup.refine_only(iterations=budget),
    }


def evaluators(setup: EvalSetup, dataset: Dataset, judge: EvalJudge) -> list[Any]:
    budget = setup.options.budget
    chosen: list[Any] = [win_rate_by_budget(judge, range(1, budget + 1))]
    if setup.options.matrix:
        chosen += [pairwise_matrix(judge, p, max_answers=budget + 1) for p in (REFINE_ONLY, RNJ)]
    return chosen


def metrics(rows: list[ResultRow], dataset: Dataset) -> tuple[dict[str, Any], Headline | None]:
    budgets = sorted(keys_with_prefix(rows, "win_rate@"), key=lambda k: int(k.split("@")[1]))
    result: dict[str, Any] = {
        "win_rate_by_budget": {key.split("@")[1]: win_counts(rows, key) for key in budgets}
    }
    matrix: dict[str, dict[str, Any]] = {}
    for key in keys_with_prefix(rows, "matrix:"):
        _, pipeline, cell = key.split(":")
        matrix.setdefault(pipeline, {})[cell] = win_counts(rows, key)
    if matrix:
        result["matrix"] = matrix
    return result, None


JUDGE_ABLATION = Experiment(
    name="judge-ablation",
    title="With the judge vs without: Refine-n-Judge vs refine-only (paper 5.2, figures 3 and 5)",
    pipelines=pipelines,
    evaluators=evaluators,
    metrics=metrics,
)
