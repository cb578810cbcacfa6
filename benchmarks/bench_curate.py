"""Benchmark `refine-n-judge curate` against a fake OpenAI-compatible server.

    .venv/bin/python benchmarks/bench_curate.py [--items 2000] [--big-items 20000]
        [--concurrency 64] [--latency 0.05] [--skip-big]

What runs, all against one fake server process (fixed latency per reply; its script grows
every chain to v1 and rejects v2, so each item makes 2 iterations of feedback -> refine ->
two concurrent judge calls = 8 calls):

1. `curate` as a real CLI process on `--items` items at `--concurrency`.
2. The floor: the same call sequence (same number of calls, same dependency structure per
   item) made by a minimal asyncio loop with the bare `openai.AsyncOpenAI` client, in its
   own process, on the same server in the same run.
3. `curate` on `--big-items` items, to show its peak RSS stays flat as the input grows.

Each process is measured by the OS (`wait4`): wall time, CPU time, peak RSS. It is not a
test and is not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openai import AsyncOpenAI

ROOT = Path(__file__).resolve().parents[1]
RESPONDER = "benchmarks.bench_curate:responder"
STOP_AT = 1
CALLS_PER_ITEM = 8


def responder():  # type: ignore[no-untyped-def]
    """The fake server's script (loaded by name in the server process)."""
    from refine_n_judge.testing.scripts import versioned_responder

    return versioned_responder(stop_at=STOP_AT)


# --------------------------------------------------------------------------- measurement


@dataclass
class Measured:
    """One process's figures."""

    name: str
    items: int
    calls: int
    wall: float
    cpu: float
    peak_rss_mb: float
    run_wall: float | None = None

    @property
    def calls_per_second(self) -> float:
        return self.calls / (self.run_wall or self.wall)

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu / self.calls if self.calls else float("nan")


