"""Benchmark `refine-n-judge view` on a large output folder.

    .venv/bin/python benchmarks/bench_view.py [--items 100000] [--answer-words 150]

Writes a synthetic folder (chains.jsonl, sft.jsonl, dpo.jsonl) of `--items` items shaped
like curate's rows (0-3 accepted refinements, two judge calls per round, every 7th item won
by the alternate refiner), then measures, in one process, through Starlette's test client:

1. the first request (it indexes one bounded step and answers), then the whole index
   (every row of the four files parsed once), against the floor: reading the files and
   `orjson.loads` of every line, with nothing kept;
2. list pages (first, last, filtered, text search) and an item page, median of repeats,
   against the naive page: reading and parsing the whole chains.jsonl for one page;
3. the request after 1,000 more rows were appended (the index reads only those);
4. peak RSS after the index is built, against the same process before it.

It is not a test and is not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.testclient import TestClient

from nodes.state import ChainState
from refine_n_judge.view.app import create_app

WORDS = ["the", "answer", "explains", "each", "step", "with", "care", "and", "an", "example"]


def text(n: int, words: int, tag: str) -> str:
    return f"{tag} {n}: " + " ".join(WORDS[(n + i) % len(WORDS)] for i in range(words))


def row(n: int, words: int) -> dict[str, Any]:
    """One chains.jsonl row, shaped as ChainState.model_dump() gives it."""
    length = n % 4
    chain = [{"text": text(n, words, "v0"), "iteration": 0, "model": "input",
              "role": "initial", "explanation": None, "feedback": None}]  # fmt: skip
    judgments, decisions = [], []
    for i in range(1, length + 1):
        role = "alternate_refiner" if n % 7 == 0 and i == length else "refiner"
        feedback = text(n, 30, "fb")
        chain.append({"text": text(n + i, words, f"v{i}"), "iteration": i, "model": "m",
                      "role": role, "explanation": "Clearer.", "feedback": feedback})  # fmt: skip
        for position in ("refined_first", "refined_second"):
            judgments.append({
                "iteration": i, "judge_model": "m", "mode": "pairwise", "position": position,
                "candidate_role": role, "scores_refined": {"accuracy": 8.0},
                "scores_previous": {"accuracy": 6.0}, "total_refined": 8.0,
                "total_previous": 6.0, "winner": "refined", "justification": text(n, 40, "j"),
                "confidence": 0.9, "probability_refined": None, "score_source": None,
                "raw": None, "error": None, "attempts": 1,
            })  # fmt: skip
        decisions.append({
            "iteration": i, "candidate_role": role, "candidate_model": "m",
            "verdicts": [{"judge_model": "m", "mode": "pairwise", "outcome": "refined",
                          "confidence": 0.9}],
            "answered": 1, "votes_for_refined": 1, "quorum": 1, "accepted": True,
            "outcome": "refined", "confidence": 0.9,
        })  # fmt: skip
    return {
        "question": f"Question {n}: " + text(n, 25, "q"), "answer": chain[0]["text"],
        "reference": None, "id": f"item-{n:07d}", "chain": chain, "judgments": judgments,
        "decisions": decisions, "failures": [], "usage": {}, "feedback": None,
        "candidate": None, "last_rejected": None, "iteration": length,
        "stop_reason": "max_iterations" if n % 2 else "rejected",
    }  # fmt: skip


def write_folder(out: Path, items: int, words: int, start: int = 0) -> None:
    ChainState.model_validate(row(start + 3, words))  # the synthetic shape is the real one
    with open(out / "chains.jsonl", "a") as chains, open(out / "sft.jsonl", "a") as sft, \
            open(out / "dpo.jsonl", "a") as dpo:  # fmt: skip
        for n in range(start, start + items):
            r = row(n, words)
            chains.write(json.dumps(r) + "\n")
            final = r["chain"][-1]["text"]
            sft.write(json.dumps({"id": r["id"], "prompt": r["question"], "completion": final})
                      + "\n")  # fmt: skip
            for before, after in zip(r["chain"], r["chain"][1:], strict=False):
                dpo.write(json.dumps({"id": r["id"], "prompt": r["question"],
                                      "chosen": after["text"], "rejected": before["text"],
                                      "chosen_iteration": after["iteration"],
                                      "rejected_iteration": before["iteration"],
                                      "pair": "accepted_step", "outcome": "refined"})
                          + "\n")  # fmt: skip


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats)) * 1000


def floor_parse(path: Path) -> None:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            orjson.loads(line)


def naive_page(path: Path) -> list[dict[str, Any]]:
    """What a viewer without an index does for one page: parse everything, keep one page."""
    with open(path, "rb") as handle:
        rows = [orjson.loads(line) for line in handle]
    return rows[-50:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--answer-words", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-view-") as tmp:
        out = Path(tmp)
        write_folder(out, args.items, args.answer_words)
        size_mb = (out / "chains.jsonl").stat().st_size / 1e6
        print(f"folder: {args.items:,} items, chains.jsonl {size_mb:,.0f} MB "
              f"({size_mb * 1e6 / args.items / 1e3:.1f} KB per row)")  # fmt: skip

        rss_before = peak_rss_mb()
        files = [
            out / name for name in ("chains.jsonl", "failures.jsonl", "sft.jsonl", "dpo.jsonl")
        ]
        floor_s = timed(lambda: [floor_parse(path) for path in files])
        app = create_app(out)
        client = TestClient(app, base_url="http://127.0.0.1")
        first_s = timed(lambda: client.get("/items").raise_for_status())
        build_s = timed(app.state.index.catch_up) + first_s
        rss_after = peak_rss_mb()
        total_mb = sum(path.stat().st_size for path in files if path.exists()) / 1e6
        print(f"first request (one bounded index step): {first_s * 1000:.0f} ms")
        rate = total_mb / build_s
        print(f"whole index: {build_s:.2f} s ({args.items / build_s:,.0f} items/s, "
              f"{rate:,.0f} MB/s over the four files' {total_mb:,.0f} MB)")  # fmt: skip
        print(f"floor (read + orjson.loads every line of the four files): {floor_s:.2f} s "
              f"-> index / floor {build_s / floor_s:.2f}x")  # fmt: skip
        print(f"peak RSS: {rss_before:,.0f} MB before the index, {rss_after:,.0f} MB after "
              f"(+{rss_after - rss_before:,.0f} MB; the files are {total_mb:,.0f} MB)")  # fmt: skip

        last = -(-args.items // 50)
        pages = {
            "run page": "/",
            "first page": "/items",
            "last page": f"/items?page={last}",
            "filter alt=1, last page": "/items?alt=1&page=100000",
            "filter stop+length": "/items?stop=rejected&length=2",
            "text search": f"/items?q=question+{args.items - 1}%3A",
            "item page (last item)": f"/item?id=item-{args.items - 1:07d}",
        }
        print(f"\n{'request':<28}{'median ms':>10}")
        for name, url in pages.items():
            client.get(url).raise_for_status()
            print(f"{name:<28}{median_ms(lambda u=url: client.get(u), args.repeats):>10.1f}")
        naive_ms = timed(lambda: naive_page(out / "chains.jsonl")) * 1000
        indexed_ms = median_ms(lambda: client.get(f"/items?page={last}"), args.repeats)
        print(f"{'naive last page (parse all)':<28}{naive_ms:>10.1f}")
        print(f"naive / indexed last page: {naive_ms / indexed_ms:,.0f}x")

        write_folder(out, 1000, args.answer_words, start=args.items)
        grow_ms = timed(lambda: client.get("/items").raise_for_status()) * 1000
        print(f"\nfirst request after 1,000 appended rows: {grow_ms:.0f} ms")


if __name__ == "__main__":
    main()
