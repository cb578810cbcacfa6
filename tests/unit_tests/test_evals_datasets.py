"""The shipped datasets are what the metrics assume, and custom files load or fail clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from endpoints.tokens import count_tokens
from evals.datasets import SHIPPED, DatasetError, load_dataset
from evals.evaluators import expansion_matches, normalize


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_datasets_have_a_dozen_items_with_references(name: str) -> None:
    dataset = load_dataset(name)
    assert dataset.kind == SHIPPED[name]
    assert len(dataset.items) == 12
    assert all(item.answer and item.reference for item in dataset.items)


def test_every_initial_acronym_is_wrong_and_checkable() -> None:
    for item in load_dataset("acronyms").items:
        assert item.reference and item.answer
        assert not expansion_matches(item.answer, item.reference, item.aliases), item.id
        assert item.reference[0] == item.id[0].upper(), item.id


def test_verbose_answers_are_padded_but_keep_their_facts() -> None:
    for item in load_dataset("verbose").items:
        assert item.keywords and item.answer and item.reference
        assert count_tokens(item.answer) > 4 * count_tokens(item.reference), item.id
        for keyword in item.keywords:
            assert normalize(keyword) in normalize(item.answer), (item.id, keyword)
            assert normalize(keyword) in normalize(item.reference), (item.id, keyword)


def test_misconception_answers_are_not_their_references() -> None:
    for item in load_dataset("misconceptions").items:
        assert item.answer and item.reference
        assert normalize(item.reference) not in normalize(item.answer), item.id
        assert item.answer.split(".")[0] != item.reference.split(".")[0], item.id


def test_examples_have_stable_ids_and_hide_the_reference_from_inputs() -> None:
    first, again = load_dataset("acronyms").examples(), load_dataset("acronyms").examples()
    assert [e.id for e in first] == [e.id for e in again]
    assert len({e.id for e in first}) == 12
    assert all("reference" not in e.inputs for e in first)
    assert first[0].outputs["reference"] == "National Aeronautics and Space Administration"
    assert first[0].metadata == {"item_id": "nasa", "dataset": "acronyms", "kind": "acronym"}


def test_limit_and_custom_files(tmp_path: Path) -> None:
    assert [i.id for i in load_dataset("verbose", limit=2).items] == [
        "water-boiling",
        "capital-australia",
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"question": "Q?", "reference": "R"})
        + "\n\n"
        + json.dumps({"id": "b", "question": "Q2?"})
        + "\n"
    )
    dataset = load_dataset(str(path))
    assert (dataset.name, dataset.kind) == ("mine", "generic")
    assert [i.id for i in dataset.items] == ["mine-1", "b"]
    assert dataset.items[0].answer is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"answer": "no question"}\n', "mine.jsonl:1", id="missing-question"),
        pytest.param("not json\n", "mine.jsonl:1", id="not-json"),
        pytest.param("[1, 2]\n", "JSON object", id="not-an-object"),
        pytest.param(
            '{"id": "a", "question": "q"}\n{"id": "a", "question": "r"}\n',
            "not unique",
            id="duplicate-ids",
        ),
        pytest.param("\n", "no items", id="empty"),
    ],
)
def test_bad_files_are_refused_with_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(path))
