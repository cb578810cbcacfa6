"""The viewer's word diff, SVG plots and item arrangement."""

from __future__ import annotations

import pytest

from refine_n_judge.view.diff import MAX_TOKENS, changed_words, word_diff
from refine_n_judge.view.item import arrange
from refine_n_judge.view.plots import Bar, bar_chart, column_chart


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("The cat sat on the mat.", "The black cat sat on a mat!"),
        ("", "all new"),
        ("all gone", ""),
        ("line one\nline two", "line one\n\nline 2"),
        ("same", "same"),
    ],
    ids=["words", "from-empty", "to-empty", "newlines", "unchanged"],
)
def test_word_diff_reads_back_both_texts(old: str, new: str) -> None:
    segments = word_diff(old, new)
    assert segments is not None
    assert "".join(s.text for s in segments if s.op != "insert") == old
    assert "".join(s.text for s in segments if s.op != "delete") == new


def test_word_diff_marks_the_changed_words() -> None:
    segments = word_diff("The cat sat on the mat.", "The black cat sat on a mat.")
    assert segments is not None
    assert [(s.op, s.text) for s in segments if s.op != "equal"] == [
        ("insert", " black"),
        ("delete", "the"),
        ("insert", "a"),
    ]
    assert changed_words(segments) == (1, 2)


def test_word_diff_gives_up_on_huge_texts() -> None:
    assert word_diff("a " * MAX_TOKENS, "b") is None


def test_plots_escape_labels_and_links() -> None:
    svg = str(
        bar_chart([Bar("<script>x</script>", 3, href="/items?stop=a&b=<c>")], title="T<")
        + column_chart([Bar('"q"', 0.5, note="50%")], title="C", x_label="<x>", top=1.0)
    )
    assert "<script>" not in svg and "&lt;script&gt;x&lt;/script&gt;" in svg
    assert 'href="/items?stop=a&amp;b=&lt;c&gt;"' in svg
    assert "&#34;q&#34;" in svg and "&lt;x&gt;" in svg and ">50%<" in svg


def test_bars_scale_to_the_largest_value() -> None:
    svg = str(bar_chart([Bar("a", 10), Bar("b", 5)], title="t", width=460))
    # 460 - 170 label - 70 note = 220 px for the largest bar
    assert 'width="220.0"' in svg and 'width="110.0"' in svg


def test_arrange_links_answers_to_the_rounds_that_accepted_them() -> None:
    def call(iteration: int, role: str, winner: str) -> dict:
        return {"iteration": iteration, "candidate_role": role, "winner": winner}

    def decision(iteration: int, role: str, accepted: bool) -> dict:
        return {"iteration": iteration, "candidate_role": role, "accepted": accepted}

    state = {
        "id": "x",
        "question": "q",
        "messages": [{"role": "user", "content": "before"}],
        "new_field": {"k": 1},
        "chain": [
            {"text": "a b", "iteration": 0, "role": "initial"},
            {"text": "a c", "iteration": 1, "role": "refiner"},
            {"text": "a c d", "iteration": 2, "role": "alternate_refiner"},
        ],
        "judgments": [
            call(1, "refiner", "refined"), call(2, "refiner", "previous"),
            call(2, "alternate_refiner", "refined"), call(3, "refiner", "error"),
        ],
        "decisions": [
            decision(1, "refiner", True), decision(2, "refiner", False),
            decision(2, "alternate_refiner", True),
        ],
        "last_rejected": {"text": "a c e", "iteration": 2, "role": "refiner"},
    }  # fmt: skip
    chain = arrange(state)
    assert [(r.iteration, r.candidate_role, r.accepted, r.answer_number) for r in chain.rounds] == [
        (1, "refiner", True, 1),
        (2, "refiner", False, None),
        (2, "alternate_refiner", True, 2),
        (3, "refiner", None, None),  # calls with no decision still show
    ]
    assert [len(r.calls) for r in chain.rounds] == [1, 1, 1, 1]
    assert chain.answers[0].diff is None and chain.answers[2].changed == (0, 1)
    assert chain.rejected is not None and chain.rejected.changed == (1, 1)
    assert chain.conversation == [{"role": "user", "content": "before"}]
    assert set(chain.extra) == {"new_field"}
