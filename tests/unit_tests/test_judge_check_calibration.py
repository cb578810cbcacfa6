"""Calibration on constructed score sets: the curve, the margin a target precision picks,
the flag value it prints, and the length-aware rule against the plain one."""

from __future__ import annotations

import pytest

from refine_n_judge.judge_check.calibration import (
    Observation,
    calibrate,
    length_penalty,
    measure_length_rule,
)
from refine_n_judge.judge_check.metrics import cohen_kappa

# (score gap when the better answer is the refinement, gap when the worse one is)
GAPS = [(2.0, -2.0), (1.5, 0.3), (1.2, -1.0), (0.8, 0.6), (0.4, 0.35), (0.2, -0.5)]


def observations(gaps: list[tuple[float, float]]) -> list[Observation]:
    return [Observation(b, w, 100, 100) for b, w in gaps]


def test_margin_curve_and_the_smallest_margin_reaching_the_target() -> None:
    cal = calibrate(
        observations(GAPS),
        kind="pointwise_margin",
        judge_model="j",
        current=0.1,
        target_precision=0.85,
    )
    table = {p.threshold: (p.better_accepted, p.worse_accepted) for p in cal.curve}
    assert table[0.0] == (6, 3)  # precision 6/9
    assert table[0.35] == (5, 1)  # a margin must be exceeded: 0.35 itself is not accepted
    assert table[0.6] == (4, 0)
    # precision: 0.0 -> 6/9, 0.2 -> 5/8, 0.3 -> 5/7, 0.35 -> 5/6, 0.4 -> 4/5, 0.6 -> 1.0
    assert cal.chosen_point is not None and cal.chosen_point.threshold == 0.6
    assert cal.chosen == 0.6 and cal.flag == "--pointwise-margin"


def test_a_margin_between_grid_points_is_printed_short_and_still_right() -> None:
    cal = calibrate(
        observations([(1.0, -1.0), (0.8, 0.3333333)]),
        kind="pointwise_margin",
        judge_model="j",
        current=0.1,
        target_precision=1.0,
    )
    # 0.3333333 must be excluded (a margin must be exceeded): 0.4 does that, and keeps 0.8
    assert cal.chosen == 0.4


def test_unreachable_target_says_how_close_it_got() -> None:
    cal = calibrate(
        observations([(1.0, 2.0), (0.5, 0.7)]),
        kind="pointwise_margin",
        judge_model="j",
        current=0.1,
        target_precision=0.9,
    )
    assert cal.chosen is None
    assert cal.note is not None and "no threshold reaches precision 0.9" in cal.note


def test_pairwise_confidence_threshold_must_be_reached() -> None:
    rejected = float("-inf")
    cal = calibrate(
        observations([(0.9, rejected), (0.6, 0.2), (0.1, rejected), (0.25, 0.15)]),
        kind="pairwise_confidence",
        judge_model="j",
        current=0.1,
        target_precision=1.0,
    )
    table = {p.threshold: (p.better_accepted, p.worse_accepted) for p in cal.curve}
    assert table[0.2] == (3, 1)  # a confidence of exactly 0.2 reaches 0.2
    assert table[0.25] == (3, 0)
    assert cal.chosen == 0.25 and cal.flag == "--confidence-threshold"


def test_length_penalty() -> None:
    assert length_penalty(100, 100) == 0.0
    assert length_penalty(50, 100) == 0.0
    assert length_penalty(400, 100) == pytest.approx(2.0)


def test_length_rule_earns_only_when_it_cuts_false_accepts_at_equal_acceptance() -> None:
    # worse answers that win are all 4x longer; better ones are as long as the worse
    padded = [Observation(1.0, 0.5, 100, 400) for _ in range(5)]
    honest = [Observation(1.0, -1.0, 100, 100) for _ in range(5)]
    rule = measure_length_rule(
        padded + honest, kind="pointwise_margin", judge_model="j", current=0.1
    )
    at_half = next(p for p in rule.at_current if p.weight == 0.25)
    # 0.5 needs > 0.1 + 0.25 * 2 = 0.6: every padded false accept is gone, no better lost
    assert (at_half.better_accepted, at_half.worse_accepted) == (10, 0)
    assert (at_half.plain_worse_accepted, at_half.fewer_false_accepts) == (0, 0)
    # ...but the plain rule at margin 0.5 does as well, so nothing is earned
    assert not rule.earned

    # now the padded worse answers win by more than some better answers do
    padded = [Observation(0.4, 1.0, 100, 400) for _ in range(5)]
    honest = [Observation(1.5, -1.0, 100, 100) for _ in range(5)]
    rule = measure_length_rule(
        padded + honest, kind="pointwise_margin", judge_model="j", current=0.1
    )
    assert rule.earned
    assert rule.best is not None and rule.best.fewer_false_accepts == 5


def test_cohen_kappa() -> None:
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert cohen_kappa(["a", "a"], ["a", "a"]) is None  # chance agreement is total
    assert cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == -1.0
    assert cohen_kappa([], []) is None
