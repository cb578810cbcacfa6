"""The viewer's index over an output folder: built from byte offsets, extended as the files
grow (a half-written line waits), started afresh when a file is replaced or cut, filtered
and paged without reading rows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge.view.index import ItemFilter, RunIndex


def chain_row(item_id: str, length: int = 1, **fields: Any) -> dict[str, Any]:
    roles = ["initial"] + ["refiner"] * length
    return {
        "id": item_id,
        "question": f"Question {item_id}?",
        "chain": [
            {"text": f"v{i}", "iteration": i, "model": "m", "role": role}
            for i, role in enumerate(roles)
        ],
        "stop_reason": "rejected",
    } | fields


def line(row: dict[str, Any]) -> bytes:
    return json.dumps(row).encode() + b"\n"


def ids(index: RunIndex, where: ItemFilter | None = None, page: int = 1, per: int = 50) -> list:
    return [e.id for e in index.page(where or ItemFilter(), page, per).entries]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    (tmp_path / "chains.jsonl").write_bytes(line(chain_row("a")) + line(chain_row("b", 2)))
    return tmp_path


def test_a_half_written_line_waits_until_its_newline(out: Path) -> None:
    index = RunIndex(out)
    assert ids(index) == ["a", "b"]
    whole = line(chain_row("c", 3))
    with open(out / "chains.jsonl", "ab") as handle:
        handle.write(whole[:20])
        handle.flush()
        assert ids(index) == ["a", "b"]
        handle.write(whole[20:])
    assert ids(index) == ["a", "b", "c"]
    entry, row = index.load("c")
    assert entry.chain_length == 3 and row["chain"][-1]["text"] == "v3"


def test_a_replaced_file_is_read_afresh(out: Path) -> None:
    failures = out / "failures.jsonl"
    failures.write_bytes(line({"id": "f1", "stage": "input", "kind": "malformed", "reason": "x"}))
    index = RunIndex(out)
    assert index.load("f1") is not None
    # --retry-failed rewrites failures.jsonl atomically (a new inode), here with another row
    tmp = out / ".failures.tmp"
    tmp.write_bytes(line({"id": "f2", "stage": "refine", "kind": "model_error", "reason": "y",
                          "state": chain_row("f2", 0, stop_reason=None)}))  # fmt: skip
    os.replace(tmp, failures)
    assert index.load("f1") is None
    f2, row = index.load("f2")
    assert f2.failed and f2.kind == "model_error" and f2.chain_length == 0
    assert row["reason"] == "y"
    failures.unlink()
    assert index.load("f2") is None
    assert ids(index) == ["a", "b"]


def test_a_file_cut_shorter_is_read_afresh(out: Path) -> None:
    index = RunIndex(out)
    assert ids(index) == ["a", "b"]
    (out / "chains.jsonl").write_bytes(line(chain_row("z")))
    assert ids(index) == ["z"]
    assert index.load("a") is None


def test_filters_and_pages(out: Path) -> None:
    with open(out / "chains.jsonl", "ab") as handle:
        alt = chain_row("alt", 1, question="Needle in a haystack", stop_reason="max_iterations")
        alt["chain"][1]["role"] = "alternate_refiner"
        handle.write(line(alt))
    bad = {"id": "bad:3", "stage": "input", "kind": "wrong_type", "reason": "question: int"}
    (out / "failures.jsonl").write_bytes(line(bad | {"raw": '{"question": 5}'}))
    index = RunIndex(out)
    assert ids(index) == ["a", "b", "alt", "bad:3"]
    assert ids(index, ItemFilter(status="failed")) == ["bad:3"]
    assert ids(index, ItemFilter(status="ok")) == ["a", "b", "alt"]
    assert ids(index, ItemFilter(alternate=True)) == ["alt"]
    assert ids(index, ItemFilter(stop_reason="rejected")) == ["a", "b"]
    assert ids(index, ItemFilter(chain_length=2)) == ["b"]
    assert ids(index, ItemFilter(text="NEEDLE")) == ["alt"]
    assert ids(index, ItemFilter(text="bad:")) == ["bad:3"]  # ids are searched too
    assert ids(index, ItemFilter(text="nothing like it")) == []
    # pages across the two files, and a page past the end gives the last one
    assert [ids(index, page=p, per=3) for p in (1, 2)] == [["a", "b", "alt"], ["bad:3"]]
    last = index.page(ItemFilter(), 9, 3)
    assert (last.number, last.pages, last.matched, [e.id for e in last.entries]) == (
        2, 2, 4, ["bad:3"],
    )  # fmt: skip
    tally = index.tally()
    assert (tally.items, tally.succeeded, tally.failed, tally.alternate_items) == (4, 3, 1, 1)
    assert tally.chain_lengths == {1: 2, 2: 1}
    assert tally.stop_reasons == {"rejected": 2, "max_iterations": 1}


def test_an_unreadable_line_is_an_entry_saying_so(out: Path) -> None:
    with open(out / "chains.jsonl", "ab") as handle:
        handle.write(b"{not json\n")
        handle.write(line(chain_row("after")))
    index = RunIndex(out)
    assert ids(index) == ["a", "b", "chains.jsonl:3", "after"]
    entry, row = index.load("chains.jsonl:3")
    assert entry.kind == "unreadable_line" and row is None
    assert index.read_raw(entry, 100) == "{not json\n"
    assert index.tally().unreadable == 1


def test_exports_of_an_item(out: Path) -> None:
    (out / "sft.jsonl").write_bytes(line({"id": "b", "prompt": "q", "completion": "v2"}))
    (out / "dpo.jsonl").write_bytes(
        line({"id": "b", "chosen": "v1", "rejected": "v0"})
        + line({"id": "a", "chosen": "v1", "rejected": "v0"})
        + line({"id": "b", "chosen": "v2", "rejected": "v1"})
    )
    index = RunIndex(out)
    sft, dpo = index.exports("b")
    assert sft == {"id": "b", "prompt": "q", "completion": "v2"}
    assert [r["chosen"] for r in dpo] == ["v1", "v2"]
    assert index.exports("missing") == (None, [])


def test_a_row_read_after_its_file_was_rewritten_is_looked_up_again(out: Path) -> None:
    index = RunIndex(out)
    assert index.load("b") is not None
    # rewritten in place between two refreshes, same size, same inode: the offsets are stale
    rows = line(chain_row("x")) + line(chain_row("b", 2))
    assert len(rows) == (out / "chains.jsonl").stat().st_size
    with open(out / "chains.jsonl", "r+b") as handle:
        handle.write(rows)
    entry, row = index.load("b")
    assert row["id"] == "b" and entry.span.offset == len(line(chain_row("x")))
    assert index.load("a") is None
