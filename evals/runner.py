"""Run one experiment on one dataset with `langsmith.aevaluate`, keeping results locally.

Without a LangSmith API key the run is offline: `upload_results=False`, a client that
samples no trace and whose HTTP session refuses every request (aevaluate still traces the
target otherwise), and tracing switched off inside the target and the evaluators. With a
key, the dataset is synced to LangSmith and the run is uploaded as an experiment. Either
way `results.jsonl` (one row per item, as items finish) and `summary.json` are written.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import inspect
import os
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import langsmith
import requests
from langsmith import aevaluate
from langsmith.schemas import Example, ExampleCreate

from evals.datasets import Dataset
from evals.judging import EvalJudge
from evals.records import (
    RESULTS_FILE,
    SUMMARY_FILE,
    FeedbackRecord,
    Headline,
    KeyStat,
    ResultRow,
    RunSummary,
)
from evals.setup import EvalSetup, Pipeline
from nodes.state import ChainState, TokenUsage
from refine_n_judge.judge_health import judge_health

Progress = Callable[[str], None]
API_KEY_VARS = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")


@dataclass(frozen=True)
class Experiment:
    """An experiment: the pipelines its target runs, its evaluators, its summary metrics."""

    name: str
    title: str
    pipelines: Callable[[EvalSetup], dict[str, Pipeline]]
    evaluators: Callable[[EvalSetup, Dataset, EvalJudge], list[Callable[..., Any]]]
    metrics: Callable[[list[ResultRow], Dataset], tuple[dict[str, Any], Headline | None]]
    load_dataset: Callable[..., Any] | None = None
    """How `--dataset` is read, when not as an evaluation dataset (`evals.datasets`)."""


class OfflineError(ConnectionError):
    """Raised by the offline LangSmith client's session for any request it is asked to make."""


class _RefuseAll(requests.adapters.BaseAdapter):
    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        raise OfflineError(f"offline evaluation: refused to send {request.method} {request.url}")

    def close(self) -> None:
        return None


def offline_client() -> langsmith.Client:
    """A LangSmith client that never reaches the network: traces are sampled out and its
    session refuses every request."""
    client = langsmith.Client(
        api_url="http://langsmith.offline.invalid",
        api_key="offline",
        auto_batch_tracing=False,
        tracing_sampling_rate=0.0,
        info={},
    )
    # After construction: the client mounts its own adapters on the session it is given.
    client.session.mount("http://", _RefuseAll())
    client.session.mount("https://", _RefuseAll())
    return client


def upload_enabled() -> bool:
    """Upload when a LangSmith API key is set."""
    return any(os.environ.get(name) for name in API_KEY_VARS)


def sync_dataset(client: langsmith.Client, dataset: Dataset) -> list[Example]:
    """The dataset's examples as stored in LangSmith (`refine-n-judge/<name>`), creating the
    dataset and any missing items (matched on `metadata.item_id`)."""
    name = f"refine-n-judge/{dataset.name}"
    if client.has_dataset(dataset_name=name):
        remote = client.read_dataset(dataset_name=name)
    else:
        remote = client.create_dataset(name, description=f"Refine-n-Judge evals: {dataset.name}")
    local = dataset.examples()
    stored = {
        (ex.metadata or {}).get("item_id"): ex for ex in client.list_examples(dataset_id=remote.id)
    }
    missing = [ex for ex in local if ex.metadata["item_id"] not in stored]
    if missing:
        client.create_examples(
            dataset_id=remote.id,
            examples=[
                ExampleCreate(inputs=ex.inputs, reference_outputs=ex.outputs, metadata=ex.metadata)
                for ex in missing
            ],
        )
        stored = {
            (ex.metadata or {}).get("item_id"): ex
            for ex in client.list_examples(dataset_id=remote.id)
        }
    return [stored[ex.metadata["item_id"]] for ex in local]


