"""The CLI against an OpenAI-compatible endpoint (the fake server on loopback): model flags,
the default endpoint, progress per item, concurrency, errors as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from evals.__main__ import main
from evals.datasets import SHIPPED, EvalItem, load_dataset
from tests.support.eval_world import (
    ScriptedWorld,
    acronym_quality,
    concise_quality,
    no_network,
    reference_quality,
)
from tests.support.fake_openai import FakeOpenAIServer
from tests.support.scripts import http_responder

KINDS = {name: {i.id for i in load_dataset(name).items} for name in SHIPPED}


def quality(item: EvalItem, text: str) -> float:
    if item.id in KINDS["acronyms"]:
        return acronym_quality(item, text)
    if item.id in KINDS["verbose"]:
        return concise_quality(item, text)
    return reference_quality(item, text)


@pytest.fixture
def world() -> ScriptedWorld:
    items = [item for name in SHIPPED for item in load_dataset(name).items]
    return ScriptedWorld(items, quality=quality)  # refines every item to its reference


@pytest.fixture
def server(world: ScriptedWorld) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(http_responder(world)) as running:
        yield running


def summary(out: Path, experiment: str, dataset: str) -> dict:
    return json.loads((out / experiment / dataset / "summary.json").read_text())


def test_noisy_with_base_url_and_refiner(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["noisy", "--dataset", "acronyms", "--limit", "3", "--base-url", server.base_url]
    argv += ["--refiner", "qwen-test", "--out", str(tmp_path)]
    with no_network(allow_loopback=True) as attempts:
        assert main(argv) == 0
    assert attempts == []
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if line.startswith("[noisy/acronyms ")]
    assert [line.split("]")[0] for line in progress] == [
        "[noisy/acronyms 1/3",
        "[noisy/acronyms 2/3",
        "[noisy/acronyms 3/3",
    ]
    assert all(
        "2 answers (identical)" in line and "exact_match_after=1" in line for line in progress
    )
    assert (
        "noisy/acronyms: 3 items, 0 errors, 0 pipeline runs ended on a model error; "
        "exact-match accuracy: 0.0 -> 100.0"
    ) in out
    assert f"report: python -m evals report {tmp_path}" in out
    result = summary(tmp_path, "noisy", "acronyms")
    assert result["settings"]["context"] == {"refiner": "qwen-test", "base_url": server.base_url}
    assert result["command"].startswith("python -m evals noisy --dataset acronyms")
    assert {r.model for r in server.requests} == {"qwen-test"}
    assert result["usage"]["qwen-test"]["calls"] == len(server.requests)


def test_no_model_flags_use_the_default_endpoint_on_every_dataset(
    server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REFINE_N_JUDGE_BASE_URL", server.base_url)
    monkeypatch.setenv("REFINE_N_JUDGE_MODEL", "served-model")
    argv = ["noisy", "--limit", "2", "--concurrency", "2", "--out", str(tmp_path)]
    with no_network(allow_loopback=True) as attempts:
        assert main(argv) == 0
    assert attempts == []
    for name in SHIPPED:
        assert summary(tmp_path, "noisy", name)["items"] == 2
    assert summary(tmp_path, "noisy", "misconceptions")["headline"]["after"] == 90.0
    assert {r.model for r in server.requests} == {"served-model"}
    err = capsys.readouterr().err
    assert "pass --eval-judge for an independent one" in err


def test_eval_judge_flag_names_a_separate_model(
    server: FakeOpenAIServer, world: ScriptedWorld, tmp_path: Path
) -> None:
    argv = ["noisy", "--dataset", "misconceptions", "--limit", "2", "--base-url", server.base_url]
    argv += ["--refiner", "small", "--eval-judge", "big", "--out", str(tmp_path)]
    with no_network(allow_loopback=True):
        assert main(argv) == 0
    by_model: dict[str, list[str]] = {}
    for request in server.requests:
        by_model.setdefault(request.model, []).append(request.texts("user")[0])
    assert set(by_model) == {"small", "big"}
    assert all("<reference>" in prompt for prompt in by_model["big"])
    assert not any("<reference>" in prompt for prompt in by_model["small"])
    assert len(by_model["big"]) == 4  # 2 items, both orders
    assert summary(tmp_path, "noisy", "misconceptions")["settings"]["models"]["eval_judge"] == "big"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["noisy", "--dataset", "nope"], "no dataset 'nope'", id="unknown-dataset"),
        pytest.param(["noisy", "--set", "colour=red"], "colour", id="unknown-context-field"),
        pytest.param(["baselines", "--n", "1"], "n", id="bad-option"),
        pytest.param(
            ["noisy", "--refiner", "mystery-7b"], "cannot tell which provider", id="model"
        ),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with no_network() as attempts:
        assert main([*argv, "--out", str(tmp_path)]) == 2
    assert attempts == []
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
