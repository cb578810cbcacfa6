"""The report: Markdown tables with the runs' numbers, and valid PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from evals.__main__ import main
from evals.records import Headline, RunSummary
from evals.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def summary(experiment: str, dataset: str, **fields: object) -> RunSummary:
    base: dict[str, object] = {
        "experiment": experiment,
        "dataset": dataset,
        "kind": "generic",
        "items": 4,
        "errors": 0,
        "started_at": "2026-01-01T00:00:00+00:00",
        "seconds": 12.0,
        "settings": {"models": {"refiner": "qwen", "eval_judge": "oracle"}},
    }
    return RunSummary.model_validate(base | fields)


def write(root: Path, run: RunSummary) -> None:
    folder = root / run.experiment / run.dataset
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(run.model_dump_json())


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write(
        tmp_path,
        summary(
            "noisy",
            "acronyms",
            kind="acronym",
            headline=Headline(
                metric="exact-match accuracy",
                before=0.0,
                after=75.0,
                change=75.0,
                change_kind="points",
                unit="%",
                paper="+85% (binary accuracy, Acronym)",
                n=4,
            ),
            chain_lengths={1: 1, 2: 3},
            stop_reasons={"identical": 3, "tie": 1},
            judge_health={"pairs": 5, "swap_consistency": 0.8, "first_position_preference": 0.6},
            usage={"qwen": {"calls": 30, "input_tokens": 9000, "output_tokens": 1200}},
        ),
    )
    write(
        tmp_path,
        summary(
            "noisy",
            "verbose",
            kind="verbose",
            headline=Headline(
                metric="tokens per answer",
                before=180.0,
                after=90.0,
                change=-0.5,
                change_kind="relative",
                paper="-52% (token length, UltraChat)",
                n=4,
            ),
            metrics={"keywords_retained": 0.75},
            chain_lengths={2: 4},
        ),
    )
    write(
        tmp_path,
        summary(
            "consistency",
            "misconceptions",
            metrics={
                "by_step": {
                    "1": {"agree": 40, "n": 40, "rate": 1.0},
                    "2": {"agree": 16, "n": 20, "rate": 0.8},
                },
                "final_vs_rejected": {"agree": 21, "n": 40, "rate": 0.525},
                "overall": {"agree": 77, "n": 100, "rate": 0.77},
                "first_position_rate": 0.61,
            },
            chain_lengths={2: 2, 3: 2},
        ),
    )
    write(
        tmp_path,
        summary(
            "judge-ablation",
            "misconceptions",
            chain_lengths={4: 5},  # capped at the budget: not in the histogram
            metrics={
                "win_rate_by_budget": {
                    "1": {"win_rate": 0.5, "wins": 0, "losses": 0, "draws": 4, "errors": 0, "n": 4},
                    "2": {
                        "win_rate": 0.625,
                        "wins": 2,
                        "losses": 1,
                        "draws": 1,
                        "errors": 0,
                        "n": 4,
                    },
                    "3": {
                        "win_rate": 0.75,
                        "wins": 3,
                        "losses": 1,
                        "draws": 0,
                        "errors": 0,
                        "n": 4,
                    },
                },
                "matrix": {
                    "refine_only": {
                        "1>0": {"win_rate": 1.0, "wins": 4, "losses": 0, "draws": 0, "n": 4},
                        "2>1": {"win_rate": 0.25, "wins": 1, "losses": 3, "draws": 0, "n": 4},
                    },
                },
            },
        ),
    )
    write(
        tmp_path,
        summary(
            "baselines",
            "acronyms",
            metrics={
                "win_vs_zero_shot": {
                    "win_rate": 0.875,
                    "wins": 3,
                    "losses": 0,
                    "draws": 1,
                    "errors": 0,
                    "n": 4,
                },
                "win_vs_best_of_n": {
                    "win_rate": 0.25,
                    "wins": 1,
                    "losses": 3,
                    "draws": 0,
                    "errors": 0,
                    "n": 4,
                },
                "accuracy": {"initial": 0.0, "refine_n_judge": 75.0, "zero_shot": 50.0},
            },
        ),
    )
    return tmp_path


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


def test_report_tables_hold_the_runs_numbers(results: Path) -> None:
    report = write_report(results)
    text = report.markdown.read_text()
    assert report.markdown == results / "results.md"
    # table 3
    acronyms = "| acronyms | exact-match accuracy | 0.0% | 75.0% | +75.0 pts |"
    assert f"{acronyms} +85% (binary accuracy, Acronym) | 4 |" in text
    verbose = "| verbose | tokens per answer | 180.0 | 90.0 | -50.0% |"
    assert f"{verbose} -52% (token length, UltraChat) | 4 |" in text
    assert "key facts kept 75.0%" in text
    # 5.4
    assert "| Ans0 vs Ans1 | 100.0% (40/40) |" in text
    assert "| Ans1 vs Ans2 | 80.0% (16/20) |" in text
    assert "| final vs rejected | 52.5% (21/40) |" in text
    assert "| first-position rate | 61.0% |" in text
    # 5.2
    assert "| 2 | 62.5% (2/1/1) |" in text
    assert "| Ans2 vs Ans1 | 25.0% (1/3/0) |" in text
    # 5.1
    assert "| acronyms | 87.5% (3/0/1) | 25.0% (1/3/0) | 0.0% | 75.0% | 50.0% |" in text
    # appendix D: pooled over runs
    assert "| Run | 1 | 2 | 3 |\n" in text
    assert "| all runs | 1 | 9 | 2 |" in text
    assert "| noisy/acronyms | 5 | 80.0% | 60.0% | identical 3, tie 1 |" in text
    assert "| noisy/acronyms | qwen | 30 | 9000 | 1200 |" in text


def test_report_plots_are_valid_pngs(results: Path) -> None:
    report = write_report(results)
    names = sorted(p.name for p in report.plots)
    assert names == [
        "chain_length_histogram.png",
        "consistency_by_position.png",
        "pairwise_matrix_misconceptions.png",
        "win_rate_by_iterations.png",
    ]
    for plot in report.plots:
        assert plot.parent == results
        assert_png(plot)
        assert f"]({plot.name})" in report.markdown.read_text()


def test_report_leaves_out_sections_without_runs(tmp_path: Path) -> None:
    write(tmp_path, summary("noisy", "verbose", headline=None, chain_lengths={}))
    report = write_report(tmp_path)
    text = report.markdown.read_text()
    assert report.plots == []
    assert "Judge consistency" not in text and "refine-only" not in text


def test_report_command(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {results / 'results.md'}" in out
    assert "win_rate_by_iterations.png" in out


def test_report_command_on_an_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "run an experiment first" in capsys.readouterr().err
