"""The run report's numbers: tallies one item at a time, judge health, prices and cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.state import Answer, ChainState, JudgeCall, TokenUsage
from refine_n_judge.curate.errors import SettingsError
from refine_n_judge.curate.pricing import PriceTable, openai_price
from refine_n_judge.curate.records import FailureRow
from refine_n_judge.curate.report import RunReport, Tally
from refine_n_judge.judge_health import judge_health


def call(iteration: int, position: str, winner: str) -> JudgeCall:
    return JudgeCall(
        iteration=iteration,
        judge_model="j",
        position=position,  # type: ignore[arg-type]
        candidate_role="refiner",
        winner=winner,  # type: ignore[arg-type]
    )


def chain(n_refinements: int, calls: list[JudgeCall], model: str = "m") -> ChainState:
    answers = [Answer(text="a0", iteration=0, model="input", role="initial")]
    answers += [
        Answer(text=f"a{i}", iteration=i, model=model, role="refiner")
        for i in range(1, n_refinements + 1)
    ]
    return ChainState(
        id=f"c{n_refinements}",
        question="q",
        chain=answers,
        judgments=calls,
        usage={model: {"judge": TokenUsage(calls=2, input_tokens=1000, output_tokens=100)}},
        stop_reason="rejected",
    )


STATES = [
    chain(1, [call(1, "refined_first", "refined"), call(1, "refined_second", "refined")]),
    chain(0, [call(1, "refined_first", "refined"), call(1, "refined_second", "previous")]),
    chain(2, [call(1, "refined_first", "tie"), call(2, "refined_first", "error")]),
]


def test_tally_matches_judge_health_over_all_states() -> None:
    tally = Tally()
    for s in STATES:
        tally.add_chain(s, sft_rows=1, dpo_rows=s.accepted_refinements)
    assert tally.health.summary() == judge_health(STATES).summary()
    assert tally.chains == 3
    assert tally.chain_lengths == {0: 1, 1: 1, 2: 1}
    assert tally.accepted_refinements == 3
    assert tally.mean_chain_length == 1.0
    assert tally.calls == 6 and tally.tokens == 3300


def test_failures_count_by_kind_and_their_tokens_count_too() -> None:
    tally = Tally()
    partial = chain(0, [], model="m").model_copy(update={"stop_reason": "model_error"})
    tally.add_failure(
        FailureRow(id="x", stage="refine", kind="model_error", reason="r", state=partial)
    )
    tally.add_failure(FailureRow(id="f:2", stage="input", kind="malformed", reason="r"))
    assert (tally.failures, tally.items) == (2, 2)
    assert tally.failure_kinds == {"model_error": 1, "malformed": 1}
    assert tally.stop_reasons == {"model_error": 1}
    assert tally.tokens == 1100


def test_report_cost_uses_the_prices_file_and_openai_table(tmp_path: Path) -> None:
    prices_file = tmp_path / "prices.json"
    prices_file.write_text(json.dumps({"m": {"input": 1.0, "output": 10.0}}))
    tally = Tally()
    tally.add_chain(chain(1, [], model="m"))
    tally.add_chain(chain(1, [], model="openai:gpt-4o-mini"))
    report = RunReport.build(
        tally=tally,
        status="finished",
        output_dir="o",
        files={},
        inputs=[],
        settings={},
        prices=PriceTable.load(prices_file),
        invocations=[],
    )
    mini = openai_price("gpt-4o-mini")
    assert mini is not None and mini.input == pytest.approx(0.15)
    assert report.usage["m"].cost_usd == pytest.approx((1000 * 1.0 + 100 * 10.0) / 1e6)
    expected_mini = (1000 * mini.input + 100 * mini.output) / 1e6
    assert report.usage["openai:gpt-4o-mini"].cost_usd == pytest.approx(expected_mini)
    assert report.cost_usd == pytest.approx(0.002 + expected_mini)
    assert report.unpriced_models == []


def test_unknown_prices_give_no_cost_rather_than_a_guess() -> None:
    tally = Tally()
    tally.add_chain(chain(1, [], model="my-local-model"))
    report = RunReport.build(
        tally=tally,
        status="finished",
        output_dir="o",
        files={},
        inputs=[],
        settings={},
        prices=PriceTable(),
        invocations=[],
    )
    assert report.cost_usd is None
    assert report.unpriced_models == ["my-local-model"]


@pytest.mark.parametrize(
    "content", ['{"m": {"input": -1, "output": 1}}', "[1, 2]", "not json", '{"m": {"in": 1}}']
)
def test_a_bad_prices_file_is_a_settings_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(SettingsError, match="--prices"):
        PriceTable.load(path)
