"""The figures of a judge check, as pure functions of the judged pairs.

For a pair labelled "a is better", the judge should accept `a` as the refinement of `b`
(better accepted) and reject `b` as the refinement of `a` (a worse accepted is a false
accept); a pair labelled a tie should be accepted in neither direction.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from nodes.state import JudgeCall
from refine_n_judge.judge_check.readers import Side
from refine_n_judge.judge_check.records import DirectionResult, PairResult
from refine_n_judge.judge_health import judge_health

CONFIDENCE_EDGES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0)
SIDES: tuple[Side, ...] = ("a", "b", "tie")


class Rate(BaseModel):
    """`count` of `n`, and their ratio (None when n is 0)."""

    count: int
    n: int
    rate: float | None


def rate(count: int, n: int) -> Rate:
    return Rate(count=count, n=n, rate=round(count / n, 4) if n else None)


class LengthGroup(BaseModel):
    """The figures for the pairs whose better answer is longer (or shorter, or as long)."""

    pairs: int
    better_accepted: Rate
    worse_accepted: Rate
    pair_accuracy: Rate


class Bucket(BaseModel):
    """Decisions whose confidence fell in [low, high) (the last bucket includes 1.0)."""

    low: float
    high: float
    decisions: int
    correct: int
    accuracy: float | None
    mean_confidence: float | None


class Agreement(BaseModel):
    """Cohen's kappa of the judge's pair verdict (a, b or tie) with people's."""

    pairs: int = 0
    vs_majority: float | None = None
    vs_each_annotator: list[float | None] = Field(default_factory=list)
    between_annotators: float | None = Field(
        default=None, description="Mean kappa of each pair of annotators: the human ceiling."
    )
    note: str | None = None


class Cost(BaseModel):
    """Time, judge calls and tokens per pair (both directions)."""

    pairs: int
    seconds_per_pair: float | None
    calls_per_pair: float | None
    input_tokens_per_pair: float | None
    output_tokens_per_pair: float | None
    calls: int
    input_tokens: int
    output_tokens: int
    estimated_tokens: bool = Field(description="Some token counts came from tiktoken.")


class JudgeMetrics(BaseModel):
    """Every figure of the report that needs no calibration."""

    pairs: int = Field(description="Pairs judged in both directions.")
    labelled_pairs: int = Field(description="Pairs people preferred one answer of.")
    tie_pairs: int
    better_accepted: Rate
    worse_accepted: Rate = Field(description="False accepts.")
    precision: Rate = Field(description="Share of acceptances that took the better answer.")
    pair_accuracy: Rate = Field(description="Better accepted and worse rejected.")
    ties_accepted: Rate = Field(description="Tie pairs accepted in at least one direction.")
    ranking_accuracy: Rate | None = Field(
        default=None, description="Labelled pairs whose better answer the judge scored higher."
    )
    ranking_equal: int = Field(default=0, description="Labelled pairs scored equal.")
    outcomes: dict[str, int] = Field(description="Decision outcomes over every direction.")
    judge_ties: Rate = Field(description="Decisions that were a tie (over every direction).")
    judge_errors: Rate = Field(description="Decisions with no usable verdict (error, no quorum).")
    error_calls: int
    swap_consistency: Rate | None = None
    first_position_rate: Rate | None = None
    agreement: Agreement
    confidence_buckets: list[Bucket]
    length: dict[str, LengthGroup]
    cost: Cost


def compute_metrics(results: Sequence[PairResult]) -> JudgeMetrics:
    """Every figure over the pairs judged in both directions."""
    judged = [r for r in results if not r.failed]
    labelled = [r for r in judged if r.label != "tie"]
    ties = [r for r in judged if r.label == "tie"]
    directions = [d for r in judged for d in (r.a_refines_b, r.b_refines_a)]
    better = sum(r.better_refines_worse.accepted for r in labelled)
    worse = sum(r.worse_refines_better.accepted for r in labelled)
    outcomes = Counter(d.outcome for d in directions)
    health = judge_health(d.state for d in directions if d.state is not None)
    ranked, equal = ranking(labelled)
    return JudgeMetrics(
        pairs=len(judged),
        labelled_pairs=len(labelled),
        tie_pairs=len(ties),
        better_accepted=rate(better, len(labelled)),
        worse_accepted=rate(worse, len(labelled)),
        precision=rate(better, better + worse),
        pair_accuracy=rate(sum(pair_correct(r) for r in labelled), len(labelled)),
        ties_accepted=rate(
            sum(r.a_refines_b.accepted or r.b_refines_a.accepted for r in ties), len(ties)
        ),
        ranking_accuracy=ranked,
        ranking_equal=equal,
        outcomes=dict(sorted(outcomes.items())),
        judge_ties=rate(outcomes["tie"], len(directions)),
        judge_errors=rate(outcomes["error"] + outcomes["no_quorum"], len(directions)),
        error_calls=sum(c.winner == "error" for d in directions for c in d.judgments),
        swap_consistency=rate(health.consistent_pairs, health.pairs) if health.pairs else None,
        first_position_rate=(
            rate(health.first_position_wins, health.decisive_calls)
            if health.decisive_calls
            else None
        ),
        agreement=agreement(judged),
        confidence_buckets=confidence_buckets(labelled),
        length=length_groups(labelled),
        cost=cost(judged),
    )


def pair_correct(result: PairResult) -> bool:
    """Better accepted and worse rejected."""
    return result.better_refines_worse.accepted and not result.worse_refines_better.accepted


def answer_scores(result: PairResult) -> tuple[float, float] | None:
    """The judge's mean score of the better and of the worse answer over every call that
    scored them (both directions; pointwise ratings or pairwise criterion totals)."""
    better_scores: list[float] = []
    worse_scores: list[float] = []
    for direction, refined_is_better in (
        (result.better_refines_worse, True),
        (result.worse_refines_better, False),
    ):
        for call in _scored(direction.judgments):
            refined, previous = call.total_refined or 0.0, call.total_previous or 0.0
            better_scores.append(refined if refined_is_better else previous)
            worse_scores.append(previous if refined_is_better else refined)
    if not better_scores:
        return None
    return sum(better_scores) / len(better_scores), sum(worse_scores) / len(worse_scores)


def _scored(calls: Iterable[JudgeCall]) -> list[JudgeCall]:
    return [
        c
        for c in calls
        if c.winner != "error" and c.total_refined is not None and c.total_previous is not None
    ]


def ranking(labelled: Sequence[PairResult]) -> tuple[Rate | None, int]:
    """Pairs whose better answer scored higher, over the pairs with scores; and how many
    scored equal (counted as not ranked right)."""
    scores = [s for r in labelled if (s := answer_scores(r)) is not None]
    if not scores:
        return None, 0
    right = sum(b > w for b, w in scores)
    equal = sum(b == w for b, w in scores)
    return rate(right, len(scores)), equal


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when chance agreement is
    total (both raters always gave the same one label) or there are no items."""
    n = len(first)
    if n == 0 or n != len(second):
        return None
    observed = sum(x == y for x, y in zip(first, second, strict=True)) / n
    count_1, count_2 = Counter(first), Counter(second)
    expected = sum(count_1[k] * count_2[k] for k in count_1) / (n * n)
    if expected >= 1.0:
        return None
    return round((observed - expected) / (1 - expected), 4)


def agreement(judged: Sequence[PairResult]) -> Agreement:
    """Kappa with people where the layout has sides (plain files always put the better
    answer first, so there a kappa says nothing)."""
    sided = [r for r in judged if r.has_sides]
    if not judged:
        return Agreement()
    if not sided:
        return Agreement(note="the labels have no sides (plain layout): kappa is undefined")
    judge = [r.judge_side for r in sided]
    result = Agreement(pairs=len(sided), vs_majority=cohen_kappa(judge, [r.label for r in sided]))
    most = max((len(r.annotators) for r in sided), default=0)
    for i in range(most):
        rows = [(r.judge_side, r.annotators[i]) for r in sided if len(r.annotators) > i]
        result.vs_each_annotator.append(cohen_kappa(*_columns(rows)))
    between: list[float] = []
    for i in range(most):
        for j in range(i + 1, most):
            rows = [(r.annotators[i], r.annotators[j]) for r in sided if len(r.annotators) > j]
            kappa = cohen_kappa(*_columns(rows))
            if kappa is not None:
                between.append(kappa)
    result.between_annotators = round(sum(between) / len(between), 4) if between else None
    return result


def _columns(rows: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [x for x, _ in rows], [y for _, y in rows]


def direction_correct(direction: DirectionResult, should_accept: bool) -> bool:
    return direction.accepted == should_accept


def confidence_buckets(labelled: Sequence[PairResult]) -> list[Bucket]:
    """Accuracy of the decisions (accept the better, reject the worse) per confidence
    bucket: the reliability curve. Decisions without a confidence are left out."""
    points: list[tuple[float, bool]] = []
    for result in labelled:
        for direction, should in (
            (result.better_refines_worse, True),
            (result.worse_refines_better, False),
        ):
            decision = direction.decision
            if decision is not None and decision.confidence is not None:
                points.append((decision.confidence, direction_correct(direction, should)))
    buckets: list[Bucket] = []
    edges = CONFIDENCE_EDGES
    for i, (low, high) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        inside = [(c, ok) for c, ok in points if low <= c < high or (last and c == high)]
        correct = sum(ok for _, ok in inside)
        buckets.append(
            Bucket(
                low=low,
                high=high,
                decisions=len(inside),
                correct=correct,
                accuracy=round(correct / len(inside), 4) if inside else None,
                mean_confidence=(
                    round(sum(c for c, _ in inside) / len(inside), 4) if inside else None
                ),
            )
        )
    return buckets


def length_groups(labelled: Sequence[PairResult]) -> dict[str, LengthGroup]:
    """The figures split by whether the better answer is the longer one (characters)."""
    groups: dict[str, list[PairResult]] = {"better_longer": [], "better_shorter": [], "same": []}
    for result in labelled:
        better, worse = (
            (result.chars_a, result.chars_b)
            if result.label == "a"
            else (result.chars_b, result.chars_a)
        )
        key = "better_longer" if better > worse else "better_shorter" if better < worse else "same"
        groups[key].append(result)
    return {
        key: LengthGroup(
            pairs=len(group),
            better_accepted=rate(sum(r.better_refines_worse.accepted for r in group), len(group)),
            worse_accepted=rate(sum(r.worse_refines_better.accepted for r in group), len(group)),
            pair_accuracy=rate(sum(pair_correct(r) for r in group), len(group)),
        )
        for key, group in groups.items()
    }


def cost(judged: Sequence[PairResult]) -> Cost:
    """Time, calls and tokens, in total and per pair."""
    n = len(judged)
    usages = [r.a_refines_b.usage() + r.b_refines_a.usage() for r in judged]
    calls = sum(u.calls for u in usages)
    tokens_in = sum(u.input_tokens for u in usages)
    tokens_out = sum(u.output_tokens for u in usages)

    def per_pair(total: float) -> float | None:
        return round(total / n, 3) if n else None

    return Cost(
        pairs=n,
        seconds_per_pair=per_pair(sum(r.seconds for r in judged)),
        calls_per_pair=per_pair(calls),
        input_tokens_per_pair=per_pair(tokens_in),
        output_tokens_per_pair=per_pair(tokens_out),
        calls=calls,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        estimated_tokens=any(u.estimated for u in usages),
    )
