"""Calibration from recorded judgments, without calling a model again.

Pointwise: a refinement is accepted when its score beats the previous answer's by more
than `pointwise_margin`. Every judged direction recorded both scores, so the better- and
worse-accepted rates at any other margin follow from the same numbers: the curve over
the margin, and the smallest margin whose precision of acceptance reaches a target.

Pairwise with logprobs: each verdict has a confidence (|2p - 1| of the verdict letter,
averaged over the two orders). Requiring a confidence of at least t before accepting
gives the same kind of curve over t.

Length: the rule behind AlpacaEval's length-controlled win rate, applied to acceptance:
a refinement longer than the previous answer must win by more, `k * log2(length ratio)`
on top of the threshold. Measured against the plain rule at equal or better acceptance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from nodes.context import Context
from nodes.judge_pointwise import pointwise_margin_for
from refine_n_judge.judge_check.records import DirectionResult, PairResult

CalibrationKind = Literal["pointwise_margin", "pairwise_confidence"]
LENGTH_WEIGHTS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
_NOT_ACCEPTED = -math.inf
_FLAGS: dict[CalibrationKind, str] = {
    "pointwise_margin": "--pointwise-margin",
    "pairwise_confidence": "--confidence-threshold",
}


@dataclass(frozen=True)
class Observation:
    """One labelled pair as a threshold rule sees it: the judge's value for the better
    answer as the refinement and for the worse one (score margin, or confidence of a
    `refined` verdict; -inf when no threshold would accept), and the two lengths."""

    better_value: float
    worse_value: float
    better_chars: int
    worse_chars: int


class CurvePoint(BaseModel):
    """Acceptance at one threshold."""

    threshold: float
    better_accepted: int
    worse_accepted: int
    pairs: int
    better_rate: float
    worse_rate: float
    precision: float | None


class Calibration(BaseModel):
    """One judge's curve and the threshold a target precision picks."""

    kind: CalibrationKind
    judge_model: str
    pairs: int
    flag: str
    current: float | None = Field(description="The threshold the run used (if known).")
    curve: list[CurvePoint]
    target_precision: float | None = None
    chosen: float | None = Field(default=None, description="The value to pass to `flag`.")
    chosen_point: CurvePoint | None = None
    note: str | None = None


class LengthRulePoint(BaseModel):
    """The length-aware rule at one (threshold, weight), and the plain rule beside it."""

    threshold: float
    weight: float
    better_accepted: int
    worse_accepted: int
    plain_threshold: float | None = Field(
        description="The plain threshold with the fewest false accepts among those that "
        "accept at least as many better answers."
    )
    plain_worse_accepted: int | None
    fewer_false_accepts: int = Field(description="Plain minus length-aware false accepts.")


class LengthRule(BaseModel):
    """Whether a length-aware acceptance rule beats the plain one on this set."""

    kind: CalibrationKind
    judge_model: str
    pairs: int
    at_current: list[LengthRulePoint] = Field(
        description="At the run's threshold, per weight (empty when it is not known)."
    )
    best: LengthRulePoint | None = Field(description="The largest gain anywhere on the grid.")
    earned: bool = Field(
        description="At least `min_gain` fewer false accepts at equal or better acceptance, "
        "at the run's threshold (anywhere on the grid when it is not known)."
    )


def accepts(value: float, threshold: float, kind: CalibrationKind) -> bool:
    """The rule: a margin must exceed the threshold (as `pointwise_margin`); a confidence
    must reach it (as `confidence_threshold`)."""
    if value == _NOT_ACCEPTED:
        return False
    return value > threshold if kind == "pointwise_margin" else value >= threshold


def curve_point(obs: Sequence[Observation], threshold: float, kind: CalibrationKind) -> CurvePoint:
    better = sum(accepts(o.better_value, threshold, kind) for o in obs)
    worse = sum(accepts(o.worse_value, threshold, kind) for o in obs)
    n = len(obs)
    return CurvePoint(
        threshold=threshold,
        better_accepted=better,
        worse_accepted=worse,
        pairs=n,
        better_rate=round(better / n, 4) if n else 0.0,
        worse_rate=round(worse / n, 4) if n else 0.0,
        precision=round(better / (better + worse), 4) if better + worse else None,
    )


def thresholds(obs: Sequence[Observation], kind: CalibrationKind) -> list[float]:
    """Every threshold at which the curve can change: 0 and each observed value."""
    values = {0.0}
    for o in obs:
        for v in (o.better_value, o.worse_value):
            if v != _NOT_ACCEPTED and v >= 0:
                values.add(v)
    return sorted(values)


