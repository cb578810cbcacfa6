"""Every experiment end to end on 3 items with scripted models: offline, no upload, no
network attempt, and metrics equal to what the script makes them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from endpoints.tokens import count_tokens
from evals.__main__ import main
from evals.datasets import EvalItem, load_dataset
from evals.experiments import EXPERIMENTS
from evals.records import RunSummary, read_rows
from evals.runner import run_experiment
from evals.setup import EvalSetup, ExperimentOptions
from tests.support.chat_models import ScriptedChatModel
from tests.support.eval_world import (
    ScriptedWorld,
    acronym_quality,
    concise_quality,
    no_network,
    reference_quality,
)
from tests.support.scripts import judge_json, tag, version, versioned_handler

LANGSMITH_VARS = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGSMITH_TRACING")


def acronym_refine(item: EvalItem, current: str) -> str:
    if item.id in {"nasa", "laser"}:
        return f"It stands for {item.reference}."
    return "It stands for Something Else Entirely."


def acronym_fresh(item: EvalItem, k: int) -> str:
    return f"It stands for {item.reference}." if k == 2 else f"It stands for Wrong Guess {k}."


def misconception_refine(item: EvalItem, current: str) -> str:
    if item.id in {"brain-10-percent", "great-wall-space"}:
        return item.reference or ""
    return "It really is true, as everyone knows."


def peak_at_v1(role: str, prompt: str) -> str:
    """An evaluation judge for `vN` answers whose quality peaks at v1."""
    a, b = version(tag(prompt, "answer_A")), version(tag(prompt, "answer_B"))
    qa, qb = -abs(a - 1), -abs(b - 1)
    return judge_json("A" if qa > qb else "B" if qb > qa else "tie")


def biased_near_the_end(role: str, prompt: str) -> str:
    """Prefers the higher version up to v2; for a pair with v3 it always says A."""
    if role == "judge" and "v3" in (tag(prompt, "answer_A") + tag(prompt, "answer_B")):
        return judge_json("A")
    return versioned_handler(stop_at=2)(role, prompt)


def versions_file(path: Path) -> str:
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": f"Question {i}?", "answer": "v0"}) + "\n"
            for i in range(1, 4)
        )
    )
    return str(path)


@dataclass
class Runs:
    out: Path
    summaries: dict[str, RunSummary]
    worlds: dict[str, Any]
    models: dict[str, ScriptedChatModel]
    attempts: list[Any]
    lines: list[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    out = tmp_path_factory.mktemp("results")
    summaries: dict[str, RunSummary] = {}
    worlds: dict[str, Any] = {}
    models: dict[str, ScriptedChatModel] = {}
    lines: list[str] = []

    async def run(name: str, experiment: str, dataset: Any, setup: EvalSetup) -> None:
        summaries[name] = await run_experiment(
            EXPERIMENTS[experiment],
            dataset,
            setup,
            out / experiment / dataset.name,
            progress=lines.append,
        )

    async def all_runs() -> None:
        for name, quality, refine in [
            ("acronyms", acronym_quality, acronym_refine),
            ("verbose", concise_quality, None),
            ("misconceptions", reference_quality, misconception_refine),
        ]:
            dataset = load_dataset(name, limit=3)
            world = worlds[name] = ScriptedWorld(dataset.items, quality=quality, refine=refine)
            oracle = worlds[f"{name}-oracle"] = ScriptedWorld(dataset.items, quality=quality)
            models[name] = ScriptedChatModel(handler=world, model_name="pipeline")
            setup = EvalSetup(
                refiner=models[name],
                eval_judge=ScriptedChatModel(handler=oracle, model_name="oracle"),
            )
            await run(f"noisy/{name}", "noisy", dataset, setup)

        versions = load_dataset(versions_file(out / "versions.jsonl"))
        models["consistency"] = ScriptedChatModel(
            handler=biased_near_the_end, model_name="pipeline"
        )
        setup = EvalSetup(
            refiner=models["consistency"], options=ExperimentOptions(repeats=10, seed=3)
        )
        await run("consistency", "consistency", versions, setup)

        models["ablation"] = ScriptedChatModel(
            handler=versioned_handler(stop_at=1), model_name="pipeline"
        )
        models["ablation-oracle"] = ScriptedChatModel(handler=peak_at_v1, model_name="oracle")
        setup = EvalSetup(
            refiner=models["ablation"],
            eval_judge=models["ablation-oracle"],
            options=ExperimentOptions(budget=3, matrix=True),
        )
        await run("judge-ablation", "judge-ablation", versions, setup)

        acronyms = load_dataset("acronyms", limit=3)
        world = worlds["baselines"] = ScriptedWorld(
            acronyms.items, quality=acronym_quality, refine=acronym_refine, fresh=acronym_fresh
        )
        oracle = ScriptedWorld(acronyms.items, quality=acronym_quality)
        setup = EvalSetup(
            refiner=ScriptedChatModel(handler=world, model_name="pipeline"),
            eval_judge=ScriptedChatModel(handler=oracle, model_name="oracle"),
            options=ExperimentOptions(n=3),
        )
        await run("baselines", "baselines", acronyms, setup)

    with pytest.MonkeyPatch.context() as mp:
        for name in LANGSMITH_VARS:
            mp.delenv(name, raising=False)
        mp.setenv("LANGSMITH_TRACING", "true")  # tracing on must still mean no upload offline
        with no_network() as attempts:
            asyncio.run(all_runs())
    return Runs(out, summaries, worlds, models, attempts, lines)


def test_no_network_attempt_and_nothing_uploaded(runs: Runs) -> None:
    assert runs.attempts == []
    assert all(not s.uploaded and s.experiment_url is None for s in runs.summaries.values())
    assert all(s.errors == s.model_errors == 0 and s.items == 3 for s in runs.summaries.values())


def test_results_are_kept_locally(runs: Runs) -> None:
    rows = read_rows(runs.out / "noisy" / "acronyms")
    assert sorted(r.item_id for r in rows) == ["laser", "nasa", "scuba"]
    nasa = next(r for r in rows if r.item_id == "nasa")
    assert nasa.inputs == {
        "id": "nasa",
        "question": "What does the acronym NASA stand for?",
        "answer": "NASA stands for North American Space Agency.",
    }
    assert nasa.reference_outputs["reference"] == "National Aeronautics and Space Administration"
    assert [a.text for a in nasa.state().chain] == [
        "NASA stands for North American Space Agency.",
        "It stands for National Aeronautics and Space Administration.",
    ]
    summary = json.loads((runs.out / "noisy" / "acronyms" / "summary.json").read_text())
    assert summary["feedback"]["exact_match_after"] == {"mean": 0.6667, "n": 3}


def test_progress_is_printed_per_item(runs: Runs) -> None:
    acronym_lines = [line for line in runs.lines if line.startswith("[noisy/acronyms")]
    assert len(acronym_lines) == 3
    assert any(
        line.startswith("[noisy/acronyms")
        and "nasa: 2 answers (identical)" in line
        and "exact_match_after=1" in line
        for line in acronym_lines
    )
    assert sum(line.startswith("[baselines/acronyms") for line in runs.lines) == 3


def test_noisy_acronyms(runs: Runs) -> None:
    summary = runs.summaries["noisy/acronyms"]
    h = summary.headline
    assert (h.before, h.after, h.change, h.n) == (0.0, 66.67, 66.67, 3)
    assert summary.chain_lengths == {1: 1, 2: 2}
    assert summary.stop_reasons == {"identical": 2, "tie": 1}
    # the pipeline never sees the reference
    assert all("<reference>" not in p for _, p in runs.worlds["acronyms"].prompts)


def test_noisy_verbose(runs: Runs) -> None:
    summary = runs.summaries["noisy/verbose"]
    items = load_dataset("verbose", limit=3).items
    before = sum(count_tokens(i.answer or "") for i in items) / 3
    after = sum(count_tokens(i.reference or "") for i in items) / 3
    h = summary.headline
    assert h.metric == "tokens per answer"
    assert (h.before, h.after) == (round(before, 2), round(after, 2))
    assert h.change == round((after - before) / before, 4)
    assert h.change < -0.8
    assert summary.metrics["keywords_retained"] == 1.0


def test_noisy_misconceptions_use_a_separate_judge_that_sees_the_reference(runs: Runs) -> None:
    summary = runs.summaries["noisy/misconceptions"]
    h = summary.headline
    assert (h.before, h.after) == (20.0, 66.67)
    assert h.change == round((200 / 3 - 20) / 20, 4)
    assert summary.metrics["improved_rate"] == 0.6667
    oracle_prompts = runs.worlds["misconceptions-oracle"].prompts_for("judge")
    assert len(oracle_prompts) == 6  # 3 items x both orders
    assert all("<reference>" in p for p in oracle_prompts)
    assert all("<reference>" not in p for _, p in runs.worlds["misconceptions"].prompts)
    assert summary.usage["oracle (evaluation judge)"]["calls"] == 6


def test_consistency_along_the_chain(runs: Runs) -> None:
    summary = runs.summaries["consistency"]
    metrics = summary.metrics
    assert metrics["by_step"] == {
        "1": {"agree": 30, "n": 30, "rate": 1.0},
        "2": {"agree": 30, "n": 30, "rate": 1.0},
    }
    rows = read_rows(runs.out / "consistency" / "versions")
    calls = [
        c
        for r in rows
        for f in r.feedback
        if f.key == "agree_final_vs_rejected"
        for c in f.metadata["calls"]
    ]
    first = sum(c["position"] == "refined_first" for c in calls)
    assert len(calls) == 30 and 0 < first < 30
    # the always-"A" judge agrees exactly when the final answer happened to be shown first
    assert metrics["final_vs_rejected"] == {"agree": first, "n": 30, "rate": round(first / 30, 4)}
    assert metrics["overall"]["n"] == 90
    # the pipeline's own swapped pairs: iterations 1-2 consistent, v2 vs v3 not
    assert summary.judge_health["swap_consistency"] == 0.6667
    assert summary.stop_reasons == {"inconsistent": 3}
    assert summary.chain_lengths == {3: 3}
    # no --eval-judge: the pipeline's own judge re-judged (3 iterations x 2 calls, then 90)
    assert runs.models["consistency"].roles().count("judge") == 3 * 3 * 2 + 90


def test_judge_ablation_win_rate_by_iterations(runs: Runs) -> None:
    metrics = runs.summaries["judge-ablation"].metrics
    by_budget = metrics["win_rate_by_budget"]
    assert by_budget["1"] == {
        "win_rate": 0.5,
        "wins": 0,
        "losses": 0,
        "draws": 3,
        "errors": 0,
        "n": 3,
    }
    assert by_budget["2"]["win_rate"] == 1.0 and by_budget["2"]["wins"] == 3
    assert by_budget["3"]["win_rate"] == 1.0
    refine_only = {
        cell: stats["win_rate"] for cell, stats in metrics["matrix"]["refine_only"].items()
    }
    assert refine_only == {"1>0": 1.0, "2>0": 0.5, "2>1": 0.0, "3>0": 0.0, "3>1": 0.0, "3>2": 0.0}
    assert {c: s["win_rate"] for c, s in metrics["matrix"]["refine_n_judge"].items()} == {
        "1>0": 1.0
    }
    # the evaluation judge is not the pipeline's: the pipeline model judged only its own loop
    assert set(runs.models["ablation-oracle"].roles()) == {"judge"}
    assert runs.models["ablation"].roles().count("judge") == 3 * 2 * 2


def test_baselines_against_zero_shot_and_best_of_n(runs: Runs) -> None:
    metrics = runs.summaries["baselines"].metrics
    assert metrics["win_vs_zero_shot"] == {
        "win_rate": 0.8333,
        "wins": 2,
        "losses": 0,
        "draws": 1,
        "errors": 0,
        "n": 3,
    }
    assert metrics["win_vs_best_of_n"] == {
        "win_rate": 0.3333,
        "wins": 0,
        "losses": 1,
        "draws": 2,
        "errors": 0,
        "n": 3,
    }
    assert metrics["accuracy"] == {
        "initial": 0.0,
        "refine_n_judge": 66.67,
        "zero_shot": 0.0,
        "best_of_n": 100.0,
    }
    # 1 zero-shot + 3 best-of-N samples per item
    assert dict(runs.worlds["baselines"].fresh_calls) == {"nasa": 4, "laser": 4, "scuba": 4}


def test_an_unreachable_model_is_an_error_row_not_a_crash(tmp_path: Path) -> None:
    def broken(role: str, prompt: str) -> object:
        raise AssertionError("never called")

    dataset = load_dataset("acronyms", limit=1)
    setup = EvalSetup(
        refiner=ScriptedChatModel(handler=broken),
        context=EvalSetup().context.model_copy(update={"max_attempts": 1}),
    )
    lines: list[str] = []
    with no_network() as attempts:
        summary = asyncio.run(
            run_experiment(
                EXPERIMENTS["noisy"], dataset, setup, tmp_path, upload=False, progress=lines.append
            )
        )
    assert attempts == []
    (row,) = read_rows(tmp_path)
    state = row.state()
    assert state is not None and state.stop_reason == "model_error"
    assert summary.stop_reasons == {"model_error": 1}
    assert (summary.errors, summary.model_errors) == (0, 1)
    assert "1 answer (model_error) | feedback failed: AssertionError: never called" in lines[0]


def test_report_from_the_runs(runs: Runs, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(runs.out)]) == 0
    text = (runs.out / "results.md").read_text()
    assert "| acronyms | exact-match accuracy | 0.0% | 66.7% | +66.7 pts |" in text
    assert "| misconceptions | judged score vs reference (0-100) | 20.0 | 66.7 | +233.3% |" in text
    assert "| Ans0 vs Ans1 | 100.0% (30/30) |" in text
    assert "| 1 | 50.0% (0/0/3) |" in text and "| 3 | 100.0% (3/0/0) |" in text
    assert "| acronyms | 83.3% (2/0/1) | 33.3% (0/1/2) |" in text
    for name in (
        "chain_length_histogram.png",
        "consistency_by_position.png",
        "win_rate_by_iterations.png",
        "pairwise_matrix_versions.png",
    ):
        assert (runs.out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
