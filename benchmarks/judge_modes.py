"""Judge modes on a real model: how often each prefers the better answer of a known pair.

Pairs: the four kinds measured when the project started (wrong vs right fact, wrong vs
right acronym, padded vs concise, wrong vs right arithmetic) plus the shipped example
dataset (its flawed initial answer vs its reference answer). For each pair:

- pairwise: the paper's judge in both orders; does it pick the better answer in both
  (a win), is it swap-consistent, and how often does the first position win;
- pointwise: each answer's expected 1-9 score; is the better one higher, and by more than
  the margin the loop needs.

Runs on the embedded model by default (started here), or `--base-url URL --model NAME`.
Prints a Markdown table; paste it into BENCHMARKS.md.

    .venv/bin/python benchmarks/judge_modes.py [--base-url URL --model NAME] [--margin 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from contextlib import ExitStack
from pathlib import Path

from endpoints.embedded import MODEL_ALIAS, EmbeddedServer
from nodes.context import Context
from nodes.judge_pairwise import judge_pairwise
from nodes.judge_pointwise import judge_pointwise, pointwise_margin_for
from nodes.models import build_chat_model
from nodes.state import Answer, ChainState

ROOT = Path(__file__).resolve().parents[1]

KNOWN_PAIRS = [
    (
        "fact",
        "What is the capital of Australia?",
        "The capital of Australia is Sydney.",
        "The capital of Australia is Canberra.",
    ),
    (
        "acronym",
        "What does the acronym NASA stand for?",
        "NASA stands for North American Space Agency.",
        "NASA stands for National Aeronautics and Space Administration.",
    ),
    (
        "verbose",
        "How many legs does a spider have?",
        "That is a great question, and many people wonder about it. Spiders, which are "
        "arachnids and not insects, as it happens, generally and in nearly all cases that one "
        "would normally encounter, have a total number of legs that comes to eight legs.",
        "A spider has eight legs.",
    ),
    ("arithmetic", "What is 17 * 3?", "17 * 3 = 41.", "17 * 3 = 51."),
]


def example_pairs() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in (ROOT / "examples" / "noisy_answers.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item.get("answer") and item.get("reference"):
            rows.append(
                (f"example:{item['id']}", item["question"], item["answer"], item["reference"])
            )
    return rows


async def measure(
    model_name: str, base_url: str, margin: float, only: str | None = None
) -> list[dict[str, object]]:
    judge = build_chat_model(model_name, base_url=base_url, temperature=0.0, max_tokens=512)
    rows = []
    for kind, question, worse, better in KNOWN_PAIRS + example_pairs():
        if only and not any(part in kind for part in only.split(",")):
            continue
        state = ChainState(question=question, iteration=1)
        previous = Answer(text=worse, iteration=0, model="input", role="initial")
        candidate = Answer(text=better, iteration=1, model="reference", role="refiner")
        row: dict[str, object] = {"pair": kind}
        for scoring in ("pairwise", "pointwise"):
            ctx = Context(judge_scoring=scoring, pointwise_margin=margin, max_tokens=512)
            judged = judge_pairwise if scoring == "pairwise" else judge_pointwise
            start = time.monotonic()
            verdict, calls, _ = await judged(judge, state, ctx, previous, candidate)
            row[f"{scoring}_seconds"] = round(time.monotonic() - start, 1)
            row[f"{scoring}_outcome"] = verdict.outcome
            if scoring == "pairwise":
                row["pairwise_calls"] = [c.winner for c in calls]
                row["first_position_wins"] = sum(
                    (c.winner == "refined") == (c.position == "refined_first")
                    for c in calls
                    if c.winner in ("refined", "previous")
                )
                row["decisive_calls"] = sum(c.winner in ("refined", "previous") for c in calls)
                row["p_better"] = [c.probability_refined for c in calls]
            else:
                call = calls[0]
                row["score_better"] = call.total_refined
                row["score_worse"] = call.total_previous
                row["score_source"] = call.score_source
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, object]], margin: float) -> str:
    lines = [
        "| pair | pairwise calls (better first, better second) | pairwise outcome | P(better) | "
        "pointwise better / worse | pointwise outcome |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pair']} | {', '.join(r['pairwise_calls'])} | {r['pairwise_outcome']} | "
            f"{', '.join('-' if p is None else f'{p:.2f}' for p in r['p_better'])} | "
            f"{r['score_better']:.2f} / {r['score_worse']:.2f} | {r['pointwise_outcome']} |"
        )
    n = len(rows)
    pair_wins = sum(r["pairwise_outcome"] == "refined" for r in rows)
    consistent = sum(
        len(set(r["pairwise_calls"])) == 1 and "error" not in r["pairwise_calls"] for r in rows
    )
    decisive = sum(r["decisive_calls"] for r in rows)
    first = sum(r["first_position_wins"] for r in rows)
    ordered = sum(r["score_better"] > r["score_worse"] for r in rows)
    point_wins = sum(r["pointwise_outcome"] == "refined" for r in rows)
    lines += [
        "",
        f"- pairwise: better answer accepted (wins both orders) in {pair_wins}/{n} pairs; "
        f"swap-consistent in {consistent}/{n}; "
        f"first position won {first}/{decisive} decisive calls",
        f"- pointwise: better answer scored higher in {ordered}/{n} pairs; accepted "
        f"(margin > {margin}) in {point_wins}/{n}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--margin", type=float, help="default: the judge model's calibrated margin")
    parser.add_argument(
        "--only", help="comma-separated name parts: measure only the pairs that match one"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.base_url:
            base_url, model = args.base_url, args.model
        else:
            server = stack.enter_context(EmbeddedServer())
            base_url, model = server.base_url, MODEL_ALIAS
        margin = pointwise_margin_for(model, Context(pointwise_margin=args.margin))
        rows = asyncio.run(measure(model, base_url, margin, args.only))
    print()
    print(table(rows, margin))


if __name__ == "__main__":
    main()