def calibrate(
    obs: Sequence[Observation],
    *,
    kind: CalibrationKind,
    judge_model: str,
    current: float | None,
    target_precision: float | None = None,
) -> Calibration:
    """The curve, and the smallest threshold reaching `target_precision` (with at least
    one better answer accepted)."""
    grid = thresholds(obs, kind)
    curve = [curve_point(obs, t, kind) for t in grid]
    result = Calibration(
        kind=kind,
        judge_model=judge_model,
        pairs=len(obs),
        flag=_FLAGS[kind],
        current=current,
        curve=curve,
        target_precision=target_precision,
    )
    if target_precision is None or not obs:
        return result
    for i, point in enumerate(curve):
        if point.better_accepted and (point.precision or 0.0) >= target_precision:
            result.chosen_point = point
            result.chosen = _flag_value(grid, i, kind)
            return result
    reached = [p for p in curve if p.precision is not None and p.better_accepted]
    if reached:
        top = max(reached, key=lambda p: (p.precision, -p.threshold))
        result.note = (
            f"no threshold reaches precision {target_precision} on these {len(obs)} pairs; "
            f"the highest is {top.precision} at {top.threshold}"
        )
    else:
        result.note = "the judge accepted no better answer at any threshold"
    return result


def _flag_value(grid: Sequence[float], index: int, kind: CalibrationKind) -> float:
    """A short number that gives the same acceptances as grid[index]: for a margin (must
    exceed) anything in [t, next t); for a confidence (must reach) anything in (prev t, t]."""
    t = grid[index]
    for digits in (1, 2, 3, 4):
        scale = 10**digits
        if kind == "pointwise_margin":
            value = math.ceil(round(t * scale, 6)) / scale
            upper = grid[index + 1] if index + 1 < len(grid) else math.inf
            if t <= value < upper:
                return value
        else:
            value = math.floor(round(t * scale, 6)) / scale
            lower = grid[index - 1] if index > 0 else -math.inf
            if lower < value <= t:
                return value
    return t


# ----------------------------------------------------------------------- observations


def pointwise_observations(results: Sequence[PairResult], judge_model: str) -> list[Observation]:
    """Labelled pairs whose two directions both have this judge's pointwise scores."""
    return _observations(results, judge_model, _score_margin)


def _observations(
    results: Sequence[PairResult],
    judge_model: str,
    value_of: Callable[[DirectionResult, str], float | None],
) -> list[Observation]:
    """One observation per labelled pair whose two directions both have a value."""
    found: list[Observation] = []
    for result in _labelled(results):
        better = value_of(result.better_refines_worse, judge_model)
        worse = value_of(result.worse_refines_better, judge_model)
        if better is not None and worse is not None:
            found.append(Observation(better, worse, *_lengths(result)))
    return found


def _score_margin(direction: DirectionResult, judge_model: str) -> float | None:
    for call in direction.judgments:
        if (
            call.mode == "pointwise"
            and call.judge_model == judge_model
            and call.total_refined is not None
            and call.total_previous is not None
        ):
            return call.total_refined - call.total_previous
    return None


def pairwise_observations(results: Sequence[PairResult], judge_model: str) -> list[Observation]:
    """Labelled pairs whose two directions both have this judge's pairwise verdict with
    logprob probabilities in both orders."""
    return _observations(results, judge_model, _verdict_value)


def _verdict_value(direction: DirectionResult, judge_model: str) -> float | None:
    calls = [
        c for c in direction.judgments if c.mode == "pairwise" and c.judge_model == judge_model
    ]
    if len(calls) != 2 or any(c.probability_refined is None for c in calls):
        return None
    decision = direction.decision
    verdict = next(
        (v for v in (decision.verdicts if decision else []) if v.judge_model == judge_model), None
    )
    if verdict is None:
        return None
    if verdict.outcome != "refined":
        return _NOT_ACCEPTED
    return verdict.confidence or 0.0


def _labelled(results: Sequence[PairResult]) -> list[PairResult]:
    return [r for r in results if r.label != "tie" and not r.failed]


def _lengths(result: PairResult) -> tuple[int, int]:
    if result.label == "a":
        return result.chars_a, result.chars_b
    return result.chars_b, result.chars_a


def judge_models(results: Sequence[PairResult]) -> list[str]:
    """Every judge model that made a call, in first-seen order."""
    seen: dict[str, None] = {}
    for result in results:
        for direction in (result.a_refines_b, result.b_refines_a):
            for call in direction.judgments:
                seen.setdefault(call.judge_model, None)
    return list(seen)


