"""A fault-injecting endpoint (429s, 500s, malformed bodies, empty replies, replies slower
than --request-timeout): the run completes, every item is accounted for exactly once, and
the counts in run.json add up."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from refine_n_judge import cli
from tests.support.fake_openai import FakeOpenAIServer, FaultPlan, Reply, with_faults
from tests.support.scripts import http_responder, versioned_handler

N_ITEMS = 20


def write_items(path: Path, n: int) -> Path:
    rows = [{"id": f"i{k}", "question": f"What is {k}?", "answer": "v0"} for k in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(server: FakeOpenAIServer, data: Path, out: Path, *flags: str) -> int:
    return cli.main(
        ["curate", str(data), "--out", str(out), "--refiner", "fake", "--base-url",
         server.base_url, "--concurrency", "8", "--quiet", *flags]
    )  # fmt: skip


def test_run_completes_through_faults_and_counts_add_up(tmp_path: Path) -> None:
    plans = FaultPlan.parse(
        "429:first=4,500:every=11,malformed:every=13,empty:every=17,slow:every=23:slow=3"
    )
    script = versioned_handler(stop_at=1)

    def handler(role: str, prompt: str) -> str:
        return script(role.removesuffix("_retry"), prompt)  # a parse retry gets a good reply

    responder = with_faults(http_responder(handler), *plans)
    out = tmp_path / "out"
    with FakeOpenAIServer(responder, model="fake") as server:
        code = run(server, write_items(tmp_path / "in.jsonl", N_ITEMS), out,
                   "--request-timeout", "1")  # fmt: skip
    assert all(plan.injected for plan in plans), [(p.kind, p.injected) for p in plans]

    chains, failures = rows_of(out / "chains.jsonl"), rows_of(out / "failures.jsonl")
    ids = [r["id"] for r in chains] + [r["id"] for r in failures]
    assert sorted(ids) == sorted(f"i{k}" for k in range(N_ITEMS))
    assert code == (1 if failures else 0)
    for failure in failures:
        assert failure["reason"] and failure["stage"] != "input"
    for chain in chains:  # the retries hid the faults: every chain is the scripted one
        assert [a["text"] for a in chain["chain"]] == ["v0", "v1"]

    report = json.loads((out / "run.json").read_text())
    counts = report["counts"]
    assert counts["items"] == N_ITEMS == counts["succeeded"] + counts["failed"]
    assert counts["succeeded"] == len(chains) and counts["failed"] == len(failures)
    assert counts["sft_rows"] == len(rows_of(out / "sft.jsonl")) == len(chains)
    assert sum(report["stop_reasons"].values()) == N_ITEMS
    assert sum(report["chain_length_histogram"].values()) == len(chains)
    assert counts["succeeded"] >= N_ITEMS // 2


def test_an_endpoint_that_always_fails_gives_failure_rows_with_reasons(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FakeOpenAIServer(
        lambda request: Reply(status=500, error_message="boom"), model="fake"
    ) as server:
        code = run(server, write_items(tmp_path / "in.jsonl", 3), out, "--max-attempts", "1")
        calls = len(server.requests)
    assert code == 1
    failures = rows_of(out / "failures.jsonl")
    assert sorted(r["id"] for r in failures) == ["i0", "i1", "i2"]
    for failure in failures:
        assert failure["stage"] == "feedback" and failure["kind"] == "model_error"
        assert "Error code: 500" in failure["reason"] and "boom" in failure["reason"]
        assert failure["state"]["chain"][0]["text"] == "v0"
    assert calls == 3 * 4  # one attempt, which the client itself retried 3 times
    assert Counter(json.loads((out / "run.json").read_text())["failures_by_kind"]) == {
        "model_error": 3
    }
