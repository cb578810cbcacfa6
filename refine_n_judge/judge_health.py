"""Judge health over many chains: how often the swapped orders agree, and how often the
judge prefers whatever sits in the first position (paper section 5.4 saw agreement fall
from 100% to about 50% near termination)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel

from nodes.state import ChainState


class JudgeHealth(BaseModel):
    """Swap consistency and first-position preference, overall and by iteration."""

    pairs: int = 0
    consistent_pairs: int = 0
    decisive_calls: int = 0
    first_position_wins: int = 0
    error_calls: int = 0
    by_iteration: dict[int, tuple[int, int]] = {}
    """iteration -> (consistent pairs, pairs)."""

    @property
    def swap_consistency(self) -> float | None:
        """Share of swapped pairs whose two orders reached the same verdict."""
        return self.consistent_pairs / self.pairs if self.pairs else None

    @property
    def first_position_rate(self) -> float | None:
        """Share of decisive calls (not tie, not error) won by the answer shown first."""
        return self.first_position_wins / self.decisive_calls if self.decisive_calls else None

    def summary(self) -> dict[str, object]:
        """Plain numbers for run reports."""
        return {
            "pairs": self.pairs,
            "swap_consistency": _round(self.swap_consistency),
            "first_position_preference": _round(self.first_position_rate),
            "decisive_calls": self.decisive_calls,
            "error_calls": self.error_calls,
            "consistency_by_iteration": {
                str(i): _round(c / n) for i, (c, n) in sorted(self.by_iteration.items()) if n
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def judge_health(states: Iterable[ChainState]) -> JudgeHealth:
    """Judge health over the pairwise judgments of `states` (pointwise calls have no order)."""
    health = JudgeHealth()
    consistent: Counter[int] = Counter()
    total: Counter[int] = Counter()
    for state in states:
        pairs: dict[tuple[int, str, str], dict[str, str]] = {}
        for call in state.judgments:
            if call.mode != "pairwise":
                continue
            if call.winner == "error":
                health.error_calls += 1
            elif call.winner != "tie":
                health.decisive_calls += 1
                refined_first = call.position == "refined_first"
                health.first_position_wins += (call.winner == "refined") == refined_first
            key = (call.iteration, call.candidate_role, call.judge_model)
            pairs.setdefault(key, {})[call.position] = call.winner
        for (iteration, _, _), winners in pairs.items():
            if len(winners) != 2 or "error" in winners.values():
                continue
            total[iteration] += 1
            if winners["refined_first"] == winners["refined_second"]:
                consistent[iteration] += 1
    health.pairs = sum(total.values())
    health.consistent_pairs = sum(consistent.values())
    health.by_iteration = {i: (consistent[i], total[i]) for i in total}
    return health