def _untraced(func: Callable[..., Any]) -> Callable[..., Any]:
    """The target or evaluator with tracing off (offline runs); same signature, so
    LangSmith still passes it the arguments it names."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with langsmith.tracing_context(enabled=False):
                return await func(*args, **kwargs)

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with langsmith.tracing_context(enabled=False):
            return func(*args, **kwargs)

    return wrapper


def make_target(pipelines: dict[str, Pipeline]) -> Callable[..., Any]:
    """The evaluation target: every pipeline on the item, one after the other."""

    async def target(inputs: dict[str, Any]) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        for name, pipeline in pipelines.items():
            outputs[name] = (await pipeline(inputs)).model_dump(mode="json")
        return outputs

    return target


async def run_experiment(
    experiment: Experiment,
    dataset: Dataset,
    setup: EvalSetup,
    out_dir: Path,
    *,
    upload: bool | None = None,
    progress: Progress | None = print,
    command: str | None = None,
) -> RunSummary:
    """Run `experiment` on `dataset`, write `<out_dir>/results.jsonl` and `summary.json`."""
    upload = upload_enabled() if upload is None else upload
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    judge = setup.make_eval_judge()
    target = make_target(experiment.pipelines(setup))
    evaluators = experiment.evaluators(setup, dataset, judge)
    if upload:
        client = langsmith.Client()
        data: Sequence[Example] = await asyncio.to_thread(sync_dataset, client, dataset)
    else:
        client = offline_client()
        data = dataset.examples()
        target = _untraced(target)
        evaluators = [_untraced(e) for e in evaluators]
    started, clock = datetime.datetime.now(datetime.UTC), time.monotonic()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*upload_results.*")
        results = await aevaluate(
            target,
            data=data,
            evaluators=evaluators,
            experiment_prefix=f"{experiment.name}-{dataset.name}",
            metadata={"experiment": experiment.name, "dataset": dataset.name, **setup.settings()},
            max_concurrency=setup.concurrency,
            client=client,
            upload_results=upload,
            blocking=False,
        )
        rows = await _collect(results, experiment.name, dataset, out_dir / RESULTS_FILE, progress)
    metrics, headline = experiment.metrics(rows, dataset)
    summary = summarize(
        rows,
        dataset=dataset,
        experiment=experiment.name,
        started_at=started.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 2),
        uploaded=upload,
        experiment_name=results.experiment_name if upload else None,
        experiment_url=_experiment_url(results) if upload else None,
        command=command,
        settings=setup.settings(),
        metrics=metrics,
        headline=headline,
    )
    if judge.usage.calls:
        summary.usage[f"{judge.model.name} (evaluation judge)"] = _usage_dict(judge.usage)
    (out_dir / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", "utf-8")
    return summary


async def _collect(
    results: Any, experiment: str, dataset: Dataset, path: Path, progress: Progress | None
) -> list[ResultRow]:
    """Rows as items finish, each written (and flushed) at once so a crash keeps them."""
    rows: list[ResultRow] = []
    with path.open("w", encoding="utf-8") as handle:
        async for result in results:
            row = _row(experiment, dataset.name, result)
            rows.append(row)
            handle.write(row.model_dump_json() + "\n")
            handle.flush()
            if progress is not None:
                progress(progress_line(experiment, dataset, len(rows), row))
    return rows


def _experiment_url(results: Any) -> str | None:
    try:
        return results.url
    except (AttributeError, ValueError):  # no experiment project (nothing uploaded)
        return None


def _row(experiment: str, dataset: str, result: Any) -> ResultRow:
    run, example = result["run"], result["example"]
    seconds = None
    if run is not None and run.end_time is not None and run.start_time is not None:
        seconds = round((run.end_time - run.start_time).total_seconds(), 2)
    feedback = [
        FeedbackRecord(
            key=r.key,
            score=None if r.score is None else float(r.score),
            value=r.value,
            comment=r.comment,
            metadata=r.metadata,
        )
        for r in result["evaluation_results"]["results"]
    ]
    return ResultRow(
        experiment=experiment,
        dataset=dataset,
        item_id=str((example.metadata or {}).get("item_id") or example.inputs.get("id")),
        example_id=str(example.id),
        inputs=dict(example.inputs),
        reference_outputs=dict(example.outputs or {}),
        outputs=None if run is None else run.outputs,
        error=None if run is None else run.error,
        seconds=seconds,
        feedback=feedback,
    )


def progress_line(experiment: str, dataset: Dataset, done: int, row: ResultRow) -> str:
    """One line per finished item: its chain, its scores, its time."""
    head = f"[{experiment}/{dataset.name} {done}/{len(dataset.items)}] {row.item_id}:"
    if row.error:
        return f"{head} ERROR {row.error.splitlines()[-1][:200]}"
    state = row.state()
    parts = []
    if state is not None:
        n = len(state.chain)
        parts.append(f"{n} answer{'' if n == 1 else 's'} ({state.stop_reason})")
        if state.stop_reason == "model_error" and state.failures:
            parts.append(f"{state.failures[-1].stage} failed: {state.failures[-1].reason[:160]}")
    scores = row.scores()
    shown = [f"{k}={v:g}" for k, v in list(scores.items())[:6]]
    if len(scores) > len(shown):
        shown.append(f"+{len(scores) - len(shown)} more")
    parts.append(" ".join(shown) or "no scores")
    if row.seconds is not None:
        parts.append(f"{row.seconds:.1f}s")
    return f"{head} " + " | ".join(parts)


def summarize(
    rows: list[ResultRow], *, dataset: Dataset, experiment: str, **run: Any
) -> RunSummary:
    """The metrics every experiment shares (feedback means, Refine-n-Judge chain lengths,
    stop reasons, judge health, token usage), with `run`'s other `RunSummary` fields."""
    by_key: dict[str, list[float]] = {}
    for row in rows:
        for key, score in row.scores().items():
            by_key.setdefault(key, []).append(score)
    feedback = {
        key: KeyStat(mean=round(sum(v) / len(v), 4), n=len(v)) for key, v in sorted(by_key.items())
    }
    states: list[ChainState] = [s for row in rows if (s := row.state()) is not None]
    usage: dict[str, TokenUsage] = {}
    for row in rows:
        for raw in (row.outputs or {}).values():
            for model, nodes in ChainState.model_validate(raw).usage.items():
                for node_usage in nodes.values():
                    usage[model] = usage.get(model, TokenUsage()) + node_usage
    return RunSummary(
        experiment=experiment,
        dataset=dataset.name,
        kind=dataset.kind,
        items=len(rows),
        errors=sum(row.error is not None or not row.outputs for row in rows),
        model_errors=sum(
            ChainState.model_validate(raw).stop_reason == "model_error"
            for row in rows
            for raw in (row.outputs or {}).values()
        ),
        feedback=feedback,
        chain_lengths=dict(sorted(Counter(len(s.chain) for s in states).items())),
        stop_reasons=dict(Counter(str(s.stop_reason) for s in states).most_common()),
        judge_health=judge_health(states).summary(),
        usage={model: _usage_dict(u) for model, u in sorted(usage.items())},
        **run,
    )


def _usage_dict(usage: TokenUsage) -> dict[str, int]:
    return {
        "calls": usage.calls,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }
