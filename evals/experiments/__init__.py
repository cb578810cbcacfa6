"""The experiments, by the name the CLI uses."""

from __future__ import annotations

from evals.experiments.baselines import BASELINES
from evals.experiments.consistency import CONSISTENCY
from evals.experiments.judge_ablation import JUDGE_ABLATION
from evals.experiments.judge_check import JUDGE_CHECK
from evals.experiments.noisy import NOISY
from evals.runner import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (NOISY, CONSISTENCY, JUDGE_ABLATION, BASELINES, JUDGE_CHECK)
}

__all__ = ["EXPERIMENTS", "Experiment"]
