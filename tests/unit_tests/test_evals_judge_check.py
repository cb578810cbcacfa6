"""The judge-check LangSmith experiment: offline, the command's own code, the same figures."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from evals.__main__ import main
from evals.experiments import EXPERIMENTS
from evals.experiments.judge_check import load_pairs
from evals.records import read_rows
from evals.runner import run_experiment
from evals.setup import EvalSetup
from tests.support.chat_models import ScriptedChatModel
from tests.support.eval_world import no_network
from tests.support.judges import SAMPLE_PAIRS, always_right, longer_wins


def pairs_file(tmp_path: Path) -> Path:
    rows = [*SAMPLE_PAIRS, {"idx": 5, "instruction": "Q", "response1": "x", "annotator1": 1}]
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize(
    ("handler", "better", "worse", "decided"),
    [
        pytest.param(always_right, 3, 0, 4, id="always-right"),
        pytest.param(longer_wins, 2, 1, 2, id="longer-wins"),
    ],
)
def test_experiment_offline_gives_the_commands_figures(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    handler,
    better,
    worse,
    decided,  # type: ignore[no-untyped-def]
) -> None:
    dataset = load_pairs(str(pairs_file(tmp_path)))
    assert [p.id for p in dataset.items] == ["1", "2", "3", "4"]
    assert len(dataset.bad_rows) == 1 and "response2" in dataset.bad_rows[0]
    setup = EvalSetup(judges=[ScriptedChatModel(handler=handler, model_name="judge")])
    monkeypatch.setenv("LANGSMITH_TRACING", "true")  # still nothing leaves the machine
    with no_network() as attempts:
        summary = asyncio.run(
            run_experiment(
                EXPERIMENTS["judge-check"], dataset, setup, tmp_path / "r", progress=None
            )
        )
    assert attempts == [] and not summary.uploaded
    figures = summary.metrics["judge_check"]
    assert (figures["better_accepted"]["count"], figures["worse_accepted"]["count"]) == (
        better,
        worse,
    )
    assert summary.metrics["bad_rows"] == 1
    assert summary.feedback["decided_as_labelled"].mean == decided / 4
    rows = read_rows(tmp_path / "r")
    assert sorted(r.item_id for r in rows) == ["1", "2", "3", "4"]
    assert summary.usage["judge"]["calls"] == 16


def test_cli_needs_a_pairs_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["judge-check", "--no-upload"]) == 2
    assert "judge-check needs --dataset" in capsys.readouterr().err
