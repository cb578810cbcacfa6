"""`curate --engine ray` on a local Ray (one session for the module) against the fake
OpenAI-compatible server: per-row errors, an actor killed mid-run, a driver killed and the
run resumed, and outputs of the same shape as the single-process engine's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge import cli
from refine_n_judge.curate.ray_engine import CRASH_MARKER_ENV, LOOPBACK_ENV, CurateActor
from tests.integration_tests.ray_checks import (
    LOOPBACK_HEX,
    check_exactly_once,
    curate_args,
    listening_addresses,
    responder,
    rows,
    wait_for,
    write_input,
)
from tests.support.fake_openai import FakeOpenAIServer

os.environ.update(LOOPBACK_ENV)  # before Ray is imported: it reads the setting then
pytest.importorskip("ray.data", reason="needs the ray extra: pip install 'refine-n-judge[ray]'")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_session() -> Iterator[str]:
    """One local Ray for the module, on loopback; its GCS address."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder(), latency=0.02) as fake:
        yield fake


def test_end_to_end_like_local_engine_on_loopback(
    ray_session: str, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    data = tmp_path / "in.jsonl"
    expected = write_input(data, 24, failing=2)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert cli.main(curate_args(data, local, server.base_url, "--concurrency", "8")) == 1
    code = cli.main(
        curate_args(
            data,
            on_ray,
            server.base_url,
            "--engine",
            "ray",
            "--actors",
            "2",
            "--concurrency",
            "8",
            "--blocks",
            "4",
        )
    )
    assert code == 1  # some items failed, as with the local engine
    listening = listening_addresses(os.getpid())
    assert listening and listening <= LOOPBACK_HEX, listening  # every Ray socket on 127.0.0.1

    check_exactly_once(on_ray, expected)
    for name in ("sft.jsonl", "dpo.jsonl"):  # same rows, byte for byte (order aside)
        assert sorted((on_ray / name).read_bytes().splitlines()) == sorted(
            (local / name).read_bytes().splitlines()
        )
    ray_chains = {r["id"]: r for r in rows(on_ray / "chains.jsonl")}
    local_chains = {r["id"]: r for r in rows(local / "chains.jsonl")}
    assert ray_chains.keys() == local_chains.keys()
    for item_id, chain in ray_chains.items():
        assert chain.keys() == local_chains[item_id].keys()
        assert chain["chain"] == local_chains[item_id]["chain"]

    def failure_shape(out: Path) -> dict[str, tuple[str, str, list[str]]]:
        return {r["id"]: (r["stage"], r["kind"], sorted(r)) for r in rows(out / "failures.jsonl")}

    assert failure_shape(on_ray) == failure_shape(local)
    kinds = Counter(kind for _, kind, _ in failure_shape(on_ray).values())
    assert kinds == {"model_error": 2, "wrong_type": 1, "duplicate_id": 1}
    model_failure = next(r for r in rows(on_ray / "failures.jsonl") if r["id"] == "item-0")
    assert "scripted: this item always fails" in model_failure["reason"]

    ray_report = json.loads((on_ray / "run.json").read_text())
    local_report = json.loads((local / "run.json").read_text())
    assert ray_report.keys() == local_report.keys()
    assert ray_report["counts"] == local_report["counts"]
    assert ray_report["settings"]["engine"] == "ray"


def test_actor_killed_once_mid_run(
    ray_session: str, server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "in.jsonl"
    expected = write_input(data, 30)
    marker = tmp_path / "actor-died"
    monkeypatch.setenv(CRASH_MARKER_ENV, f"{marker}:5")
    out = tmp_path / "out"
    code = cli.main(
        curate_args(
            data,
            out,
            server.base_url,
            "--engine",
            "ray",
            "--actors",
            "1",
            "--in-flight-per-actor",
            "4",
            "--blocks",
            "6",
        )
    )
    assert marker.exists(), "the actor never died: the fault was not injected"
    assert code == 1  # only the two bad input rows failed
    check_exactly_once(out, expected)
    assert json.loads((out / "run.json").read_text())["counts"]["failed"] == 2


def test_driver_killed_then_resumed(
    ray_session: str, server: FakeOpenAIServer, tmp_path: Path
) -> None:
    data = tmp_path / "in.jsonl"
    expected = write_input(data, 40)
    out = tmp_path / "out"
    args = curate_args(data, out, server.base_url, "--engine", "ray", "--actors", "1",
                       "--in-flight-per-actor", "2", "--blocks", "10")  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "refine_n_judge.cli", *args, "--ray-address", ray_session],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shards = out / ".ray_work" / "shards"

    def some_shard_written() -> bool:
        return any(p.stat().st_size for p in shards.rglob("*.json")) if shards.exists() else False

    try:
        wait_for(some_shard_written, "a first output shard", driver)
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(timeout=10)
    assert driver.returncode == -signal.SIGKILL
    assert not (out / "chains.jsonl").read_bytes(), "merged before the kill: not mid-run"

    assert cli.main(args) == 1  # resumed in this process, on the module's Ray
    check_exactly_once(out, expected)
    report = json.loads((out / "run.json").read_text())
    assert [i["status"] for i in report["invocations"]] == ["killed", "finished"]


def test_actor_turns_an_exception_into_a_failure_row() -> None:
    """Anything graph.ainvoke raises stays in its row: the batch (and block) go on."""
    import pyarrow as pa

    actor = CurateActor({"refiner": "fake"}, in_flight=2)

    class Graph:
        async def ainvoke(self, state: dict[str, Any], **_: Any) -> Any:
            raise RuntimeError(f"boom on {state['id']}")

    actor.graph = Graph()
    batch = pa.Table.from_pylist(
        [
            {
                "id": f"x{i}",
                "question": "q",
                "answer": None,
                "reference": None,
                "source": "in",
                "line": i + 1,
            }
            for i in range(3)
        ]
    )
    result = asyncio.run(actor(batch)).to_pylist()
    assert [(r["id"], r["kind"]) for r in result] == [(f"x{i}", "failure") for i in range(3)]
    failure = json.loads(result[1]["record"])
    assert failure["stage"] == "graph" and failure["kind"] == "exception"
    assert failure["reason"] == "RuntimeError: boom on x1" and failure["line"] == 2


def test_cache_is_refused_before_anything_runs(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "in.jsonl"
    write_input(data, 1)
    args = curate_args(data, tmp_path / "out", server.base_url, "--engine", "ray")
    assert cli.main([*args, "--cache"]) == cli.EXIT_SETTINGS
    assert "--cache works with --engine local only" in capsys.readouterr().err
    assert not (tmp_path / "out" / "chains.jsonl").exists()


def test_shared_rate_limiter_paces_every_caller_together(ray_session: str) -> None:
    """Two Ray tasks, each with its own `SharedRateLimiter` on one bucket: together they get
    the bucket's rate, not each their own."""
    import ray

    from refine_n_judge.curate.ray_rate_limit import SharedRateLimiter, start_bucket

    rps = 10.0
    bucket = start_bucket("test-shared-rps", rps)
    created = time.time()

    @ray.remote(num_cpus=0.1)
    def caller(n: int) -> tuple[list[float], bool]:
        limiter = SharedRateLimiter("test-shared-rps")

        async def go() -> list[float]:
            stamps = []
            for _ in range(n):
                assert await limiter.aacquire() is True
                stamps.append(time.time())
            return stamps

        stamps = asyncio.run(go())
        limiter.acquire()  # the sync path takes a token too
        return stamps, limiter.acquire(blocking=False)  # nothing left right now

    try:
        results = ray.get([caller.remote(9), caller.remote(9)])
        stamps = sorted(s for r, _ in results for s in r)
        assert [left for _, left in results] == [False, False]
        stats = ray.get(bucket.stats.remote())
        assert stats["granted"] == 20
        # An empty bucket at 10/s: the 18th token is due 1.8 s after it was made (each
        # caller with its own bucket would have been done in 0.9 s).
        assert stamps[-1] - created >= 1.8 - 0.05
        for i, first in enumerate(stamps):  # no window ever beats burst + rate * width
            for j in range(i, len(stamps)):
                assert j - i + 1 <= rps + rps * (stamps[j] - first) + 1
    finally:
        ray.kill(bucket)
