"""Offline vs upload: the key decides; offline clients cannot send; the dataset sync."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langsmith.schemas import Dataset, Example

from evals.datasets import load_dataset
from evals.runner import OfflineError, offline_client, sync_dataset, upload_enabled
from tests.support.eval_world import no_network


def test_upload_only_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert upload_enabled() is False
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test")
    assert upload_enabled() is True


def test_the_offline_client_refuses_to_send() -> None:
    client = offline_client()
    with no_network() as attempts, pytest.raises(OfflineError, match="refused"):
        client.session.get("https://api.smith.langchain.com/info")
    assert attempts == []
    assert client.tracing_sample_rate == 0.0


class StubClient:
    """The five LangSmith client methods the sync uses, in memory."""

    def __init__(self) -> None:
        self.datasets: dict[str, Dataset] = {}
        self.examples: list[Example] = []
        self.created: list[Any] = []

    def has_dataset(self, *, dataset_name: str) -> bool:
        return dataset_name in self.datasets

    def read_dataset(self, *, dataset_name: str) -> Dataset:
        return self.datasets[dataset_name]

    def create_dataset(self, name: str, **kwargs: Any) -> Dataset:
        dataset = Dataset(id=uuid.uuid4(), name=name, created_at="2026-01-01T00:00:00Z")
        self.datasets[name] = dataset
        return dataset

    def list_examples(self, *, dataset_id: uuid.UUID) -> list[Example]:
        return [e for e in self.examples if e.dataset_id == dataset_id]

    def create_examples(self, *, dataset_id: uuid.UUID, examples: list[Any]) -> None:
        self.created.extend(examples)
        for new in examples:
            self.examples.append(
                Example(
                    id=uuid.uuid4(),
                    dataset_id=dataset_id,
                    inputs=new.inputs,
                    outputs=new.reference_outputs,
                    metadata=new.metadata,
                )
            )


def test_sync_creates_the_dataset_and_only_missing_items() -> None:
    client = StubClient()
    two = load_dataset("acronyms", limit=2)
    synced = sync_dataset(client, two)  # type: ignore[arg-type]
    remote = client.datasets["refine-n-judge/acronyms"]
    assert [e.metadata["item_id"] for e in synced] == ["nasa", "laser"]
    assert all(e.dataset_id == remote.id for e in synced)
    assert synced[0].outputs["reference"] == "National Aeronautics and Space Administration"
    assert "reference" not in synced[0].inputs

    three = load_dataset("acronyms", limit=3)
    again = sync_dataset(client, three)  # type: ignore[arg-type]
    assert [e.metadata["item_id"] for e in again] == ["nasa", "laser", "scuba"]
    assert [e.id for e in again[:2]] == [e.id for e in synced]  # reused, not duplicated
    assert len(client.created) == 3
