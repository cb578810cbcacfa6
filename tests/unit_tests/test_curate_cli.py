"""The command line: flags map onto the graph's Context; bad settings fail fast (exit 2,
one line, no model call); `prepare` and `serve-model` are wired."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from refine_n_judge import cli
from refine_n_judge.curate.options import options_from_args
from refine_n_judge.curate.run_settings import effective_concurrency
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.scripts import versioned_responder


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(versioned_responder(1), model="fake") as srv:
        yield srv


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "question": "q", "answer": "v0"}) + "\n")
    return path


def parse(*argv: str) -> object:
    return options_from_args(cli.build_parser().parse_args(["curate", *argv]))


def test_flags_map_onto_context_fields(tmp_path: Path) -> None:
    options = parse(
        "in.jsonl", "--out", str(tmp_path), "--refiner", "r", "--judge", "j1", "--judge", "j2",
        "--alternate-refiner", "alt", "--base-url", "http://127.0.0.1:9/v1",
        "--criteria", "accuracy, friendliness", "--max-iterations", "3", "--temperature", "0.2",
        "--quorum", "2", "--judge-scoring", "pairwise", "--no-judge-logprobs",
        "--max-tokens", "none", "--request-timeout", "5", "--structured-output", "prompt",
    )  # fmt: skip
    ctx = options.context  # type: ignore[attr-defined]
    assert ctx.refiner == "r" and ctx.judges == ["j1", "j2"] and ctx.alternate_refiner == "alt"
    assert ctx.base_url == "http://127.0.0.1:9/v1"
    assert ctx.criteria == ["accuracy", "friendliness"]
    assert (ctx.max_iterations, ctx.temperature, ctx.quorum) == (3, 0.2, 2)
    assert (ctx.judge_scoring, ctx.judge_logprobs, ctx.max_tokens) == ("pairwise", False, None)
    assert (ctx.request_timeout, ctx.structured_output) == (5.0, "prompt")


def test_unset_flags_keep_the_context_defaults(tmp_path: Path) -> None:
    options = parse("in.jsonl", "--out", str(tmp_path))
    from nodes.context import Context

    assert options.context == Context()  # type: ignore[attr-defined]
    assert options.cache is None  # type: ignore[attr-defined]
    cached = parse("in.jsonl", "--out", str(tmp_path), "--cache")
    assert cached.cache == tmp_path / "llm_cache.sqlite"  # type: ignore[attr-defined]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        pytest.param(["--quorum", "0"], "invalid --quorum 0", id="quorum-zero"),
        pytest.param(["--quorum", "2"], "only 1 judge", id="quorum-over-judges"),
        pytest.param(["--temperature", "5"], "invalid --temperature 5.0", id="temperature"),
        pytest.param(["--criteria", "a,A"], "duplicates", id="criteria"),
        pytest.param(["--concurrency", "0"], "invalid --concurrency 0", id="concurrency"),
        pytest.param(["--max-iterations", "0"], "--max-iterations", id="iterations"),
        pytest.param(["--judge", "anthropic:claude-x"], "invalid --judge", id="judge-package"),
    ],
)
def test_bad_settings_fail_fast_with_one_line_and_no_call(
    server: FakeOpenAIServer,
    data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    words: str,
) -> None:
    before = len(server.requests)
    out = tmp_path / "out"
    code = cli.main(
        ["curate", str(data), "--out", str(out), "--refiner", "fake",
         "--base-url", server.base_url, *flags]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and words in err, err
    assert len(server.requests) == before
    assert not out.exists()


def test_model_without_provider_or_key_fails_fast(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["curate", str(data), "--out", str(tmp_path / "o"), "--refiner", "blah"]) == 2
    assert "invalid --refiner 'blah': cannot tell which provider" in capsys.readouterr().err
    code = cli.main(
        ["curate", str(data), "--out", str(tmp_path / "o"), "--refiner", "openai:gpt-4o-mini"]
    )
    assert code == 2
    assert "invalid --refiner 'openai:gpt-4o-mini'" in capsys.readouterr().err


def test_missing_input_and_unknown_format_fail_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "o")
    assert cli.main(["curate", str(tmp_path / "nope.jsonl"), "--out", out, "--refiner", "x"]) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err
    odd = tmp_path / "data.txt"
    odd.write_text("{}")
    assert cli.main(["curate", str(odd), "--out", out, "--refiner", "x"]) == 2
    assert "--input-format" in capsys.readouterr().err


def test_an_endpoint_nobody_listens_on_fails_fast(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    code = cli.main(
        ["curate", str(data), "--out", str(tmp_path / "o"), "--refiner", "m", "--base-url", url]
    )
    assert code == 2
    assert f"cannot connect to {url}" in capsys.readouterr().err


def test_prepare_seeds_the_tokenizer_and_is_repeatable(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["prepare", "--skip-model"]) == 0
    assert cli.main(["prepare", "--skip-model"]) == 0
    assert "tiktoken encodings ready" in capsys.readouterr().out


def test_prepare_without_the_local_extra_says_so_and_succeeds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from endpoints import embedded

    def missing() -> None:
        raise embedded.EmbeddedModelError("llama_cpp is not importable")

    monkeypatch.setattr(embedded, "require_llama_cpp_server", missing)
    assert cli.main(["prepare"]) == 0
    out = capsys.readouterr().out
    assert "embedded model: not available (llama_cpp is not importable)" in out
    assert "--base-url" in out


def test_module_entry_point_and_subcommands_help(capsys: pytest.CaptureFixture[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "refine_n_judge.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in ("curate", "serve-model", "prepare"):
        assert name in result.stdout
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve-model", "--help"])
    assert exited.value.code == 0
    serve_help = capsys.readouterr().out
    assert "--port" in serve_help and "--n-ctx" in serve_help


def test_rps_gives_every_model_one_shared_rate_limiter(
    server: FakeOpenAIServer, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from langchain_core.rate_limiters import InMemoryRateLimiter

    from refine_n_judge.curate import local_engine

    seen: dict[str, object] = {}
    real_build_graph = local_engine.build_graph

    def spy(**kwargs: object) -> object:
        seen.update(kwargs)
        return real_build_graph(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(local_engine, "build_graph", spy)
    code = cli.main(
        ["curate", str(data), "--out", str(tmp_path / "o"), "--refiner", "fake",
         "--base-url", server.base_url, "--rps", "50", "--quiet"]
    )  # fmt: skip
    assert code == 0
    limiter = seen["rate_limiter"]
    assert isinstance(limiter, InMemoryRateLimiter)
    assert limiter.requests_per_second == 50


def test_concurrency_defaults_to_one_on_the_embedded_model(tmp_path: Path) -> None:
    options = parse("in.jsonl", "--out", str(tmp_path))
    assert effective_concurrency(options.concurrency, embedded=True) == 1
    assert effective_concurrency(options.concurrency, embedded=False) == 16
    given = parse("in.jsonl", "--out", str(tmp_path), "--concurrency", "4")
    assert effective_concurrency(given.concurrency, embedded=True) == 4
