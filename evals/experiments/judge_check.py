"""Judge check as a LangSmith experiment: each labelled pair through the loop's judge node
in both directions (`refine-n-judge judge-check`'s own code), scored against people's label.

    python -m evals judge-check --dataset PAIRS [--limit N] [--judge MODEL --base-url URL]

The dataset is a labelled-pair file in any layout `judge-check` reads (PandaLM, LLMBar,
JudgeBench, plain). Per item the target returns both directions' states; the evaluator
scores whether each direction was decided as the label says; the summary holds every
figure of the command's report and the pointwise/pairwise calibration curves.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

from langsmith.schemas import Example
from pydantic import BaseModel, Field

from evals.datasets import DatasetError
from evals.judging import EvalJudge
from evals.records import Headline, ResultRow
from evals.runner import Experiment
from evals.setup import EvalSetup, Pipeline
from nodes.models import ModelProvider
from nodes.state import ChainState
from refine_n_judge.curate.errors import InputRowError, SettingsError
from refine_n_judge.judge_check.calibration import calibrations
from refine_n_judge.judge_check.metrics import compute_metrics
from refine_n_judge.judge_check.readers import LabelledPair, detect_pair_format, read_pairs
from refine_n_judge.judge_check.records import DirectionName, DirectionResult, PairResult
from refine_n_judge.judge_check.runner import (
    build_judge_graph,
    direction_state,
    judge_direction,
    pair_result,
)

TARGET_PRECISION = 0.85
DIRECTIONS: tuple[DirectionName, ...] = ("a_refines_b", "b_refines_a")
_NAMESPACE = uuid.UUID("0c1d7a52-58a4-4f0e-9a55-3c8e3c0f9b11")
_EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


class PairDataset(BaseModel):
    """Labelled pairs as an evaluation dataset (what `run_experiment` needs of a dataset:
    a name, a kind, the items and their LangSmith examples)."""

    name: str
    kind: str = "pairs"
    items: list[LabelledPair]
    bad_rows: list[str] = Field(default_factory=list, description="Rows that were not read.")

    def examples(self) -> list[Example]:
        dataset_id = uuid.uuid5(_NAMESPACE, self.name)
        return [
            Example(
                id=uuid.uuid5(_NAMESPACE, f"{self.name}/{pair.id}"),
                dataset_id=dataset_id,
                inputs={
                    "id": pair.id,
                    "question": pair.question,
                    "a": pair.a,
                    "b": pair.b,
                    "reference": pair.reference,
                },
                outputs={
                    "label": pair.label,
                    "annotators": pair.annotators,
                    "has_sides": pair.has_sides,
                    "source": pair.source,
                    "line": pair.line,
                },
                metadata={"item_id": pair.id, "dataset": self.name, "kind": self.kind},
                created_at=_EPOCH,
            )
            for pair in self.items
        ]


def load_pairs(name_or_path: str, *, limit: int | None = None) -> PairDataset:
    """A labelled-pair file as a dataset; its bad rows are listed, not dropped silently."""
    path = Path(name_or_path)
    try:
        fmt = detect_pair_format(path)
    except SettingsError as exc:
        raise DatasetError(str(exc)) from exc
    items: list[LabelledPair] = []
    bad: list[str] = []
    for row in read_pairs(path, fmt):
        if isinstance(row, InputRowError):
            bad.append(row.describe())
        else:
            items.append(row)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise DatasetError(f"{path} has no usable labelled pair")
    return PairDataset(name=path.stem, items=items, bad_rows=bad)


def pipelines(setup: EvalSetup) -> dict[str, Pipeline]:
    graph = build_judge_graph(ModelProvider(refiner=setup.refiner, judges=setup.judges))

    def direction(name: DirectionName) -> Pipeline:
        async def run(inputs: dict[str, Any]) -> ChainState:
            a, b = str(inputs["a"]), str(inputs["b"])
            state = direction_state(
                item_id=str(inputs["id"]),
                question=str(inputs["question"]),
                reference=inputs.get("reference"),
                previous=b if name == "a_refines_b" else a,
                refinement=a if name == "a_refines_b" else b,
            )
            result = await judge_direction(graph, state, setup.context, name=name)
            if result.state is None:
                raise RuntimeError(result.error)
            return result.state

        return run

    return {name: direction(name) for name in DIRECTIONS}


def decided_as_labelled(
    inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """Per direction: was it accepted, and is that what the label asks (the preferred
    answer accepted over the other, nothing accepted for a tie)."""
    label = reference_outputs["label"]
    results: list[dict[str, Any]] = []
    accepted: dict[str, bool] = {}
    for name in DIRECTIONS:
        raw = (outputs or {}).get(name)
        if not raw:
            return {"results": []}
        decisions = ChainState.model_validate(raw).decisions
        accepted[name] = bool(decisions) and decisions[-1].accepted
        results.append({"key": f"{name}_accepted", "score": float(accepted[name])})
    want = {"a_refines_b": label == "a", "b_refines_a": label == "b"}
    right = all(accepted[n] == want[n] for n in DIRECTIONS)
    results.append({"key": "decided_as_labelled", "score": float(right)})
    if label != "tie":
        better = "a_refines_b" if label == "a" else "b_refines_a"
        worse = "b_refines_a" if label == "a" else "a_refines_b"
        results.append({"key": "better_accepted", "score": float(accepted[better])})
        results.append({"key": "worse_accepted", "score": float(accepted[worse])})
    return {"results": results}


def evaluators(setup: EvalSetup, dataset: Any, judge: EvalJudge) -> list[Any]:
    return [decided_as_labelled]


def pair_results(rows: list[ResultRow]) -> list[PairResult]:
    """The command's records rebuilt from the experiment's rows (items whose target ran)."""
    found: list[PairResult] = []
    for row in rows:
        outputs = row.outputs or {}
        if row.error or not all(outputs.get(n) for n in DIRECTIONS):
            continue
        ref, inputs = row.reference_outputs, row.inputs
        pair = LabelledPair(
            id=row.item_id,
            question=str(inputs["question"]),
            a=str(inputs["a"]),
            b=str(inputs["b"]),
            label=ref["label"],
            annotators=ref.get("annotators") or [],
            has_sides=ref.get("has_sides", True),
            source=str(ref.get("source", row.dataset)),
            line=int(ref.get("line", 0)),
        )
        directions = {
            n: DirectionResult(state=ChainState.model_validate(outputs[n])) for n in DIRECTIONS
        }
        found.append(pair_result(pair, directions, seconds=row.seconds or 0.0))
    return found


def metrics(rows: list[ResultRow], dataset: Any) -> tuple[dict[str, Any], Headline | None]:
    results = pair_results(rows)
    figures = compute_metrics(results)
    curves = calibrations(results, None, TARGET_PRECISION)
    summary: dict[str, Any] = {
        "judge_check": figures.model_dump(mode="json"),
        "calibrations": [c.model_dump(mode="json", exclude={"curve"}) for c in curves],
        "bad_rows": len(getattr(dataset, "bad_rows", [])),
    }
    return summary, None


JUDGE_CHECK = Experiment(
    name="judge-check",
    title="The judge against people's labels, as the loop uses it (judge-check)",
    pipelines=pipelines,
    evaluators=evaluators,
    metrics=metrics,
    load_dataset=load_pairs,
)
