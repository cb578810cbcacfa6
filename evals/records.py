"""What an evaluation run writes, and what the report reads back.

Per run (one experiment on one dataset) a directory holds `results.jsonl` (a `ResultRow`
per item, written as items finish) and `summary.json` (a `RunSummary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from nodes.state import ChainState

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"


class FeedbackRecord(BaseModel):
    """One evaluator result for one item."""

    key: str
    score: float | None = None
    value: Any = None
    comment: str | None = None
    metadata: dict[str, Any] | None = None


class ResultRow(BaseModel):
    """One item: what went in, what each pipeline produced, and every evaluator result."""

    experiment: str
    dataset: str
    item_id: str
    example_id: str
    inputs: dict[str, Any]
    reference_outputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    seconds: float | None = None
    feedback: list[FeedbackRecord] = Field(default_factory=list)

    def state(self, pipeline: str = "refine_n_judge") -> ChainState | None:
        """A pipeline's final state, if the run produced one."""
        raw = (self.outputs or {}).get(pipeline)
        return ChainState.model_validate(raw) if raw else None

    def scores(self) -> dict[str, float]:
        """Numeric feedback by key."""
        return {f.key: f.score for f in self.feedback if f.score is not None}


class KeyStat(BaseModel):
    """Mean of one feedback key over the items that have a score for it."""

    mean: float | None
    n: int


class Headline(BaseModel):
    """A before/after number, as in the paper's table 3."""

    metric: str
    before: float | None
    after: float | None
    change: float | None
    change_kind: Literal["points", "relative"]
    unit: str = ""
    paper: str | None = None
    n: int = 0


class RunSummary(BaseModel):
    """Everything the report needs about one run."""

    experiment: str
    dataset: str
    kind: str
    items: int
    errors: int = Field(description="Items whose target raised (no outputs).")
    model_errors: int = Field(
        default=0, description="Pipeline runs that ended on a model call failing for good."
    )
    started_at: str = ""
    seconds: float = 0.0
    uploaded: bool = False
    experiment_name: str | None = None
    experiment_url: str | None = None
    command: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    feedback: dict[str, KeyStat] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    headline: Headline | None = None
    chain_lengths: dict[int, int] = Field(
        default_factory=dict, description="Refine-n-Judge answers per chain -> items."
    )
    stop_reasons: dict[str, int] = Field(default_factory=dict)
    judge_health: dict[str, Any] = Field(default_factory=dict)
    usage: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="model -> calls/input_tokens/output_tokens."
    )


def read_rows(run_dir: Path) -> list[ResultRow]:
    """The rows of one run directory."""
    path = run_dir / RESULTS_FILE
    return [
        ResultRow.model_validate_json(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def find_summaries(results_dir: Path) -> list[tuple[Path, RunSummary]]:
    """Every run summary under a results directory, in a stable order."""
    found = []
    for path in sorted(results_dir.rglob(SUMMARY_FILE)):
        found.append((path.parent, RunSummary.model_validate_json(path.read_text("utf-8"))))
    return found
