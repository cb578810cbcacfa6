"""The output directory after a crash: torn last lines, exports of uncommitted items,
retried failures (retired only when redone, whatever the kill window), changed rows,
rebuilt exports, and damage it refuses to guess about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.state import Answer, ChainState, Decision
from refine_n_judge.curate.errors import OutputCorruptError, SettingsError
from refine_n_judge.curate.exports import dpo_rows, sft_row
from refine_n_judge.curate.outputs import OutputDir, repair_torn_tail
from refine_n_judge.curate.records import FailureRow


def state(item_id: str) -> ChainState:
    return ChainState(
        id=item_id,
        question=f"q {item_id}",
        chain=[
            Answer(text="a0", iteration=0, model="input", role="initial"),
            Answer(text="a1", iteration=1, model="m", role="refiner"),
        ],
        decisions=[
            Decision(
                iteration=1,
                candidate_role="refiner",
                candidate_model="m",
                verdicts=[],
                answered=1,
                votes_for_refined=1,
                quorum=1,
                accepted=True,
                outcome="refined",
            )
        ],
        stop_reason="max_iterations",
    )


def failure(item_id: str) -> FailureRow:
    return FailureRow(id=item_id, stage="input", kind="malformed", reason="bad")


def write(outputs: OutputDir, *ids: str) -> None:
    outputs.open()
    for item_id in ids:
        s = state(item_id)
        outputs.write_chain(s, sft_row(s), dpo_rows(s))
    outputs.close()


def scan(outputs: OutputDir) -> tuple[list[str], list[str], object]:
    chains: list[str] = []
    failed: list[str] = []
    resume = outputs.scan(
        lambda s: chains.append(str(s.id)),
        lambda r: failed.append(r.id),
        lambda r: None,
        lambda s: (sft_row(s), dpo_rows(s)),
    )
    return chains, failed, resume


def ids_in(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_repair_torn_tail_cuts_only_an_unfinished_last_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    assert repair_torn_tail(path) is True
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert repair_torn_tail(path) is False
    path.write_bytes(b'{"only": "torn')
    assert repair_torn_tail(path) is True
    assert path.read_bytes() == b""


def test_scan_repairs_a_torn_chain_line_and_forgets_that_item(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    write(outputs, "a", "b")
    with open(outputs.chains, "ab") as handle:
        handle.write(state("c").to_json_line().encode()[:50])  # killed mid-write
    chains, _, resume = scan(outputs)
    assert chains == ["a", "b"]
    assert resume.repaired == ["chains.jsonl"]  # type: ignore[attr-defined]
    assert resume.done == {"a", "b"}  # type: ignore[attr-defined]
    assert outputs.chains.read_bytes().endswith(b"\n")


def test_exports_of_an_item_killed_before_its_commit_are_removed(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    write(outputs, "a")
    # "b" got its sft and dpo rows out, then the process died before chains.jsonl.
    s = state("b")
    with open(outputs.sft, "ab") as handle:
        handle.write((sft_row(s).model_dump_json() + "\n").encode())  # type: ignore[union-attr]
    with open(outputs.dpo, "ab") as handle:
        handle.write((dpo_rows(s)[0].model_dump_json() + "\n").encode())
    _, _, resume = scan(outputs)
    assert ids_in(outputs.sft) == ["a"]
    assert ids_in(outputs.dpo) == ["a"]
    assert resume.dropped_uncommitted == 2  # type: ignore[attr-defined]
    assert (resume.sft_rows, resume.dpo_rows) == (1, 1)  # type: ignore[attr-defined]


def test_missing_exports_are_rebuilt_from_chains(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    write(outputs, "a", "b")
    expected_sft, expected_dpo = outputs.sft.read_bytes(), outputs.dpo.read_bytes()
    outputs.sft.unlink()
    outputs.dpo.unlink()
    _, _, resume = scan(outputs)
    assert resume.rebuilt == ["sft.jsonl", "dpo.jsonl"]  # type: ignore[attr-defined]
    assert outputs.sft.read_bytes() == expected_sft
    assert outputs.dpo.read_bytes() == expected_dpo


def test_failures_count_as_done_unless_retried(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    outputs.open()
    outputs.write_failure(failure("x:3"))
    outputs.close()
    _, failed, resume = scan(outputs)
    assert failed == ["x:3"] and resume.done == {"x:3"}  # type: ignore[attr-defined]
    _, failed, resume = retry_scan(outputs)
    assert failed == ["x:3"] and resume.done == set()  # type: ignore[attr-defined]
    assert ids_in(outputs.failures) == ["x:3"]  # still a failure until it is redone
    outputs.open()
    outputs.write_failure(failure("x:3").model_copy(update={"reason": "still bad"}))
    outputs.close()
    assert [json.loads(line)["reason"] for line in outputs.failures.read_text().splitlines()] == [
        "still bad"
    ]
    assert ids_in(outputs.retired_failures) == ["x:3"]


def test_a_damaged_line_that_is_not_the_last_is_refused(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    write(outputs, "a")
    content = outputs.chains.read_text()
    outputs.chains.write_text("{not json}\n" + content)
    with pytest.raises(OutputCorruptError, match=r"chains.jsonl:1 is not a valid ChainState"):
        scan(outputs)


def test_an_unwritable_output_directory_is_a_settings_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match="cannot write to the output directory"):
        OutputDir(blocker / "out").create()


def retry_scan(outputs: OutputDir) -> tuple[list[str], list[str], object]:
    chains: list[str] = []
    failed: list[str] = []
    resume = outputs.scan(
        lambda s: chains.append(str(s.id)),
        lambda r: failed.append(r.id),
        lambda _r: None,
        lambda s: (sft_row(s), dpo_rows(s)),
        retry_failed=True,
    )
    return chains, failed, resume


def test_retry_keeps_every_failure_until_its_item_is_redone(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    outputs.open()
    for key in ("f1", "f2", "f3"):
        outputs.write_failure(failure(key))
    outputs.close()
    _, failed, resume = retry_scan(outputs)
    assert failed == ["f1", "f2", "f3"]
    assert resume.done == set() and set(resume.retrying) == {"f1", "f2", "f3"}  # type: ignore[attr-defined]
    # Only f1 is redone (a --limit or a stop): f2 and f3 stay failures.
    outputs.open()
    s = state("f1")
    outputs.write_chain(s, sft_row(s), dpo_rows(s))
    outputs.close()
    assert ids_in(outputs.failures) == ["f2", "f3"]
    assert ids_in(outputs.retired_failures) == ["f1"]
    assert ids_in(outputs.chains) == ["f1"]


def test_a_kill_after_a_retried_item_is_written_resolves_on_resume(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    outputs.open()
    for key in ("f1", "f2", "f3"):
        outputs.write_failure(failure(key))
    outputs.close()
    retry_scan(outputs)
    # What a kill -9 leaves: f1 redone as a chain, f2 failed again; old rows still there.
    with open(outputs.chains, "ab") as handle:
        handle.write((state("f1").to_json_line() + "\n").encode())
    with open(outputs.failures, "ab") as handle:
        again = failure("f2").model_copy(update={"reason": "again"})
        handle.write((again.to_json_line() + "\n").encode())
    chains, failed, resume = scan(outputs)
    assert chains == ["f1"] and sorted(failed) == ["f2", "f3"]
    assert resume.done == {"f1", "f2", "f3"}  # type: ignore[attr-defined]
    rows = [json.loads(line) for line in outputs.failures.read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rows] == [("f3", "bad"), ("f2", "again")]
    assert sorted(ids_in(outputs.retired_failures)) == ["f1", "f2"]


def test_drop_items_takes_changed_rows_out_of_every_file(tmp_path: Path) -> None:
    outputs = OutputDir(tmp_path)
    write(outputs, "a", "b")
    outputs.open()
    outputs.write_failure(failure("c"))
    outputs.close()
    with open(outputs.chains, "ab") as handle:  # a kill -9 tore the last line
        handle.write(b'{"id": "d", "ques')
    assert outputs.drop_items({"a", "c"}) == 2
    assert ids_in(outputs.chains) == ["b"] and ids_in(outputs.failures) == []
    assert ids_in(outputs.sft) == ["b"] and set(ids_in(outputs.dpo)) == {"b"}
    assert ids_in(outputs.replaced_chains) == ["a"]
    assert ids_in(outputs.retired_failures) == ["c"]
