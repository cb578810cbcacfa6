"""Benchmark `curate --engine ray` against the single-process engine on one machine.

    .venv/bin/python benchmarks/bench_ray.py [--items 1000] [--in-flight 16] [--latency 0.05]
    .venv/bin/python benchmarks/bench_ray.py --two-nodes [--items 1000] ...

One fake OpenAI-compatible server process (fixed latency per reply; the script of
`bench_curate.py`: 8 calls per item, 6 of them one after another). Three `curate` CLI
processes on the same input and the same total number of items in flight:

- local: `--concurrency IN_FLIGHT`
- ray, 1 actor: `--engine ray --actors 1 --in-flight-per-actor IN_FLIGHT`
- ray, 2 actors: `--engine ray --actors 2 --in-flight-per-actor IN_FLIGHT/2`

Wall time is the whole process (a private local Ray's start and stop included). One
machine cannot show Ray's scaling: with the same in-flight count the model server sets the
pace; what this shows is Ray's fixed cost and that actors keep the same throughput.

`--two-nodes`: a Ray cluster of two nodes on 127.0.0.1 (`ray.cluster_utils.Cluster`, 3
logical CPUs each, token authentication on) started once, then the local engine and
`--engine ray --ray-address HEAD --actors 2` (one actor per node, IN_FLIGHT/2 each) on the
same fake endpoint; the cluster's start is not in the Ray figure (a cluster is already up
when a user joins it). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_curate import start_server  # a sibling script: run as `python benchmarks/bench_ray.py`

ROOT = Path(__file__).resolve().parents[1]


def run(
    name: str,
    data: Path,
    out: Path,
    url: str,
    flags: list[str],
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    """One curate process; its figures."""
    command = [sys.executable, "-m", "refine_n_judge.cli", "curate", str(data), "--out",
               str(out), "--refiner", "fake", "--base-url", url, "--quiet", *flags]  # fmt: skip
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=ROOT, stderr=subprocess.DEVNULL, check=False, env=env or None
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{name} exited with {completed.returncode}")
    report = json.loads((out / "run.json").read_text())
    return {"name": name, "wall": wall, "items": report["counts"]["succeeded"]}


@contextmanager
def two_nodes() -> Iterator[tuple[str, dict[str, str]]]:
    """A two-node Ray cluster on 127.0.0.1; its address and the environment a driver needs."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
    (temp / "ray").mkdir()
    env = {
        "RAY_TMPDIR": str(temp),
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every socket on 127.0.0.1
    }
    os.environ.update(env)  # before Ray is imported: it reads these then
    from ray.cluster_utils import Cluster  # the ray extra

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 3, "temp_dir": str(temp / "ray"), "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=3)
        cluster.wait_for_nodes()
        yield cluster.address, {**os.environ, "PYTHONPATH": str(ROOT)}
    finally:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def main() -> int:
    """Run the configurations and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--two-nodes", action="store_true", help="local vs a 2-node cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        work = Path(tmp)
        data = work / "in.jsonl"
        data.write_text(
            "".join(
                json.dumps({"id": f"item-{i}", "question": f"What is {i}?", "answer": "v0"}) + "\n"
                for i in range(args.items)
            )
        )
        server, url = start_server(args.latency, work)
        try:
            n = args.in_flight
            if args.two_nodes:
                local = ["--concurrency", str(n)]
                results = [run("local engine", data, work / "local", url, local)]
                with two_nodes() as (address, env):
                    results.append(
                        run("ray, 2 nodes x 1 actor", data, work / "ray2n", url,
                            ["--engine", "ray", "--ray-address", address, "--actors", "2",
                             "--in-flight-per-actor", str(max(1, n // 2))], env)
                    )  # fmt: skip
            else:
                results = [
                    run("local engine", data, work / "local", url, ["--concurrency", str(n)]),
                    run("ray, 1 actor", data, work / "ray1", url,
                        ["--engine", "ray", "--actors", "1", "--in-flight-per-actor", str(n)]),
                    run("ray, 2 actors", data, work / "ray2", url,
                        ["--engine", "ray", "--actors", "2",
                         "--in-flight-per-actor", str(max(1, n // 2))]),
                ]  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=10)
    base = float(results[0]["wall"])  # type: ignore[arg-type]
    print(f"{args.items} items, {args.in_flight} in flight in total, {args.latency}s per reply")
    print("| engine | items | wall (s) | items/s | wall / local |")
    print("|---|---|---|---|---|")
    for r in results:
        wall = float(r["wall"])  # type: ignore[arg-type]
        print(
            f"| {r['name']} | {r['items']} | {wall:.1f} | {int(r['items']) / wall:.1f} "  # type: ignore[call-overload]
            f"| {wall / base:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