def run_measured(command: list[str], *, ok: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """Run `command`; its wall seconds, CPU seconds (user+sys) and peak RSS in MB."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in ok:
        raise RuntimeError(f"{command[:4]} exited with {process.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def start_server(latency: float, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / "port"
    server = subprocess.Popen(
        [sys.executable, "-m", "refine_n_judge.testing.fake_openai", "--responder", RESPONDER,
         "--latency", str(latency), "--port-file", str(port_file)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the fake server did not start")
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{int(port_file.read_text())}/v1"


def write_input(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": f"b{i}", "question": f"What is {i}?", "answer": "v0"}))
            handle.write("\n")
    return path


def bench_curate(name: str, url: str, n: int, concurrency: int, workdir: Path) -> Measured:
    data = write_input(workdir / f"{name}.jsonl", n)
    out = workdir / f"{name}-out"
    command = [sys.executable, "-m", "refine_n_judge.cli", "curate", str(data), "--out", str(out),
               "--refiner", "fake", "--base-url", url, "--concurrency", str(concurrency),
               "--quiet"]  # fmt: skip
    wall, cpu, rss = run_measured(command)
    report = json.loads((out / "run.json").read_text())
    if report["counts"]["succeeded"] != n:
        raise RuntimeError(f"{name}: {report['counts']} (expected {n} successes)")
    return Measured(
        name=name,
        items=n,
        calls=report["total_calls"],
        wall=wall,
        cpu=cpu,
        peak_rss_mb=rss,
        run_wall=report["invocations"][-1]["wall_seconds"],
    )


def bench_floor(url: str, n: int, concurrency: int, workdir: Path) -> Measured:
    stats = workdir / "floor.json"
    command = [sys.executable, __file__, "floor", "--url", url, "--items", str(n),
               "--concurrency", str(concurrency), "--stats", str(stats)]  # fmt: skip
    wall, cpu, rss = run_measured(command)
    figures = json.loads(stats.read_text())
    return Measured(
        name="floor (bare AsyncOpenAI)",
        items=n,
        calls=figures["calls"],
        wall=wall,
        cpu=cpu,
        peak_rss_mb=rss,
        run_wall=figures["run_wall"],
    )


# --------------------------------------------------------------------------- the floor


FEEDBACK = "Give feedback for improving the answer.\n<question>{q}</question>\n<answer>{a}</answer>"
REFINE = (
    "Refine the answer using the feedback.\n<question>{q}</question>\n<answer>{a}</answer>\n"
    "<feedback>{f}</feedback>"
)
JUDGE = (
    "You are evaluating two answers.\n<question>{q}</question>\n<answer_A>{x}</answer_A>\n"
    "<answer_B>{y}</answer_B>"
)


async def floor_item(client, question: str, answer: str) -> int:  # type: ignore[no-untyped-def]
    """One item's calls, in the graph's order: per iteration feedback, refine, then the two
    position-swapped judge calls at once; stop when the refinement does not win both."""
    calls = 0

    async def ask(prompt: str, json_mode: bool) -> str:
        nonlocal calls
        calls += 1
        extra = {"response_format": {"type": "json_object"}} if json_mode else {}
        reply = await client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": prompt}], **extra
        )
        return reply.choices[0].message.content or ""

    current = answer
    while True:
        feedback = await ask(FEEDBACK.format(q=question, a=current), False)
        refined = json.loads(await ask(REFINE.format(q=question, a=current, f=feedback), True))
        candidate = refined["answer"]
        first, second = await asyncio.gather(
            ask(JUDGE.format(q=question, x=candidate, y=current), True),
            ask(JUDGE.format(q=question, x=current, y=candidate), True),
        )
        wins = json.loads(first)["winner"] == "A" and json.loads(second)["winner"] == "B"
        if not wins:
            return calls
        current = candidate


async def floor_main(url: str, n: int, concurrency: int) -> dict[str, float]:
    client = AsyncOpenAI(base_url=url, api_key="not-needed", max_retries=3)
    queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=2 * concurrency)
    total = 0

    async def worker() -> None:
        nonlocal total
        while (i := await queue.get()) is not None:
            calls = await floor_item(client, f"What is {i}?", "v0")
            total += calls  # not `total += await ...`: that reads total before awaiting

    started = time.perf_counter()
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for i in range(n):
        await queue.put(i)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    await client.close()
    return {"calls": total, "run_wall": time.perf_counter() - started}


# --------------------------------------------------------------------------- report


def table(rows: list[Measured]) -> str:
    header = f"{'run':<28}{'items':>7}{'calls':>8}{'wall s':>9}{'run s':>8}{'calls/s':>9}" \
             f"{'CPU ms/call':>13}{'peak RSS MB':>13}"  # fmt: skip
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.name:<28}{r.items:>7}{r.calls:>8}{r.wall:>9.1f}{(r.run_wall or r.wall):>8.1f}"
            f"{r.calls_per_second:>9.0f}{r.cpu_ms_per_call:>13.2f}{r.peak_rss_mb:>13.0f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    floor = sub.add_parser("floor", help="(internal) the bare-client loop")
    floor.add_argument("--url", required=True)
    floor.add_argument("--items", type=int, required=True)
    floor.add_argument("--concurrency", type=int, required=True)
    floor.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--big-items", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args(argv)

    if args.mode == "floor":
        figures = asyncio.run(floor_main(args.url, args.items, args.concurrency))
        args.stats.write_text(json.dumps(figures))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-curate-") as tmp:
        workdir = Path(tmp)
        server, url = start_server(args.latency, workdir)
        try:
            empty = bench_startup(url, workdir)
            rows = [
                bench_curate("curate", url, args.items, args.concurrency, workdir),
                bench_floor(url, args.items, args.concurrency, workdir),
            ]
            if not args.skip_big:
                rows.append(
                    bench_curate("curate (big)", url, args.big_items, args.concurrency, workdir)
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    # Each item waits for 2 iterations x 3 sequential round trips; `concurrency` at once.
    ideal = CALLS_PER_ITEM * args.concurrency / (6 * args.latency)
    print(
        f"\nfake server latency {args.latency * 1000:.0f} ms per reply, concurrency "
        f"{args.concurrency}, {CALLS_PER_ITEM} calls per item (2 iterations), 2 CPU cores"
    )
    print(table(rows))
    curate, floor_row = rows[0], rows[1]
    print(f"\ncurate process start-up (empty input): {empty[0]:.1f} s wall, {empty[1]:.1f} s CPU")
    print(f"latency-bound ideal: {ideal:.0f} calls/s")
    print("ratios curate / floor:")
    print(f"  run wall time      {(curate.run_wall or 0) / (floor_row.run_wall or 1):6.2f}x")
    print(f"  calls per second   {curate.calls_per_second / floor_row.calls_per_second:6.2f}x")
    print(f"  CPU per call       {curate.cpu_ms_per_call / floor_row.cpu_ms_per_call:6.2f}x")
    net = 1000 * (curate.cpu - empty[1]) / curate.calls
    print(f"  CPU per call, net of start-up: {net:.2f} ms (floor {floor_row.cpu_ms_per_call:.2f})")
    if len(rows) > 2:
        big = rows[2]
        print(
            f"peak RSS {big.items} vs {curate.items} items: {big.peak_rss_mb:.0f} MB vs "
            f"{curate.peak_rss_mb:.0f} MB ({big.peak_rss_mb / curate.peak_rss_mb:.2f}x)"
        )
    return 0


def bench_startup(url: str, workdir: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a curate process that has nothing to do."""
    data = workdir / "empty.jsonl"
    data.write_text("")
    out = workdir / "empty-out"
    command = [sys.executable, "-m", "refine_n_judge.cli", "curate", str(data), "--out", str(out),
               "--refiner", "fake", "--base-url", url, "--quiet"]  # fmt: skip
    wall, cpu, _ = run_measured(command)
    return wall, cpu


if __name__ == "__main__":
    sys.exit(main())
