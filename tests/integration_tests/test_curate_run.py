"""`refine-n-judge curate` end to end over HTTP against the local fake OpenAI server:
outputs, exports loaded back with `datasets`, resume, --retry-failed, the LLM cache,
the settings check, secrets, log modes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge import cli
from tests.support.fake_openai import ChatRequest, FakeOpenAIServer, Reply
from tests.support.scripts import http_responder, versioned_handler

GOOD_ROWS: list[dict[str, Any]] = [
    {"id": "a", "question": "What is v?", "answer": "v0"},
    {"id": "b", "question": "What is w?", "answer": "v1", "reference": "v3"},
    {"id": "c", "question": "Write v."},  # no answer: the refiner writes v0
    {"messages": [{"role": "user", "content": "chat v?"}, {"role": "assistant", "content": "v0"}]},
]
BAD_LINES = [
    '{"id": "d", "question": 5}',  # wrong type
    "{not json",  # malformed
    '{"id": "a", "question": "again", "answer": "v0"}',  # duplicate id
]


class Script:
    """The versioned script (chains grow to v2), switchable per test."""

    def __init__(self) -> None:
        self.handler: Callable[[str, str], object] = versioned_handler(stop_at=2)

    def __call__(self, request: ChatRequest) -> Reply:
        return http_responder(self.handler)(request)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(script, model="fake") as srv:  # listed: no preflight probe
        yield srv


def write_input(path: Path, rows: list[dict[str, Any]], bad: list[str] = ()) -> Path:  # type: ignore[assignment]
    lines = [json.dumps(r) for r in rows] + list(bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def curate(server: FakeOpenAIServer, inputs: list[Path], out: Path, *flags: str) -> int:
    return cli.main(
        ["curate", *map(str, inputs), "--out", str(out), "--refiner", "fake",
         "--base-url", server.base_url, "--concurrency", "3", *flags]
    )  # fmt: skip


def rows_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_each_row_once(out: Path, expected: int) -> None:
    keys = [r["id"] for r in rows_of(out / "chains.jsonl")] + [
        r["id"] for r in rows_of(out / "failures.jsonl")
    ]
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicated, duplicated
    assert len(keys) == expected


def test_outputs_of_a_mixed_input(server: FakeOpenAIServer, tmp_path: Path) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS, BAD_LINES)
    out = tmp_path / "out"
    assert curate(server, [data], out) == 1  # bad rows failed

    chains = {r["id"]: r for r in rows_of(out / "chains.jsonl")}
    assert len(chains) == 4
    assert [a["text"] for a in chains["a"]["chain"]] == ["v0", "v1", "v2"]
    assert chains["a"]["stop_reason"] == "rejected"
    assert chains["a"]["last_rejected"]["text"] == "v3"
    assert chains["b"]["reference"] == "v3"
    assert chains["c"]["chain"][0] == {
        **chains["c"]["chain"][0], "text": "v0 generated", "model": "fake", "role": "initial",
    }  # fmt: skip
    chat_id = next(k for k in chains if k.startswith("auto-"))
    assert chains[chat_id]["question"] == "chat v?"
    assert chains[chat_id]["history"] == []  # a conversation, with no turn before the question

    failures = {r["id"]: r for r in rows_of(out / "failures.jsonl")}
    assert set(failures) == {"in.jsonl:5", "in.jsonl:6", "in.jsonl:7"}
    assert failures["in.jsonl:5"]["kind"] == "wrong_type"
    assert failures["in.jsonl:5"]["field"] == "question"
    assert failures["in.jsonl:6"]["kind"] == "malformed"
    assert failures["in.jsonl:7"] == {
        **failures["in.jsonl:7"], "kind": "duplicate_id", "item_id": "a", "line": 7,
    }  # fmt: skip
    assert_each_row_once(out, 7)

    sft = rows_of(out / "sft.jsonl")
    final = {r["id"]: r.get("completion") or r["messages"][-1]["content"] for r in sft}
    assert final == {k: "v2" for k in chains}
    assert next(r for r in sft if r["id"] == chat_id)["messages"] == [
        {"role": "user", "content": "chat v?"},
        {"role": "assistant", "content": "v2"},
    ]
    dpo = rows_of(out / "dpo.jsonl")
    a_pairs = [(r["chosen"], r["rejected"], r["pair"], r["outcome"]) for r in dpo if r["id"] == "a"]
    assert a_pairs == [
        ("v1", "v0", "accepted_step", "refined"),
        ("v2", "v1", "accepted_step", "refined"),
        ("v2", "v3", "final_over_rejected", "previous"),
    ]
    assert all(isinstance(r["confidence"], float) for r in dpo)

    report = json.loads((out / "run.json").read_text())
    assert report["status"] == "finished"
    assert report["counts"]["items"] == 7
    assert report["counts"]["succeeded"] == 4 and report["counts"]["failed"] == 3
    assert report["counts"]["sft_rows"] == len(sft) and report["counts"]["dpo_rows"] == len(dpo)
    assert report["chain_length_histogram"] == {"1": 1, "2": 3}  # b starts at v1
    assert report["stop_reasons"] == {"rejected": 4}
    assert report["usage"]["fake"]["calls"] == len(server.requests)
    assert report["usage"]["fake"]["by_node"]["judge"]["calls"] == 2 * 11
    assert report["judge_health"]["swap_consistency"] == 1.0
    assert report["cost_usd"] is None and report["unpriced_models"] == ["fake"]
    assert report["packages"]["langgraph"]
    assert report["settings"]["context"]["refiner"] == "fake"
    assert [i["status"] for i in report["invocations"]] == ["finished"]


def test_exports_load_with_datasets_in_trl_columns(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    plain = GOOD_ROWS[:3]  # TRL takes one format per dataset; chat rows: the test below
    assert curate(server, [write_input(tmp_path / "in.jsonl", plain)], out) == 0
    cache_dir = str(tmp_path / "hf-cache")
    sft = datasets.load_dataset(
        "json", data_files=str(out / "sft.jsonl"), split="train", cache_dir=cache_dir
    )
    assert {"prompt", "completion"} <= set(sft.column_names) and len(sft) == 3
    assert sft.features["prompt"].dtype == "string"
    assert sft.features["completion"].dtype == "string"
    dpo = datasets.load_dataset(
        "json", data_files=str(out / "dpo.jsonl"), split="train", cache_dir=cache_dir
    )
    assert {"prompt", "chosen", "rejected"} <= set(dpo.column_names)
    for column in ("prompt", "chosen", "rejected"):
        assert dpo.features[column].dtype == "string"
        assert all(isinstance(v, str) and v for v in dpo[column])
    chains = datasets.load_dataset(
        "json", data_files=str(out / "chains.jsonl"), split="train", cache_dir=cache_dir
    )
    assert len(chains) == 3


THREE_TURNS = [
    {"role": "system", "content": "You answer about versions."},
    {"role": "user", "content": "Name a version of w."},
    {"role": "assistant", "content": "w7 is one."},
    {"role": "user", "content": "Now make it shorter."},
    {"role": "assistant", "content": "v0"},
]


def test_a_chat_row_keeps_its_conversation_in_prompts_and_exports(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "out"
    rows = [{"id": "chat-1", "messages": THREE_TURNS}, {"id": "chat-2", "messages": THREE_TURNS}]
    assert curate(server, [write_input(tmp_path / "in.jsonl", rows)], out) == 0

    chain = rows_of(out / "chains.jsonl")[0]
    assert chain["question"] == "Now make it shorter."
    assert chain["history"] == THREE_TURNS[:3]
    assert [a["text"] for a in chain["chain"]] == ["v0", "v1", "v2"]
    prompts = [r.texts("user")[0] for r in server.requests]
    assert len(prompts) == 2 * 12  # (feedback, refine, 2 judge calls) x 3 iterations, each
    for prompt in prompts:  # feedback, refine and judge all see the earlier turns
        assert '<turn role="system">You answer about versions.</turn>' in prompt
        assert '<turn role="user">Name a version of w.</turn>' in prompt
        assert '<turn role="assistant">w7 is one.</turn>' in prompt
        assert "<question>Now make it shorter.</question>" in prompt

    cache_dir = str(tmp_path / "hf-cache")
    dpo = datasets.load_dataset(
        "json", data_files=str(out / "dpo.jsonl"), split="train", cache_dir=cache_dir
    )
    expected_prompt = [*THREE_TURNS[:4]]
    assert len(dpo) == 6
    assert all(row == expected_prompt for row in dpo["prompt"])
    assert dpo[0]["chosen"] == [{"role": "assistant", "content": "v1"}]
    assert dpo[0]["rejected"] == [{"role": "assistant", "content": "v0"}]
    assert dpo["pair"] == ["accepted_step", "accepted_step", "final_over_rejected"] * 2
    sft = datasets.load_dataset(
        "json", data_files=str(out / "sft.jsonl"), split="train", cache_dir=cache_dir
    )
    assert sft[0]["messages"] == [*THREE_TURNS[:4], {"role": "assistant", "content": "v2"}]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
def test_other_formats_give_the_same_chains(
    server: FakeOpenAIServer, tmp_path: Path, fmt: str
) -> None:
    rows = [{"id": f"r{i}", "question": f"q{i}?", "answer": "v0"} for i in range(3)]
    path = tmp_path / f"in.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows, indent=1))
    elif fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "question", "answer"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.Table.from_pylist(rows), path)
    out = tmp_path / "out"
    assert curate(server, [path], out) == 0
    assert sorted(r["id"] for r in rows_of(out / "chains.jsonl")) == ["r0", "r1", "r2"]
    assert {r["completion"] for r in rows_of(out / "sft.jsonl")} == {"v2"}


def test_field_mapping_flags(server: FakeOpenAIServer, tmp_path: Path) -> None:
    data = write_input(
        tmp_path / "in.jsonl", [{"uid": 1, "prompt": "q?", "response": "v0", "gold": "v2"}]
    )
    out = tmp_path / "out"
    flags = ["--id-field", "uid", "--question-field", "prompt", "--answer-field", "response",
             "--reference-field", "gold"]  # fmt: skip
    assert curate(server, [data], out, *flags) == 0
    [chain] = rows_of(out / "chains.jsonl")
    assert (chain["id"], chain["question"], chain["reference"]) == ("1", "q?", "v2")


def test_rerun_skips_finished_items_without_a_call(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS, BAD_LINES)
    out = tmp_path / "out"
    assert curate(server, [data], out) == 1
    before = (len(server.requests), (out / "chains.jsonl").read_bytes())
    assert curate(server, [data], out) == 1  # still failures in the directory
    assert (len(server.requests), (out / "chains.jsonl").read_bytes()) == before
    assert_each_row_once(out, 7)
    report = json.loads((out / "run.json").read_text())
    assert [i["skipped_done"] for i in report["invocations"]] == [0, 7]
    # More input later: only the new rows run.
    more = write_input(tmp_path / "more.jsonl", [{"id": "e", "question": "q", "answer": "v0"}])
    assert curate(server, [data, more], out) == 1
    assert_each_row_once(out, 8)


def test_limit_processes_only_that_many_new_items(server: FakeOpenAIServer, tmp_path: Path) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS)
    out = tmp_path / "out"
    assert curate(server, [data], out, "--limit", "2") == 0
    assert len(rows_of(out / "chains.jsonl")) == 2
    assert curate(server, [data], out) == 0
    assert_each_row_once(out, 4)


def test_model_failure_keeps_the_partial_chain_and_retry_failed_redoes_it(
    server: FakeOpenAIServer, script: Script, tmp_path: Path
) -> None:
    good = versioned_handler(stop_at=2)

    def broken_refiner(role: str, prompt: str) -> object:
        if role.startswith("refine") and "What is w?" in prompt:
            return "I cannot produce JSON today."
        return good(role, prompt)

    script.handler = broken_refiner
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS[:2])
    out = tmp_path / "out"
    assert curate(server, [data], out, "--max-attempts", "2") == 1
    [failure] = rows_of(out / "failures.jsonl")
    assert failure["id"] == "b" and failure["stage"] == "refine"
    assert failure["kind"] == "model_error"
    assert failure["raw"] == "I cannot produce JSON today."
    assert "unparseable" in failure["reason"]
    assert [a["text"] for a in failure["state"]["chain"]] == ["v1"]  # nothing lost

    script.handler = good
    assert curate(server, [data], out, "--max-attempts", "2", "--retry-failed") == 0
    assert rows_of(out / "failures.jsonl") == []
    assert [r["id"] for r in rows_of(out / "failures.retried.jsonl")] == ["b"]
    assert sorted(r["id"] for r in rows_of(out / "chains.jsonl")) == ["a", "b"]
    report = json.loads((out / "run.json").read_text())
    assert report["counts"] == {**report["counts"], "succeeded": 2, "failed": 0}
    assert report["invocations"][-1]["retried_failures"] == 1


@pytest.mark.filterwarnings("ignore:The function `loads` is in beta")
def test_cache_makes_redoing_finished_work_free(server: FakeOpenAIServer, tmp_path: Path) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS)
    out = tmp_path / "out"
    assert curate(server, [data], out, "--cache") == 0
    assert (out / "llm_cache.sqlite").exists()
    first_chains = sorted(rows_of(out / "chains.jsonl"), key=lambda r: r["id"])
    calls = len(server.requests)
    for name in ("chains.jsonl", "sft.jsonl", "dpo.jsonl", "failures.jsonl"):
        (out / name).unlink(missing_ok=True)

    assert curate(server, [data], out, "--cache") == 0
    assert len(server.requests) == calls  # zero HTTP requests
    again = sorted(rows_of(out / "chains.jsonl"), key=lambda r: r["id"])
    assert [[a["text"] for a in c["chain"]] for c in again] == [
        [a["text"] for a in c["chain"]] for c in first_chains
    ]
    report = json.loads((out / "run.json").read_text())
    assert report["invocations"][-1]["cache"] == {"hits": calls, "misses": 0}
    assert report["cached_calls"] == calls


def test_other_settings_are_refused_unless_forced(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS[:1])
    out = tmp_path / "out"
    assert curate(server, [data], out) == 0
    calls = len(server.requests)
    capsys.readouterr()
    assert curate(server, [data], out, "--max-iterations", "1", "--criteria", "accuracy") == 2
    err = capsys.readouterr().err
    assert "holds a run made with other settings" in err
    assert "context.max_iterations: 10 -> 1" in err and "--force" in err
    assert len(server.requests) == calls
    # Operational settings may change on resume.
    assert curate(server, [data], out, "--concurrency", "1", "--request-timeout", "9") == 0
    assert curate(server, [data], out, "--max-iterations", "1", "--force") == 0
    report = json.loads((out / "run.json").read_text())
    assert report["invocations"][-1]["forced_settings_changes"] == [
        "context.max_iterations: 10 -> 1"
    ]
    assert report["settings"]["context"]["max_iterations"] == 1


def test_api_keys_are_used_but_never_written(
    server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFINE_N_JUDGE_API_KEY", "sk-endpoint-SECRET-1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SECRET-2")
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS[:1])
    assert curate(server, [data], tmp_path / "plain") == 0
    assert server.requests[-1].headers["authorization"] == "Bearer sk-endpoint-SECRET-1"
    with_password = server.base_url.replace("//", "//user:pw@")
    assert curate(server, [data], tmp_path / "userinfo", "--base-url", with_password) == 0
    for path in [*(tmp_path / "plain").iterdir(), *(tmp_path / "userinfo").iterdir()]:
        text = path.read_text(errors="replace")
        assert "SECRET" not in text, path
        assert "user:pw@" not in text, path


def test_json_log_and_quiet_modes(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS[:2], BAD_LINES[:1])
    assert curate(server, [data], tmp_path / "j", "--log-format", "json") == 1
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.err.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "summary"
    assert kinds.count("item") == 2 and kinds.count("input_error") == 1
    error = next(e for e in events if e["event"] == "input_error")
    assert (error["source"], error["line"], error["field"]) == ("in.jsonl", 3, "question")
    assert events[-1]["succeeded"] == 2 and events[-1]["failed"] == 1
    assert events[-1]["this_run"]["input_errors"] == 1

    assert curate(server, [data], tmp_path / "q", "--quiet") == 1
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""


def test_text_mode_prints_where_the_outputs_went(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_input(tmp_path / "in.jsonl", GOOD_ROWS[:1], BAD_LINES[:1])
    out = tmp_path / "out"
    assert curate(server, [data], out) == 1
    captured = capsys.readouterr()
    assert f"outputs in {out}/" in captured.out
    assert "input error: in.jsonl:2: field 'question': must be a string" in captured.err
    assert "judge swap consistency" in captured.err


def test_a_chain_keeps_its_accepted_steps_when_a_later_call_fails(
    server: FakeOpenAIServer, script: Script, tmp_path: Path
) -> None:
    """Item a's feedback fails in iteration 2 (after v1 was accepted): a partial chain in
    chains.jsonl with its verified pair. Item b's fails in iteration 1: a failure."""
    base = versioned_handler(stop_at=5)

    def handler(role: str, prompt: str) -> object:
        if role == "feedback" and ("<answer>v1</answer>" in prompt or "What is w?" in prompt):
            return Reply(status=400, error_message="this request is refused")
        return base(role, prompt)

    script.handler = handler
    rows = [
        {"id": "a", "question": "What is v?", "answer": "v0"},
        {"id": "b", "question": "What is w?", "answer": "v0"},
    ]
    out = tmp_path / "out"
    assert curate(server, [write_input(tmp_path / "in.jsonl", rows)], out) == 1

    chains = rows_of(out / "chains.jsonl")
    assert [(c["id"], c["stop_reason"]) for c in chains] == [("a", "model_error")]
    assert [a["text"] for a in chains[0]["chain"]] == ["v0", "v1"]
    assert chains[0]["failures"][0]["stage"] == "feedback"
    dpo = rows_of(out / "dpo.jsonl")
    assert [(r["id"], r["chosen"], r["rejected"], r["pair"]) for r in dpo] == [
        ("a", "v1", "v0", "accepted_step")
    ]
    assert [r["id"] for r in rows_of(out / "sft.jsonl")] == ["a"]
    failures = rows_of(out / "failures.jsonl")
    assert [(f["id"], f["stage"], f["kind"]) for f in failures] == [
        ("b", "feedback", "model_error")
    ]
    assert_each_row_once(out, 2)
    counts = json.loads((out / "run.json").read_text())["counts"]
    assert (counts["succeeded"], counts["partial"], counts["failed"]) == (1, 1, 1)
