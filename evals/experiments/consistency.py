"""Judge consistency along the chain (paper 5.4): run Refine-n-Judge, then have the judge
re-judge each adjacent pair of every finished chain, and the final answer against the last
rejected refinement, K times with random positions. The paper saw agreement fall from 100%
(Ans0 vs Ans1) to ~80% within four refinements and ~50% for final vs rejected."""

from __future__ import annotations

from typing import Any

from evals.datasets import Dataset
from evals.evaluators import chain_consistency
from evals.judging import EvalJudge
from evals.metrics import keys_with_prefix, pooled_agreement
from evals.records import Headline, ResultRow
from evals.runner import Experiment
from evals.setup import EvalSetup, Pipeline


def pipelines(setup: EvalSetup) -> dict[str, Pipeline]:
    return {"refine_n_judge": setup.refine_n_judge()}


def evaluators(setup: EvalSetup, dataset: Dataset, judge: EvalJudge) -> list[Any]:
    return [chain_consistency(judge, repeats=setup.options.repeats, seed=setup.options.seed)]


def metrics(rows: list[ResultRow], dataset: Dataset) -> tuple[dict[str, Any], Headline | None]:
    steps = sorted(keys_with_prefix(rows, "agree_step_"), key=lambda k: int(k.rsplit("_", 1)[1]))
    first = second = 0
    for row in rows:
        for f in row.feedback:
            if f.key == "first_position_rate" and f.metadata:
                first += int(f.metadata["first"])
                second += int(f.metadata["n"])
    return {
        "by_step": {key.rsplit("_", 1)[1]: pooled_agreement(rows, key) for key in steps},
        "final_vs_rejected": pooled_agreement(rows, "agree_final_vs_rejected"),
        "overall": pooled_agreement(rows, "agreement"),
        "first_position_rate": round(first / second, 4) if second else None,
    }, None


CONSISTENCY = Experiment(
    name="consistency",
    title="Judge consistency along the chain (paper 5.4)",
    pipelines=pipelines,
    evaluators=evaluators,
    metrics=metrics,
)
