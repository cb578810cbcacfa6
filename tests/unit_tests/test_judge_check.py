"""judge-check on scripted judges of known behaviour: every figure of the report, exactly.

`SAMPLE_PAIRS` (PandaLM layout); each answer carries its quality as `[N]` (the scripted
judges read it, people's labels agree with it) and its length is chosen so the length split
has both sides:

    id  response1            response2             label (annotators)   better is
    1   [8] short            [3] much longer ...   1 (1, 1, 2)          shorter
    2   [2] x                [9] long long ...     2 (2, 2, 2)          longer
    3   [7] long long ...    [4] y                 1 (1, 1, 1)          longer
    4   [5] aaa              [5] bbbbbbbbbb        tie (0, 0, 0)        -
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from nodes.context import Context
from nodes.models import ModelProvider
from refine_n_judge.curate.progress import QuietReporter
from refine_n_judge.judge_check.metrics import compute_metrics
from refine_n_judge.judge_check.readers import read_pairs
from refine_n_judge.judge_check.records import PairResult
from refine_n_judge.judge_check.report import RunCounts, build_report, markdown, write_plots
from refine_n_judge.judge_check.runner import (
    JudgeCheckRunner,
    PairCounters,
    PairFilter,
    build_judge_graph,
)
from refine_n_judge.judge_check.store import ResultsDir
from tests.support.chat_models import ScriptedChatModel
from tests.support.judges import (
    SAMPLE_PAIRS,
    always_first,
    always_right,
    always_tie,
    erroring,
    longer_wins,
)


def write_pairs(path: Path) -> Path:
    path.write_text(json.dumps(SAMPLE_PAIRS, indent=1))
    return path


def judge_all(tmp_path: Path, handler, **context: object) -> list[PairResult]:  # type: ignore[no-untyped-def]
    """Run the pairs through the judge node with a scripted judge; the judged results."""
    model = ScriptedChatModel(handler=handler, model_name="scripted-judge")
    graph = build_judge_graph(ModelProvider(judges=[model]))
    results = ResultsDir(tmp_path / "out")
    results.create()
    judged: list[PairResult] = []
    counters = PairCounters(total=4)
    runner = JudgeCheckRunner(
        graph,
        Context(**context),  # type: ignore[arg-type]
        results,
        set(),
        counters,
        QuietReporter(),
        concurrency=2,
        selection=PairFilter(),
        on_result=judged.append,
    )
    results.open()
    try:
        asyncio.run(runner.run(read_pairs(write_pairs(tmp_path / "pairs.json"), "pandalm")))
    finally:
        results.close()
    on_disk, failures = results.load()
    assert failures == []
    assert sorted(r.id for r in on_disk) == sorted(r.id for r in judged) == ["1", "2", "3", "4"]
    m = compute_metrics(judged)  # the live counts say what the report says
    assert (counters.better_accepted, counters.worse_accepted, counters.labelled) == (
        m.better_accepted.count,
        m.worse_accepted.count,
        3,
    )
    assert counters.line().startswith("pairs 4/4 · failed 0 · better accepted ")
    return sorted(judged, key=lambda r: r.id)


def figures(results: list[PairResult]) -> dict[str, object]:
    m = compute_metrics(results)
    return {
        "better": (m.better_accepted.count, m.better_accepted.n),
        "worse": (m.worse_accepted.count, m.worse_accepted.n),
        "precision": (m.precision.count, m.precision.n, m.precision.rate),
        "pair_accuracy": (m.pair_accuracy.count, m.pair_accuracy.n),
        "ties_accepted": (m.ties_accepted.count, m.ties_accepted.n),
        "outcomes": m.outcomes,
        "judge_ties": (m.judge_ties.count, m.judge_ties.n),
        "judge_errors": (m.judge_errors.count, m.judge_errors.n),
        "swap": None if m.swap_consistency is None else (
            m.swap_consistency.count, m.swap_consistency.n
        ),
        "first": None if m.first_position_rate is None else (
            m.first_position_rate.count, m.first_position_rate.n
        ),
        "kappa": m.agreement.vs_majority,
    }  # fmt: skip


def test_always_right_judge_every_figure(tmp_path: Path) -> None:
    results = judge_all(tmp_path, always_right)
    m = compute_metrics(results)
    assert figures(results) == {
        "better": (3, 3),
        "worse": (0, 3),
        "precision": (3, 3, 1.0),
        "pair_accuracy": (3, 3),
        "ties_accepted": (0, 1),
        "outcomes": {"previous": 3, "refined": 3, "tie": 2},
        "judge_ties": (2, 8),
        "judge_errors": (0, 8),
        "swap": (8, 8),
        "first": (6, 12),  # the better answer sits first in half of the decisive calls
        "kappa": 1.0,
    }
    assert (m.pairs, m.labelled_pairs, m.tie_pairs) == (4, 3, 1)
    assert m.ranking_accuracy is not None
    assert (m.ranking_accuracy.count, m.ranking_accuracy.n, m.ranking_equal) == (3, 3, 0)
    assert m.error_calls == 0
    # annotator 3 preferred response2 in pair 1: kappa (3/4 - 5/16) / (1 - 5/16) = 7/11
    assert m.agreement.vs_each_annotator == [1.0, 1.0, 0.6364]
    assert m.agreement.between_annotators == pytest.approx((1.0 + 0.6364 + 0.6364) / 3, abs=1e-4)
    plain = compute_metrics([r.model_copy(update={"has_sides": False}) for r in results])
    assert plain.agreement.vs_majority is None  # better-always-first labels: kappa is moot
    assert plain.agreement.note is not None and "no sides" in plain.agreement.note
    assert compute_metrics([]).agreement.note is None
    # confidence = |score gap| / 50 over five criteria: pair 3 0.3, pair 1 0.5, pair 2 0.7
    buckets = {(b.low, b.high): (b.decisions, b.correct, b.mean_confidence)
               for b in m.confidence_buckets if b.decisions}  # fmt: skip
    assert buckets == {(0.2, 0.4): (2, 2, 0.3), (0.4, 0.6): (2, 2, 0.5), (0.6, 0.8): (2, 2, 0.7)}
    longer, shorter = m.length["better_longer"], m.length["better_shorter"]
    assert (longer.pairs, longer.better_accepted.count, longer.worse_accepted.count) == (2, 2, 0)
    assert (shorter.pairs, shorter.better_accepted.count, shorter.worse_accepted.count) == (1, 1, 0)
    assert m.length["same"].pairs == 0
    cost = m.cost
    assert (cost.calls, cost.calls_per_pair) == (16, 4.0)  # 2 directions x 2 orders
    assert (cost.input_tokens_per_pair, cost.output_tokens_per_pair) == (400.0, 80.0)
    assert cost.seconds_per_pair is not None and cost.seconds_per_pair > 0


def test_first_position_judge_is_never_consistent(tmp_path: Path) -> None:
    results = judge_all(tmp_path, always_first)
    m = compute_metrics(results)
    assert figures(results) == {
        "better": (0, 3),
        "worse": (0, 3),
        "precision": (0, 0, None),
        "pair_accuracy": (0, 3),
        "ties_accepted": (0, 1),
        "outcomes": {"inconsistent": 8},
        "judge_ties": (0, 8),
        "judge_errors": (0, 8),
        "swap": (0, 8),
        "first": (16, 16),
        "kappa": 0.0,  # always "tie" against labels a, b, a, tie: chance agreement
    }
    assert m.ranking_accuracy is not None
    assert (m.ranking_accuracy.count, m.ranking_equal) == (0, 3)  # scripted scores are equal
    assert all(b.accuracy == 0.5 for b in m.confidence_buckets if b.decisions)


def test_tie_judge(tmp_path: Path) -> None:
    assert figures(judge_all(tmp_path, always_tie)) == {
        "better": (0, 3),
        "worse": (0, 3),
        "precision": (0, 0, None),
        "pair_accuracy": (0, 3),
        "ties_accepted": (0, 1),
        "outcomes": {"tie": 8},
        "judge_ties": (8, 8),
        "judge_errors": (0, 8),
        "swap": (8, 8),
        "first": None,  # no decisive call
        "kappa": 0.0,
    }


def test_erroring_judge_counts_errors_and_every_attempt(tmp_path: Path) -> None:
    results = judge_all(tmp_path, erroring, max_attempts=2)
    m = compute_metrics(results)
    assert figures(results)["outcomes"] == {"error": 8}
    assert (m.judge_errors.count, m.judge_errors.n, m.error_calls) == (8, 8, 16)
    assert (m.better_accepted.count, m.worse_accepted.count) == (0, 0)
    assert m.swap_consistency is None and m.ranking_accuracy is None
    assert m.cost.calls_per_pair == 8.0  # 2 directions x 2 orders x 2 attempts


def test_length_biased_judge_shows_in_the_length_split(tmp_path: Path) -> None:
    results = judge_all(tmp_path, longer_wins)
    m = compute_metrics(results)
    assert figures(results) == {
        "better": (2, 3),
        "worse": (1, 3),
        "precision": (2, 3, 0.6667),
        "pair_accuracy": (2, 3),
        "ties_accepted": (1, 1),  # the longer "tie" answer is accepted
        "outcomes": {"previous": 4, "refined": 4},
        "judge_ties": (0, 8),
        "judge_errors": (0, 8),
        "swap": (8, 8),
        "first": (8, 16),
        # judge b, b, a, b against a, b, a, tie: (8/16 - 5/16) / (1 - 5/16) = 3/11
        "kappa": 0.2727,
    }
    longer, shorter = m.length["better_longer"], m.length["better_shorter"]
    assert (longer.better_accepted.rate, longer.worse_accepted.rate) == (1.0, 0.0)
    assert (shorter.better_accepted.rate, shorter.worse_accepted.rate) == (0.0, 1.0)


def test_pointwise_judge_and_its_calibration(tmp_path: Path) -> None:
    results = judge_all(tmp_path, always_right, judge_scoring="pointwise")
    m = compute_metrics(results)
    assert (m.better_accepted.count, m.worse_accepted.count, m.ties_accepted.count) == (3, 0, 0)
    assert m.swap_consistency is None  # pointwise has no order
    assert m.cost.calls_per_pair == 4.0  # each direction rates both answers
    report = build_report(
        results,
        Context(judge_scoring="pointwise"),
        status="finished",
        pairs_file="pairs.json",
        pair_format="pandalm",
        settings={},
        counts=RunCounts(),
        target_precision=0.85,
    )
    (cal,) = report.calibrations
    assert cal.kind == "pointwise_margin" and cal.pairs == 3
    # score gaps of the better answers: 5, 7, 3; the worse ones are never ahead
    assert [(p.threshold, p.better_accepted, p.worse_accepted) for p in cal.curve] == [
        (0.0, 3, 0),
        (3.0, 2, 0),
        (5.0, 1, 0),
        (7.0, 0, 0),
    ]
    assert cal.chosen == 0.0 and cal.flag == "--pointwise-margin"
    text = markdown(report)
    assert "`--pointwise-margin 0.0`" in text
    assert "| better accepted | 100.0% (3/3) |" in text
    plots = write_plots(report, tmp_path)
    assert sorted(p.name for p in plots) == ["calibration.png", "reliability.png"]
    assert all(p.stat().st_size > 1000 for p in plots)


def test_filters_and_limit_select_pairs(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "pairs.json")
    pairs = [p for p in read_pairs(path, "pandalm") if not isinstance(p, Exception)]
    chosen = [p.id for p in pairs if PairFilter(unanimous=True, no_ties=True).keeps(p)]
    assert chosen == ["2", "3"]
    assert PairFilter(unanimous=True).count(read_pairs(path, "pandalm")) == 3
    assert PairFilter(no_ties=True, limit=2).count(read_pairs(path, "pandalm")) == 2
