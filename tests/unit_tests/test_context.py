"""Settings fail fast with a message that names the field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from graph import Context, build_graph
from tests.support.chat_models import ScriptedChatModel, versioned_handler


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"max_iterations": 0}, "max_iterations", id="zero-iterations"),
        pytest.param({"max_iteration": 3}, "max_iteration", id="typo-key"),
        pytest.param({"criteria": []}, "criteria", id="no-criteria"),
        pytest.param({"criteria": ["accuracy", "Accuracy"]}, "duplicates", id="dup-criteria"),
        pytest.param({"judges": ["a", "b"], "quorum": 3}, "quorum=3", id="quorum"),
        pytest.param({"judge_scoring": "vibes"}, "judge_scoring", id="bad-mode"),
    ],
)
def test_bad_context_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Context(**settings)


def test_bad_context_fails_before_any_model_call() -> None:
    model = ScriptedChatModel(handler=versioned_handler(stop_at=1))
    with pytest.raises(ValidationError, match="max_iterations"):
        build_graph(refiner=model).invoke(
            {"question": "q", "answer": "v0"}, context={"max_iterations": 0}
        )
    assert model.calls == []


def test_empty_question_is_refused() -> None:
    model = ScriptedChatModel(handler=versioned_handler(stop_at=1))
    with pytest.raises(ValidationError, match="question"):
        build_graph(refiner=model).invoke({"question": "", "answer": "v0"})
    assert model.calls == []
