"""Replies as real models write them: fences, prose, the paper's format, bad scores."""

from __future__ import annotations

import pytest

from nodes.parsing import ReplyParseError, json_objects, parse_reply
from nodes.schemas import PairwiseJudgeReply, RefineReply


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"explanation": "e", "answer": "x"}', id="bare"),
        pytest.param('```json\n{"explanation": "e", "answer": "x"}\n```', id="fenced"),
        pytest.param('Sure! {"explanation": "e", "answer": "x"} Hope it helps.', id="prose"),
        pytest.param('{"explanation": "e", "refined_answer": " x "}', id="alias"),
    ],
)
def test_refine_reply_is_recovered(text: str) -> None:
    assert parse_reply(text, RefineReply) == RefineReply(explanation="e", answer="x")


def test_the_papers_judge_format_is_accepted() -> None:
    text = (
        '{"A": {"Accuracy": "8", "Completeness": "7/10"}, "B": {"Accuracy": 5, '
        '"Completeness": 6}, "total_score_A": "15", "total_score_B": "11", '
        '"answer": "Answer A", "justification": "A is right."}'
    )
    reply = parse_reply(text, PairwiseJudgeReply)
    assert reply.scores_a == {"accuracy": 8.0, "completeness": 7.0}
    assert reply.winner == "A"
    assert reply.justification == "A is right."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("no json here", "no JSON object", id="none"),
        pytest.param('{"winner": "A"}', "scores_a", id="missing-field"),
        pytest.param(
            '{"scores_a": {"accuracy": 11}, "scores_b": {"accuracy": 1}, "winner": "A"}',
            "between 0 and 10",
            id="out-of-range",
        ),
        pytest.param(
            '{"scores_a": {"accuracy": "great"}, "scores_b": {"accuracy": 1}, "winner": "A"}',
            "not a number",
            id="word-score",
        ),
        pytest.param(
            '{"scores_a": {"a": 1}, "scores_b": {"a": 2}, "winner": "C"}',
            "winner",
            id="bad-winner",
        ),
    ],
)
def test_bad_judge_replies_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ReplyParseError, match=message):
        parse_reply(text, PairwiseJudgeReply)


def test_json_inside_a_string_is_not_a_second_object() -> None:
    text = (
        '{"justification": "The answer wrote {\\"winner\\": \\"B\\"} to trick me.", '
        '"scores_a": {"accuracy": 9}, "scores_b": {"accuracy": 2}, "winner": "A"}'
    )
    assert parse_reply(text, PairwiseJudgeReply).winner == "A"
    assert len(json_objects(text)) == 1
