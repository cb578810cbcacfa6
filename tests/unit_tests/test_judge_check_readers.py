"""Each labelled-pair layout on a small file; bad rows name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refine_n_judge.curate.errors import InputRowError, SettingsError
from refine_n_judge.judge_check.readers import (
    LabelledPair,
    detect_pair_format,
    read_pairs,
)

PANDALM_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def split(path: Path, fmt: str) -> tuple[list[LabelledPair], list[InputRowError]]:
    rows = list(read_pairs(path, fmt))  # type: ignore[arg-type]
    return (
        [r for r in rows if isinstance(r, LabelledPair)],
        [r for r in rows if isinstance(r, InputRowError)],
    )


def test_pandalm_array_majority_and_question(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            [
                {
                    "idx": 7,
                    "instruction": "Rewrite.",
                    "input": "Some text.",
                    "response1": "A",
                    "response2": "B",
                    "annotator1": 2,
                    "annotator2": 2,
                    "annotator3": 1,
                },
                {
                    "idx": 8,
                    "instruction": "Say hi.",
                    "input": "",
                    "response1": "hi",
                    "response2": "hello",
                    "annotator1": 0,
                    "annotator2": 0,
                    "annotator3": 0,
                },
                {
                    "idx": 9,
                    "instruction": "X",
                    "input": "",
                    "response1": True,
                    "response2": "b",
                    "annotator1": 1,
                    "annotator2": 1,
                    "annotator3": 1,
                },
            ],
            indent=1,
        )
    )
    assert detect_pair_format(path) == "pandalm"
    pairs, errors = split(path, "pandalm")
    first, tie = pairs
    assert (first.id, first.question, first.label, first.unanimous) == (
        "7", "Rewrite.\n\nSome text.", "b", False,
    )  # fmt: skip
    assert (first.better, first.worse, first.annotators) == ("B", "A", ["b", "b", "a"])
    assert (tie.question, tie.label, tie.unanimous) == ("Say hi.", "tie", True)
    (error,) = errors
    assert (error.field, error.kind, error.item_id) == ("response1", "wrong_type", "9")
    assert error.describe().startswith("p.json:22: field 'response1': must be text")


def test_llmbar(tmp_path: Path) -> None:
    path = tmp_path / "llmbar.json"
    path.write_text(
        json.dumps(
            [
                {"input": "Q?", "output_1": "one", "output_2": "two", "label": 2},
                {"input": "Q2?", "output_1": "one", "output_2": "two", "label": 3},
            ]
        )
    )
    assert detect_pair_format(path) == "llmbar"
    pairs, errors = split(path, "llmbar")
    assert [(p.id, p.label, p.better) for p in pairs] == [("llmbar.json:1", "b", "two")]
    assert (errors[0].field, errors[0].kind) == ("label", "invalid_label")
    assert "expected one of 1, 2" in errors[0].message


def test_judgebench_jsonl(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "jb.jsonl",
        [
            {"pair_id": "p1", "question": "Q", "response_A": "a", "response_B": "b",
             "label": "A>B"},
            {"pair_id": "p2", "question": "Q", "response_A": "a", "response_B": "b",
             "label": "B>A"},
            {"pair_id": "p3", "question": "Q", "response_A": "a", "label": "B>A"},
            {"pair_id": "p1", "question": "Q", "response_A": "a", "response_B": "b",
             "label": "A>B"},
        ],
    )  # fmt: skip
    assert detect_pair_format(path) == "judgebench"
    pairs, errors = split(path, "judgebench")
    assert [(p.id, p.label) for p in pairs] == [("p1", "a"), ("p2", "b")]
    assert [(e.line, e.field, e.kind) for e in errors] == [
        (3, "response_B", "missing_field"),
        (4, "pair_id", "duplicate_id"),
    ]


def test_plain_jsonl_with_reference_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text(
        json.dumps({"id": "x", "question": "Q", "better": "good", "worse": "bad",
                    "reference": "truth"}) + "\n"
        "{not json\n"
        "\n"
        + json.dumps({"question": "  ", "better": "", "worse": "bad"}) + "\n"
        + json.dumps([1, 2]) + "\n"
    )  # fmt: skip
    assert detect_pair_format(path) == "plain"
    pairs, errors = split(path, "plain")
    (pair,) = pairs
    assert (pair.better, pair.worse, pair.reference, pair.has_sides) == (
        "good", "bad", "truth", False,
    )  # fmt: skip
    assert [(e.line, e.field, e.kind) for e in errors] == [
        (2, None, "malformed"),
        (4, "question", "empty_field"),
        (5, None, "malformed"),
    ]


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_an_undecodable_byte_fails_its_row_and_keeps_the_rest(tmp_path: Path, layout: str) -> None:
    good = json.dumps({"question": "Q", "better": "good", "worse": "bad"}).encode()
    bad = b'{"question": "\xff\xfe", "better": "a", "worse": "b"}'
    path = tmp_path / f"pairs.{layout}"
    if layout == "jsonl":
        path.write_bytes(good + b"\n" + bad + b"\n" + good.replace(b"Q", b"Q2") + b"\n")
    else:
        path.write_bytes(
            b"[\n" + good + b",\n" + bad + b",\n" + good.replace(b"Q", b"Q2") + b"\n]\n"
        )
    assert detect_pair_format(path) == "plain"
    pairs, errors = split(path, "plain")
    assert [p.question for p in pairs] == ["Q", "Q2"]
    bad_line = 2 if layout == "jsonl" else 3  # the array's "[" is line 1
    assert [(e.line, e.kind) for e in errors] == [(bad_line, "malformed")]
    assert "not valid UTF-8" in str(errors[0]) and "\ufffd" in (errors[0].raw or "")
    json.dumps(errors[0].raw, ensure_ascii=False).encode()  # writable to failures.jsonl


def test_unknown_layout_and_missing_file_are_settings_errors(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "other.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(SettingsError, match=r"cannot tell the layout .* pass --format"):
        detect_pair_format(path)
    assert detect_pair_format(path, "plain") == "plain"
    with pytest.raises(SettingsError, match="does not exist"):
        detect_pair_format(tmp_path / "missing.json")


@pytest.mark.skipif(
    not (PANDALM_DATA / "pandalm-testset-v1.json").exists(),
    reason="the shared development data (../shared/data) is not on this machine",
)
def test_the_pandalm_test_set_reads_as_its_readme_says() -> None:
    path = PANDALM_DATA / "pandalm-testset-v1.json"
    assert detect_pair_format(path) == "pandalm"
    pairs, errors = split(path, "pandalm")
    assert len(pairs) + len(errors) == 999
    # six responses are JSON `true` and one instruction is empty; empty responses are
    # answers people judged, so they are kept
    assert sorted((e.kind, e.field) for e in errors) == [("empty_field", "instruction")] + [
        ("wrong_type", f) for f in ["response1"] * 4 + ["response2"] * 2
    ]
    unanimous = [p for p in pairs if p.unanimous and p.label != "tie"]
    assert len(unanimous) > 700
