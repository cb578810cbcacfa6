"""run.json: what a curation run did, over everything in its output directory.

`Tally` adds up items one at a time (the chains are never held in memory together);
`RunReport` is the JSON document written from it, with the settings (no secrets), the
package versions, counts, tokens, calls and cost per model, the chain-length histogram,
stop reasons and judge health (swap consistency, first-position preference).
"""

from __future__ import annotations

import platform
from collections import Counter
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from pydantic import BaseModel, Field

from nodes.state import ChainState, UsageTable
from refine_n_judge.curate.outcomes import is_partial
from refine_n_judge.curate.pricing import PriceTable
from refine_n_judge.curate.records import FailureRow
from refine_n_judge.judge_health import JudgeHealth, judge_health

REPORT_VERSION = 1
PACKAGES = (
    "refine-n-judge",
    "langgraph",
    "langchain",
    "langchain-core",
    "langchain-openai",
    "langchain-community",
    "langsmith",
    "openai",
    "pydantic",
    "pyarrow",
    "datasets",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run's output depends on (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now_iso() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelUsage(BaseModel):
    """Calls and tokens of one model, in total and by node."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    by_node: dict[str, dict[str, int]] = Field(default_factory=dict)
    cost_usd: float | None = None


class Invocation(BaseModel):
    """One execution of the command on this output directory."""

    started_at: str
    finished_at: str | None = None
    wall_seconds: float | None = None
    status: str = "running"
    concurrency: int | None = None
    forced_settings_changes: list[str] = Field(default_factory=list)
    new_items: int = 0
    new_failures: int = 0
    skipped_done: int = 0
    retried_failures: int = 0
    repaired: list[str] = Field(default_factory=list)
    cache: dict[str, int] | None = None
    ray: dict[str, Any] | None = Field(
        default=None, description="--engine ray: the Ray used (started or joined), items by node"
    )


class Tally:
    """Running totals over chains and failures, one item at a time."""

    def __init__(self) -> None:
        self.chains = 0
        self.partial = 0
        self.failures = 0
        self.failure_kinds: Counter[str] = Counter()
        self.failure_stages: Counter[str] = Counter()
        self.stop_reasons: Counter[str] = Counter()
        self.chain_lengths: Counter[int] = Counter()
        self.accepted_refinements = 0
        self.generated_initial = 0
        self.sft_rows = 0
        self.dpo_rows = 0
        self.usage: dict[str, dict[str, list[int]]] = {}
        self.estimated_models: set[str] = set()
        self.health = JudgeHealth()
        self.retrying: dict[str, tuple[str, str, str | None]] = {}
        self.redone = 0

    def expect_retries(self, retrying: dict[str, tuple[str, str, str | None]]) -> None:
        """--retry-failed: these failures (already counted) may be committed again; each
        then stops counting as a failure (its tokens stay spent)."""
        self.retrying = dict(retrying)

    def _forget_retried(self, key: str | None) -> None:
        found = self.retrying.pop(key, None) if key is not None else None
        if found is None:
            return
        kind, stage, stop_reason = found
        self.redone += 1
        if stop_reason is not None:
            self.stop_reasons[stop_reason] -= 1
        self.failures -= 1
        self.failure_kinds[kind] -= 1
        self.failure_stages[stage] -= 1
        for counter in (self.failure_kinds, self.failure_stages, self.stop_reasons):
            for name in [k for k, n in counter.items() if n <= 0]:
                del counter[name]

    def add_chain(self, state: ChainState, *, sft_rows: int = 0, dpo_rows: int = 0) -> None:
        """Count a finished item."""
        self._forget_retried(state.id)
        self.chains += 1
        self.partial += is_partial(state)
        self.sft_rows += sft_rows
        self.dpo_rows += dpo_rows
        self.accepted_refinements += state.accepted_refinements
        self.chain_lengths[state.accepted_refinements] += 1
        if state.chain and state.chain[0].model != "input":
            self.generated_initial += 1
        self._add_state(state)

    def add_failure(self, row: FailureRow) -> None:
        """Count a failed item or bad input row (its partial chain's usage included)."""
        self._forget_retried(row.id)
        self.failures += 1
        self.failure_kinds[row.kind] += 1
        self.failure_stages[row.stage] += 1
        if row.state is not None:
            self._add_state(row.state)

    def add_retired(self, row: FailureRow) -> None:
        """Count only the tokens of a failure that --retry-failed took out (they were spent)."""
        if row.state is not None:
            self._add_usage(row.state.usage)

    def _add_state(self, state: ChainState) -> None:
        if state.stop_reason:
            self.stop_reasons[state.stop_reason] += 1
        self._add_usage(state.usage)
        self._add_health(judge_health([state]))

    def _add_usage(self, usage: UsageTable) -> None:
        for model, nodes in usage.items():
            table = self.usage.setdefault(model, {})
            for node, u in nodes.items():
                totals = table.setdefault(node, [0, 0, 0])
                totals[0] += u.calls
                totals[1] += u.input_tokens
                totals[2] += u.output_tokens
                if u.estimated:
                    self.estimated_models.add(model)

    def _add_health(self, one: JudgeHealth) -> None:
        h = self.health
        h.pairs += one.pairs
        h.consistent_pairs += one.consistent_pairs
        h.decisive_calls += one.decisive_calls
        h.first_position_wins += one.first_position_wins
        h.error_calls += one.error_calls
        for iteration, (consistent, total) in one.by_iteration.items():
            c, n = h.by_iteration.get(iteration, (0, 0))
            h.by_iteration[iteration] = (c + consistent, n + total)

    @property
    def items(self) -> int:
        """Items with a row in chains.jsonl or failures.jsonl."""
        return self.chains + self.failures

    @property
    def tokens(self) -> int:
        """Input plus output tokens over all models."""
        return sum(t[1] + t[2] for nodes in self.usage.values() for t in nodes.values())

    @property
    def calls(self) -> int:
        """Model calls over all models."""
        return sum(t[0] for nodes in self.usage.values() for t in nodes.values())

    @property
    def mean_chain_length(self) -> float | None:
        """Mean accepted refinements per finished item."""
        return self.accepted_refinements / self.chains if self.chains else None

    def model_usage(self, prices: PriceTable) -> dict[str, ModelUsage]:
        """Usage per model with its cost when the price is known."""
        result: dict[str, ModelUsage] = {}
        for model, nodes in sorted(self.usage.items()):
            usage = ModelUsage(estimated=model in self.estimated_models)
            for node, (calls, tokens_in, tokens_out) in sorted(nodes.items()):
                usage.calls += calls
                usage.input_tokens += tokens_in
                usage.output_tokens += tokens_out
                usage.by_node[node] = {
                    "calls": calls,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                }
            usage.cost_usd = prices.cost(model, usage.input_tokens, usage.output_tokens)
            result[model] = usage
        return result


class RunReport(BaseModel):
    """The document in run.json."""

    report_version: int = REPORT_VERSION
    status: str
    output_dir: str
    files: dict[str, str]
    inputs: list[dict[str, Any]]
    settings: dict[str, Any]
    packages: dict[str, str | None]
    counts: dict[str, int]
    failures_by_kind: dict[str, int]
    failures_by_stage: dict[str, int]
    stop_reasons: dict[str, int]
    chain_length_histogram: dict[str, int] = Field(
        description="Accepted refinements per finished item -> number of items."
    )
    mean_chain_length: float | None
    usage: dict[str, ModelUsage]
    total_calls: int
    total_tokens: int
    cost_usd: float | None = Field(description="Null when some model's price is unknown.")
    cached_calls: int = Field(
        default=0,
        description=(
            "Calls answered from the --cache (summed over invocations). The usage and cost "
            "above count them too, as the graph cannot tell a cached reply from a paid one."
        ),
    )
    unpriced_models: list[str]
    price_source: str
    judge_health: dict[str, object]
    invocations: list[Invocation]
    wall_seconds: float = Field(description="Summed over all invocations.")

    @classmethod
    def build(
        cls,
        *,
        tally: Tally,
        status: str,
        output_dir: str,
        files: dict[str, str],
        inputs: list[dict[str, Any]],
        settings: dict[str, Any],
        prices: PriceTable,
        invocations: list[Invocation],
    ) -> RunReport:
        """The report of the tallied items."""
        usage = tally.model_usage(prices)
        unpriced = [model for model, u in usage.items() if u.cost_usd is None]
        priced = [u.cost_usd for u in usage.values() if u.cost_usd is not None]
        return cls(
            status=status,
            output_dir=output_dir,
            files=files,
            inputs=inputs,
            settings=settings,
            packages=package_versions(),
            counts={
                "items": tally.items,
                "succeeded": tally.chains,
                "partial": tally.partial,
                "failed": tally.failures,
                "accepted_refinements": tally.accepted_refinements,
                "generated_initial_answers": tally.generated_initial,
                "sft_rows": tally.sft_rows,
                "dpo_rows": tally.dpo_rows,
            },
            failures_by_kind=dict(sorted(tally.failure_kinds.items())),
            failures_by_stage=dict(sorted(tally.failure_stages.items())),
            stop_reasons=dict(tally.stop_reasons.most_common()),
            chain_length_histogram={str(k): v for k, v in sorted(tally.chain_lengths.items())},
            mean_chain_length=(
                None if tally.mean_chain_length is None else round(tally.mean_chain_length, 4)
            ),
            usage=usage,
            total_calls=tally.calls,
            total_tokens=tally.tokens,
            cost_usd=None if unpriced else round(sum(priced), 6),
            cached_calls=sum((i.cache or {}).get("hits", 0) for i in invocations),
            unpriced_models=unpriced,
            price_source=prices.source,
            judge_health=tally.health.summary(),
            invocations=invocations,
            wall_seconds=round(sum(i.wall_seconds or 0.0 for i in invocations), 3),
        )
