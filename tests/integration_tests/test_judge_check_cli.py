"""`refine-n-judge judge-check` as a user runs it, against the fake OpenAI server: the
files it writes, the cache making the second direction free, resume after a stop (and a
torn line), a settings change refused, bad flags, and a real process killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from refine_n_judge.cli import main
from tests.support.fake_openai import ChatRequest, FakeOpenAIServer, Reply
from tests.support.judges import SAMPLE_PAIRS, always_right
from tests.support.processes import PROJECT_ROOT, fake_server, wait_for
from tests.support.scripts import http_responder


def right_judge() -> Callable[[ChatRequest], Reply]:
    """The always-right script over HTTP (loaded by name by the server subprocess)."""
    return http_responder(always_right)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(right_judge()) as fake:
        yield fake


def pairs_file(tmp_path: Path, n_copies: int = 1) -> Path:
    rows = []
    for copy in range(n_copies):
        for row in SAMPLE_PAIRS:
            rows.append({**row, "idx": f"{row['idx']}-{copy}" if n_copies > 1 else row["idx"]})
    rows.append({"idx": 99, "instruction": "Q", "response1": "a", "annotator1": 1})
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(rows, indent=1))
    return path


def line_of_last_row(path: Path) -> int:
    """The line the last array element starts on (`json.dumps(indent=1)` layout)."""
    text = path.read_text()
    return text[: text.rindex("\n {")].count("\n") + 2


def run(pairs: Path, out: Path, url: str, *extra: str) -> int:
    return main(
        ["judge-check", str(pairs), "--out", str(out), "--judge", "fake", "--base-url", url,
         "--quiet", *extra]
    )  # fmt: skip


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_full_run_writes_the_report_and_the_cache_halves_the_calls(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    out, pairs = tmp_path / "out", pairs_file(tmp_path)
    code = run(pairs, out, server.base_url, "--cache", "--target-precision", "0.85")
    assert code == 1  # the bad row (no response2) is a failure
    judged = lines(out / "judgments.jsonl")
    assert sorted(str(r["id"]) for r in judged) == ["1", "2", "3", "4"]
    (bad,) = lines(out / "failures.jsonl")
    assert (bad["field"], bad["kind"]) == ("response2", "missing_field")
    assert bad["line"] == line_of_last_row(pairs)
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert (m["better_accepted"]["count"], m["worse_accepted"]["count"]) == (3, 0)
    assert m["agreement"]["vs_majority"] == 1.0
    assert report["counts"]["input_errors"] == 1
    # each direction's two orders are the other direction's two prompts: served from cache
    assert len(server.requests) == 8
    assert report["counts"]["cache"] == {"hits": 8, "misses": 8}
    assert m["cost"]["calls_per_pair"] == 4.0  # what the loop pays per pair without a cache
    assert report["status"] == "finished"
    text = (out / "report.md").read_text()
    assert "| worse accepted (false accepts) | 0.0% (0/3) |" in text
    assert (out / "reliability.png").stat().st_size > 1000
    # another target precision from the recorded judgments: no model call
    before = len(server.requests)
    assert run(pairs, out, server.base_url, "--report-only", "--target-precision", "0.5") == 0
    assert len(server.requests) == before
    again = json.loads((out / "report.json").read_text())
    assert again["metrics"] == report["metrics"]
    assert again["settings"]["target_precision"] == 0.5


def test_resume_judges_only_what_is_missing(tmp_path: Path, server: FakeOpenAIServer) -> None:
    out, pairs = tmp_path / "out", pairs_file(tmp_path)
    assert run(pairs, out, server.base_url, "--limit", "2") == 0  # the bad row is not reached
    assert len(lines(out / "judgments.jsonl")) == 2
    first_requests = len(server.requests)
    # a kill in the middle of a write leaves a torn last line: it is cut and redone
    with open(out / "judgments.jsonl", "ab") as handle:
        handle.write(b'{"id": "3", "source": "pai')
    assert run(pairs, out, server.base_url) == 1
    judged = lines(out / "judgments.jsonl")
    assert sorted(str(r["id"]) for r in judged) == ["1", "2", "3", "4"]
    assert len(lines(out / "failures.jsonl")) == 1  # the bad row is recorded once
    assert len(server.requests) - first_requests == 2 * 4  # two pairs, four calls each
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["pairs"] == 4


def test_retry_errors_judges_the_errored_pairs_again(tmp_path: Path) -> None:
    out, pairs = tmp_path / "out", pairs_file(tmp_path)
    with FakeOpenAIServer(http_responder(lambda role, prompt: "no verdict")) as broken:
        assert run(pairs, out, broken.base_url, "--max-attempts", "1") == 1
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["judge_errors"]["count"] == 8
    with FakeOpenAIServer(right_judge()) as fixed:  # on another port: --force
        again = (pairs, out, fixed.base_url, "--max-attempts", "1", "--force")
        assert run(*again) == 1
        assert fixed.requests == []  # a plain rerun keeps what was judged
        assert run(*again, "--retry-errors") == 1
        assert len(fixed.requests) == 16
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["judge_errors"]["count"] == 0
    assert report["metrics"]["better_accepted"]["count"] == 3
    assert len(lines(out / "judgments.jsonl")) == 4
    assert len(lines(out / "failures.jsonl")) == 1  # the bad input row stays


def test_changed_settings_are_refused_unless_forced(
    tmp_path: Path, server: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    out, pairs = tmp_path / "out", pairs_file(tmp_path)
    run(pairs, out, server.base_url, "--limit", "1")
    assert run(pairs, out, server.base_url, "--judge-scoring", "pointwise") == 2
    assert "judge_scoring: 'auto' -> 'pointwise'" in capsys.readouterr().err
    assert len(lines(out / "judgments.jsonl")) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["--target-precision", "2"], "invalid --target-precision 2.0", id="precision"),
        pytest.param(["--pointwise-margin", "-1"], "invalid --pointwise-margin -1.0", id="margin"),
        pytest.param(["--quorum", "2"], "quorum=2 is more than the 1 judge", id="quorum"),
    ],
)
def test_bad_flags_fail_before_any_call(
    tmp_path: Path,
    server: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    assert run(pairs_file(tmp_path), tmp_path / "out", server.base_url, *flags) == 2
    assert message in capsys.readouterr().err
    assert server.requests == []


def test_unknown_layout_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n")
    assert main(["judge-check", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "pass --format" in capsys.readouterr().err


# ----------------------------------------------------------------------- a real kill


@pytest.fixture
def slow_server_url(tmp_path: Path) -> Iterator[str]:
    responder = "tests.integration_tests.test_judge_check_cli:right_judge"
    with fake_server(tmp_path / "port", responder, latency=0.05) as url:
        yield url


def test_killed_process_rerun_judges_every_pair_exactly_once(
    tmp_path: Path, slow_server_url: str
) -> None:
    pairs, out = pairs_file(tmp_path, n_copies=6), tmp_path / "out"
    command = [sys.executable, "-m", "refine_n_judge.cli", "judge-check", str(pairs),
               "--out", str(out), "--judge", "fake", "--base-url", slow_server_url,
               "--concurrency", "3", "--quiet", "--no-plots"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    judgments = out / "judgments.jsonl"
    wait_for(
        lambda: judgments.exists() and judgments.read_bytes().count(b"\n") >= 3,
        "three judged pairs",
        process,
    )
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert 3 <= judgments.read_bytes().count(b"\n") < 24
    rerun = subprocess.run(command, cwd=PROJECT_ROOT, env=env, timeout=120, check=False)
    assert rerun.returncode == 1  # the one bad row
    ids = [str(r["id"]) for r in lines(judgments)]
    assert len(ids) == len(set(ids)) == 24
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["pairs"] == 24
    assert report["metrics"]["better_accepted"]["count"] == 18
