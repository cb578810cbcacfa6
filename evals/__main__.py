"""Evaluation runs of Refine-n-Judge: the paper's analyses, with LangSmith.

    python -m evals noisy          [options]   # paper 5.3, table 3
    python -m evals consistency    [options]   # paper 5.4
    python -m evals judge-ablation [options]   # paper 5.2, figures 3 and 5
    python -m evals baselines      [options]   # paper 5.1, table 2
    python -m evals judge-check --dataset PAIRS  # the judge vs people's labels
    python -m evals report DIR                 # results.md and PNG plots for DIR

Each experiment runs on every `--dataset` (default: the three shipped noisy sets) and writes
`<out>/<experiment>/<dataset>/{results.jsonl,summary.json}`; offline unless a LangSmith API
key is set (then it also uploads a LangSmith experiment). Models: `--refiner`/`--judge`
by name, with `--base-url` for an OpenAI-compatible endpoint; no model flag means the
default endpoint (REFINE_N_JUDGE_* variables, OPENAI_API_KEY, else the embedded model).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from endpoints.settings import stop_embedded_server
from evals.datasets import SHIPPED, Dataset, DatasetError, load_dataset
from evals.experiments import EXPERIMENTS
from evals.records import RunSummary
from evals.report import write_report
from evals.runner import run_experiment
from evals.setup import EvalSetup, ExperimentOptions
from nodes.context import Context
from nodes.models import ModelConfigError, build_chat_model

DEFAULT_OUT = Path("evals/results")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evals", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, experiment in EXPERIMENTS.items():
        p = sub.add_parser(name, help=experiment.title, description=experiment.title)
        p.add_argument(
            "--dataset",
            action="append",
            help=f"{', '.join(SHIPPED)} or a JSONL path; repeatable (default: all shipped)",
        )
        p.add_argument("--limit", type=int, help="first N items of each dataset")
        p.add_argument("--refiner", help="refiner model name (default: the default endpoint)")
        p.add_argument("--judge", action="append", help="pipeline judge model; repeatable")
        p.add_argument("--alternate-refiner", help="alternate refiner model name")
        p.add_argument(
            "--eval-judge",
            help="evaluation judge model (default: the pipeline's judge; pick an independent one)",
        )
        p.add_argument(
            "--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
        )
        p.add_argument("--max-iterations", type=int, help="Refine-n-Judge's cap (default 10)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="FIELD=VALUE",
            help="any other Context field, e.g. --set judge_scoring=pairwise",
        )
        p.add_argument("--concurrency", type=int, default=1, help="items run at once (default 1)")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
        p.add_argument("--no-upload", action="store_true", help="stay offline even with a key")
        p.add_argument("--quiet", action="store_true", help="no per-item progress lines")
        p.set_defaults(**ExperimentOptions().model_dump())
        if name == "judge-ablation":
            p.add_argument("--budget", type=int, help="iterations of both pipelines (default 3)")
            p.add_argument("--matrix", action="store_true", help="also figure 5's matrices")
        elif name == "consistency":
            p.add_argument("--repeats", type=int, help="re-judgments per pair (default 10)")
            p.add_argument("--seed", type=int, help="seed of the random positions (default 0)")
        elif name == "baselines":
            p.add_argument("--n", type=int, help="samples for best-of-N (default 10)")
    report = sub.add_parser("report", help="results.md and PNG plots for a results directory")
    report.add_argument("results_dir", type=Path)
    return parser


def _context(args: argparse.Namespace) -> Context:
    fields: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set wants FIELD=VALUE, got {item!r}")
        try:
            fields[key.strip()] = json.loads(raw)
        except ValueError:
            fields[key.strip()] = raw
    named = {
        "refiner": args.refiner,
        "judges": args.judge,
        "alternate_refiner": args.alternate_refiner,
        "base_url": args.base_url,
        "max_iterations": args.max_iterations,
    }
    fields.update({k: v for k, v in named.items() if v is not None})
    return Context(**fields)


async def _run(args: argparse.Namespace, argv: Sequence[str]) -> list[RunSummary]:
    experiment = EXPERIMENTS[args.command]
    setup = EvalSetup(
        context=_context(args),
        eval_judge_name=args.eval_judge,
        concurrency=max(args.concurrency, 1),
        options=ExperimentOptions(
            budget=args.budget, repeats=args.repeats, n=args.n, seed=args.seed, matrix=args.matrix
        ),
    )
    if experiment.load_dataset is not None and not args.dataset:
        raise DatasetError(f"{experiment.name} needs --dataset (a file of labelled pairs)")
    load = experiment.load_dataset or load_dataset
    datasets = [load(d, limit=args.limit) for d in args.dataset or list(SHIPPED)]
    _check_models(setup)
    if _judged(experiment.name, datasets) and not setup.independent_eval_judge:
        print(
            "note: the evaluation judge is the pipeline's own judge; pass --eval-judge for an "
            "independent one",
            file=sys.stderr,
        )
    command = "python -m evals " + shlex.join(argv)
    summaries = []
    for dataset in datasets:
        summary = await run_experiment(
            experiment,
            dataset,
            setup,
            args.out / experiment.name / dataset.name,
            upload=False if args.no_upload else None,
            progress=None if args.quiet else _print,
            command=command,
        )
        summaries.append(summary)
        print(_describe(summary), flush=True)
    return summaries


def _check_models(setup: EvalSetup) -> None:
    """Fail before the first item on a model name that cannot be resolved (building a
    client sends nothing; the default endpoint, `None`, is left to start on first use)."""
    ctx = setup.context
    names = [ctx.refiner, ctx.alternate_refiner, *ctx.judges, setup.eval_judge_name]
    for name in names:
        if name is not None:
            build_chat_model(name, base_url=ctx.base_url)


def _judged(experiment: str, datasets: list[Dataset]) -> bool:
    """Whether an evaluation judge other than the pipeline's should grade this run."""
    if experiment in ("consistency", "judge-check"):  # no evaluation judge: the pipeline's
        return False
    if experiment == "noisy":
        return any(
            d.kind == "misconception" or (d.kind == "generic" and any(i.reference for i in d.items))
            for d in datasets
        )
    return True


def _print(line: str) -> None:
    print(line, flush=True)


def _describe(summary: RunSummary) -> str:
    text = (
        f"{summary.experiment}/{summary.dataset}: {summary.items} items, {summary.errors} errors, "
        f"{summary.model_errors} pipeline runs ended on a model error"
    )
    if summary.headline is not None:
        h = summary.headline
        text += f"; {h.metric}: {h.before} -> {h.after}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "report":
        try:
            report = write_report(args.results_dir)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {report.markdown}")
        for plot in report.plots:
            print(f"wrote {plot}")
        return 0
    try:
        asyncio.run(_run(args, argv))
    except (ModelConfigError, DatasetError, ValidationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        stop_embedded_server()
    print(f"report: python -m evals report {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
