"""The decision rule as a table: one judge's pair, and the vote."""

from __future__ import annotations

import pytest

from nodes.decision import decide, pair_outcome, same_text, stop_reason_for
from nodes.state import Verdict


@pytest.mark.parametrize(
    ("refined_first", "refined_second", "outcome"),
    [
        ("refined", "refined", "refined"),
        ("previous", "previous", "previous"),
        ("refined", "previous", "inconsistent"),
        ("previous", "refined", "inconsistent"),
        ("tie", "tie", "tie"),
        ("tie", "refined", "inconsistent"),
        ("refined", "tie", "inconsistent"),
        ("tie", "previous", "inconsistent"),
        ("error", "refined", "error"),
        ("refined", "error", "error"),
        ("error", "error", "error"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_pair_outcome(refined_first: str, refined_second: str, outcome: str) -> None:
    assert pair_outcome(refined_first, refined_second) == outcome  # type: ignore[arg-type]


def verdicts(*outcomes: str) -> list[Verdict]:
    return [
        Verdict(judge_model=f"j{i}", outcome=o, confidence=0.5)  # type: ignore[arg-type]
        for i, o in enumerate(outcomes)
    ]


@pytest.mark.parametrize(
    ("outcomes", "quorum", "accepted", "outcome", "stop"),
    [
        (["refined"], 1, True, "refined", "max_iterations"),
        (["previous"], 1, False, "previous", "rejected"),
        (["inconsistent"], 1, False, "inconsistent", "inconsistent"),
        (["tie"], 1, False, "tie", "tie"),
        (["error"], 1, False, "error", "judge_error"),
        (["refined", "refined", "previous"], 1, True, "refined", "max_iterations"),
        (["refined", "previous"], 1, False, "previous", "rejected"),  # 1 of 2 is no majority
        (["refined", "tie", "inconsistent"], 1, False, "inconsistent", "inconsistent"),
        (["refined", "error", "error"], 1, True, "refined", "max_iterations"),
        (["refined", "error", "error"], 2, False, "no_quorum", "no_quorum"),
        (["error", "error", "error"], 1, False, "no_quorum", "no_quorum"),
    ],
)
def test_vote(outcomes: list[str], quorum: int, accepted: bool, outcome: str, stop: str) -> None:
    decision = decide(
        verdicts(*outcomes),
        iteration=1,
        candidate_role="refiner",
        candidate_model="m",
        quorum=quorum,
    )
    assert decision.accepted is accepted
    assert decision.outcome == outcome
    assert stop_reason_for(decision) == stop


def test_confidence_is_agreement_weighted() -> None:
    decision = decide(
        verdicts("refined", "refined", "previous"),
        iteration=1,
        candidate_role="refiner",
        candidate_model="m",
        quorum=1,
    )
    assert decision.confidence == pytest.approx((0.5 + 0.5 + 0) / 3, abs=1e-4)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [("v1", "v1", True), (" v1\n", "v1", True), ("a  b", "a b", True), ("v1", "v2", False)],
)
def test_same_text(a: str, b: str, same: bool) -> None:
    assert same_text(a, b) is same
