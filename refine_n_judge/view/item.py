"""One item's row (chains.jsonl or failures.jsonl) arranged for its page.

Rows are read as plain JSON, not through `ChainState`, so a row written by an older or newer
version still shows: known fields get their own sections, any other field is listed as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from refine_n_judge.view.diff import Segment, changed_words, word_diff

STATE_FIELDS = frozenset(
    {
        "id",
        "question",
        "history",
        "answer",
        "reference",
        "chain",
        "judgments",
        "decisions",
        "failures",
        "usage",
        "feedback",
        "candidate",
        "last_rejected",
        "iteration",
        "stop_reason",
    }
)
FAILURE_FIELDS = ("stage", "kind", "reason", "model", "iteration", "item_id", "source", "line")
FAILURE_ROW_FIELDS = frozenset({"id", "raw", "state", "field", *FAILURE_FIELDS})
CALL_FIELDS = frozenset(
    {
        "iteration",
        "judge_model",
        "mode",
        "position",
        "candidate_role",
        "scores_refined",
        "scores_previous",
        "total_refined",
        "total_previous",
        "winner",
        "justification",
        "confidence",
        "probability_refined",
        "score_source",
        "raw",
        "error",
        "attempts",
    }
)


@dataclass
class Round:
    """One judged candidate: the decision and the judge calls behind it."""

    iteration: Any
    candidate_role: Any
    decision: dict[str, Any] | None
    calls: list[dict[str, Any]]
    number: int = 0
    """1-based position among the item's rounds."""
    answer_number: int | None = None
    """The chain position of the answer this round accepted."""

    @property
    def accepted(self) -> bool | None:
        return None if self.decision is None else bool(self.decision.get("accepted"))


@dataclass
class AnswerStep:
    """One answer of the chain with its diff against the one before."""

    number: int
    answer: dict[str, Any]
    diff: list[Segment] | None
    changed: tuple[int, int] | None
    round: Round | None = None


@dataclass
class Chain:
    """The state of one item's run, arranged for display."""

    state: dict[str, Any]
    conversation: list[dict[str, Any]] | None
    answers: list[AnswerStep]
    rounds: list[Round]
    rejected: AnswerStep | None
    pending: AnswerStep | None
    failures: list[dict[str, Any]]
    usage: list[tuple[str, str, dict[str, Any]]]
    extra: dict[str, str] = field(default_factory=dict)


def _text(answer: Any) -> str:
    return str(answer.get("text", "")) if isinstance(answer, dict) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def is_conversation(value: Any) -> bool:
    """A list of chat turns: dicts with a role and a content."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, dict) and "role" in t and "content" in t for t in value)
    )


def pretty(value: Any) -> str:
    """Indented JSON of a value (for fields the page has no section for)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _step(number: int, answer: dict[str, Any], before: dict[str, Any] | None) -> AnswerStep:
    segments = None if before is None else word_diff(_text(before), _text(answer))
    changed = changed_words(segments) if segments is not None else None
    return AnswerStep(number, answer, segments, changed)


def _rounds(state: dict[str, Any]) -> list[Round]:
    calls: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for call in _dicts(state.get("judgments")):
        calls.setdefault((call.get("iteration"), call.get("candidate_role")), []).append(call)
    rounds: list[Round] = []
    for decision in _dicts(state.get("decisions")):
        key = (decision.get("iteration"), decision.get("candidate_role"))
        rounds.append(Round(*key, decision, calls.pop(key, [])))
    rounds.extend(Round(*key, None, group) for key, group in calls.items())
    for number, round_ in enumerate(rounds, start=1):
        round_.number = number
    return rounds


def arrange(state: dict[str, Any]) -> Chain:
    """Answers with diffs, judge rounds, the rejected and pending candidates, failures,
    token usage and any field the page does not know."""
    chain = _dicts(state.get("chain"))
    answers = [_step(i, a, chain[i - 1] if i else None) for i, a in enumerate(chain)]
    rounds = _rounds(state)
    for step in answers[1:]:
        key = (step.answer.get("iteration"), step.answer.get("role"))
        for round_ in rounds:
            if (round_.iteration, round_.candidate_role) == key and round_.accepted:
                step.round, round_.answer_number = round_, step.number
                break
    final = chain[-1] if chain else None
    rejected = state.get("last_rejected")
    pending = state.get("candidate")
    history = state.get("history")
    conversation = history if is_conversation(history) else None
    extra: dict[str, str] = {}
    for key, value in state.items():
        if key in STATE_FIELDS:
            continue
        if conversation is None and is_conversation(value):
            conversation = value
        elif value not in (None, [], {}):
            extra[key] = pretty(value)
    usage = [
        (str(model), str(node), counts)
        for model, nodes in (state.get("usage") or {}).items()
        if isinstance(nodes, dict)
        for node, counts in nodes.items()
        if isinstance(counts, dict)
    ]
    return Chain(
        state=state,
        conversation=conversation,
        answers=answers,
        rounds=rounds,
        rejected=_step(-1, rejected, final) if isinstance(rejected, dict) else None,
        pending=(
            _step(-1, pending, final)
            if isinstance(pending, dict) and pending not in chain
            else None
        ),
        failures=_dicts(state.get("failures")),
        usage=usage,
        extra=extra,
    )


def call_extras(call: dict[str, Any]) -> dict[str, str]:
    """Fields of a judge call the page has no column for."""
    return {k: pretty(v) for k, v in call.items() if k not in CALL_FIELDS and v is not None}


def failure_extras(row: dict[str, Any]) -> dict[str, str]:
    """Fields of a failures.jsonl row the page has no place for."""
    return {k: pretty(v) for k, v in row.items() if k not in FAILURE_ROW_FIELDS}
