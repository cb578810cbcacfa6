"""The decision rule, as small pure functions (each with a table-driven test).

One judge: the refinement wins only if it wins in both orders (FastChat's MT-Bench rule,
made strict). Several judges: a strict majority of the judges that answered, if at least
`quorum` answered.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from nodes.state import CallWinner, Decision, Outcome, Role, StopReason, Verdict

# When a rejection has several reasons, the one reported is the first of these present.
_REJECTION_ORDER: tuple[Outcome, ...] = ("previous", "inconsistent", "tie", "error")

_STOP_REASONS: dict[str, StopReason] = {
    "previous": "rejected",
    "inconsistent": "inconsistent",
    "tie": "tie",
    "error": "judge_error",
    "no_quorum": "no_quorum",
    "identical": "identical",
}


def pair_outcome(refined_first: CallWinner, refined_second: CallWinner) -> Outcome:
    """One judge's outcome from its two position-swapped calls."""
    if "error" in (refined_first, refined_second):
        return "error"
    if refined_first == refined_second:
        return refined_first
    return "inconsistent"


def decide(
    verdicts: Sequence[Verdict],
    *,
    iteration: int,
    candidate_role: Role,
    candidate_model: str,
    quorum: int,
) -> Decision:
    """Combine the judges' verdicts into accept/reject."""
    answered = [v for v in verdicts if v.outcome != "error"]
    votes = sum(v.outcome == "refined" for v in answered)
    quorum_met = len(answered) >= quorum and bool(answered)
    accepted = quorum_met and votes * 2 > len(answered)
    if accepted:
        outcome: Outcome | str = "refined"
    elif not quorum_met:
        outcome = "error" if len(verdicts) == 1 else "no_quorum"
    else:
        counts = Counter(v.outcome for v in verdicts if v.outcome != "refined")
        top = max(counts.values())
        outcome = next(o for o in _REJECTION_ORDER if counts.get(o) == top)
    return Decision(
        iteration=iteration,
        candidate_role=candidate_role,
        candidate_model=candidate_model,
        verdicts=list(verdicts),
        answered=len(answered),
        votes_for_refined=votes,
        quorum=quorum,
        accepted=accepted,
        outcome=outcome,  # type: ignore[arg-type]
        confidence=_confidence(verdicts, accepted) if quorum_met else 0.0,
    )


def _confidence(verdicts: Sequence[Verdict], accepted: bool) -> float:
    """Mean over the judges that answered of their confidence in the side decided (0 if
    they disagreed with it): high only when judges agree and are sure."""
    answered = [v for v in verdicts if v.outcome != "error"]
    side = {"refined"} if accepted else {"previous", "inconsistent", "tie"}
    total = sum((v.confidence or 0.0) if v.outcome in side else 0.0 for v in answered)
    return round(total / len(answered), 4)


def identical_decision(
    iteration: int, candidate_role: Role, candidate_model: str, quorum: int
) -> Decision:
    """The refinement repeats the current answer: a tie, decided without a judge call."""
    return Decision(
        iteration=iteration,
        candidate_role=candidate_role,
        candidate_model=candidate_model,
        verdicts=[],
        answered=0,
        votes_for_refined=0,
        quorum=quorum,
        accepted=False,
        outcome="identical",
        confidence=1.0,
    )


def stop_reason_for(decision: Decision) -> StopReason:
    """Why the loop ends after this decision (an accepted one ends only at the cap)."""
    if decision.accepted:
        return "max_iterations"
    return _STOP_REASONS[decision.outcome]


def same_text(a: str, b: str) -> bool:
    """Identical up to surrounding and repeated whitespace."""
    return " ".join(a.split()) == " ".join(b.split())
