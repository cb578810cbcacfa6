"""Evaluation datasets: the noisy sets shipped in `evals/data/`, or your own JSONL file.

One JSON object per line: `question`, optionally `answer` (the flawed initial answer the
pipeline starts from), `reference` (the truth, seen only by evaluators and evaluation
judges, never by the pipeline), `aliases` (other accepted spellings of the reference, for
exact match) and `keywords` (facts a shortened answer must keep).
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Literal

from langsmith.schemas import Example
from pydantic import BaseModel, Field, ValidationError

DATA_DIR = Path(__file__).parent / "data"

Kind = Literal["acronym", "verbose", "misconception", "generic"]
"""Which metrics fit a dataset: exact match, length, judged truthfulness, or the general set."""

SHIPPED: dict[str, Kind] = {
    "acronyms": "acronym",
    "verbose": "verbose",
    "misconceptions": "misconception",
}

# Fixed namespace so a dataset's example ids are the same on every run (stable files,
# comparable LangSmith experiments).
_NAMESPACE = uuid.UUID("6f4a3c1e-0b7d-5e2a-9c3f-1d2e3f4a5b6c")
_EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


class DatasetError(ValueError):
    """A dataset name or file that cannot be used; the message says what to fix."""


class EvalItem(BaseModel):
    """One evaluation item."""

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answer: str | None = None
    reference: str | None = None
    aliases: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)

    def inputs(self) -> dict[str, str | None]:
        """What the pipeline sees: never the reference."""
        return {"id": self.id, "question": self.question, "answer": self.answer}

    def reference_outputs(self) -> dict[str, object]:
        """What only the evaluators see."""
        return {"reference": self.reference, "aliases": self.aliases, "keywords": self.keywords}


class Dataset(BaseModel):
    """A named list of items and the kind of metrics that fit it."""

    name: str
    kind: Kind
    items: list[EvalItem]

    def examples(self) -> list[Example]:
        """LangSmith `Example`s for `evaluate(..., upload_results=False)`, with stable ids."""
        dataset_id = uuid.uuid5(_NAMESPACE, self.name)
        return [
            Example(
                id=uuid.uuid5(_NAMESPACE, f"{self.name}/{item.id}"),
                dataset_id=dataset_id,
                inputs=item.inputs(),
                outputs=item.reference_outputs(),
                metadata={"item_id": item.id, "dataset": self.name, "kind": self.kind},
                created_at=_EPOCH,
            )
            for item in self.items
        ]


def load_dataset(name_or_path: str, *, limit: int | None = None) -> Dataset:
    """A shipped dataset by name (`acronyms`, `verbose`, `misconceptions`) or a JSONL path."""
    if name_or_path in SHIPPED:
        path, name, kind = DATA_DIR / f"{name_or_path}.jsonl", name_or_path, SHIPPED[name_or_path]
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise DatasetError(
                f"no dataset {name_or_path!r}: use one of {sorted(SHIPPED)} or a JSONL file path"
            )
        name, kind = path.stem, "generic"
    items = _read_items(path)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise DatasetError(f"dataset {path} has no items")
    return Dataset(name=name, kind=kind, items=items)


def _read_items(path: Path) -> list[EvalItem]:
    items: list[EvalItem] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("each line must be a JSON object")
            record.setdefault("id", f"{path.stem}-{number}")
            items.append(EvalItem.model_validate(record))
        except (ValueError, ValidationError) as exc:
            raise DatasetError(f"{path}:{number}: not a valid item: {exc}") from exc
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: item ids are not unique")
    return items