def calibrations(
    results: Sequence[PairResult], ctx: Context | None, target_precision: float | None
) -> list[Calibration]:
    """A pointwise curve for each judge that scored, a pairwise one for each judge whose
    verdicts carry logprobs (`ctx`: the run's settings, for the thresholds it used)."""
    found: list[Calibration] = []
    for model in judge_models(results):
        pointwise = pointwise_observations(results, model)
        if pointwise:
            found.append(
                calibrate(
                    pointwise,
                    kind="pointwise_margin",
                    judge_model=model,
                    current=None if ctx is None else pointwise_margin_for(model, ctx),
                    target_precision=target_precision,
                )
            )
        pairwise = pairwise_observations(results, model)
        if pairwise:
            found.append(
                calibrate(
                    pairwise,
                    kind="pairwise_confidence",
                    judge_model=model,
                    current=None if ctx is None else ctx.confidence_threshold,
                    target_precision=target_precision,
                )
            )
    return found


# ----------------------------------------------------------------------- length rule


def length_penalty(refined_chars: int, previous_chars: int) -> float:
    """log2 of how many times longer the refinement is (0 when it is not longer)."""
    if refined_chars <= previous_chars:
        return 0.0
    return math.log2(refined_chars / max(previous_chars, 1))


def min_gain(pairs: int) -> int:
    """Fewer false accepts the length rule must show to earn a setting: 2 pairs and 2% of
    the set (a one-pair gain found by a grid search over a dev set is noise)."""
    return max(2, math.ceil(0.02 * pairs))


def length_rule_counts(
    obs: Sequence[Observation], threshold: float, weight: float, kind: CalibrationKind
) -> tuple[int, int]:
    """Better and worse accepted when a longer refinement needs `weight * log2(ratio)`
    more than `threshold`."""
    better = sum(
        accepts(
            o.better_value,
            threshold + weight * length_penalty(o.better_chars, o.worse_chars),
            kind,
        )
        for o in obs
    )
    worse = sum(
        accepts(
            o.worse_value,
            threshold + weight * length_penalty(o.worse_chars, o.better_chars),
            kind,
        )
        for o in obs
    )
    return better, worse


def measure_length_rule(
    obs: Sequence[Observation],
    *,
    kind: CalibrationKind,
    judge_model: str,
    current: float | None,
    weights: Sequence[float] = LENGTH_WEIGHTS,
) -> LengthRule:
    """The length-aware rule on a grid of thresholds and weights against the plain rule."""
    grid = thresholds(obs, kind)
    plain = [curve_point(obs, t, kind) for t in grid]

    def point(threshold: float, weight: float) -> LengthRulePoint:
        better, worse = length_rule_counts(obs, threshold, weight, kind)
        rivals = [p for p in plain if p.better_accepted >= better]
        rival = min(rivals, key=lambda p: (p.worse_accepted, -p.better_accepted), default=None)
        return LengthRulePoint(
            threshold=threshold,
            weight=weight,
            better_accepted=better,
            worse_accepted=worse,
            plain_threshold=None if rival is None else rival.threshold,
            plain_worse_accepted=None if rival is None else rival.worse_accepted,
            fewer_false_accepts=0 if rival is None else rival.worse_accepted - worse,
        )

    at_current = [] if current is None else [point(current, w) for w in weights]
    everywhere = [point(t, w) for t in grid for w in weights] + at_current
    best = max(everywhere, key=lambda p: p.fewer_false_accepts, default=None)
    return LengthRule(
        kind=kind,
        judge_model=judge_model,
        pairs=len(obs),
        at_current=at_current,
        best=best,
        # Judged at the run's threshold when known: the best point of the whole grid is
        # an in-sample optimum over two parameters and overstates the gain.
        earned=any(p.fewer_false_accepts >= min_gain(len(obs)) for p in (at_current or everywhere)),
    )


def length_rules(results: Sequence[PairResult], ctx: Context | None) -> list[LengthRule]:
    """The length measurement for every calibrated judge and kind."""
    found: list[LengthRule] = []
    for model in judge_models(results):
        for kind, obs, current in (
            (
                "pointwise_margin",
                pointwise_observations(results, model),
                None if ctx is None else pointwise_margin_for(model, ctx),
            ),
            (
                "pairwise_confidence",
                pairwise_observations(results, model),
                None if ctx is None else ctx.confidence_threshold,
            ),
        ):
            if obs:
                found.append(
                    measure_length_rule(obs, kind=kind, judge_model=model, current=current)  # type: ignore[arg-type]
                )
    return found
