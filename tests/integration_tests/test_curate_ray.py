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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge import cli
from refine_n_judge.curate.ray_engine import CRASH_MARKER_ENV, LOOPBACK_ENV, CurateActor
from refine_n_judge.testing.fake_openai import ChatRequest, FakeOpenAIServer, Reply
from refine_n_judge.testing.scripts import versioned_responder

os.environ.update(LOOPBACK_ENV)  # before Ray is imported: it reads the setting then
pytest.importorskip("ray.data", reason="needs the ray extra: pip install 'refine-n-judge[ray]'")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 90.0
OUTPUT_FILES = [
    ".curate.lock",
    "chains.jsonl",
    "dpo.jsonl",
    "failures.jsonl",
    "inputs.json",
    "run.json",
    "sft.jsonl",
]


def responder() -> Callable[[ChatRequest], Reply]:
    """Chains grow to v1 and v2 loses (8 calls per item); a question with FAIL gets an HTTP
    400 (not retried), so that item ends as a model failure row."""
    script = versioned_responder(stop_at=1)

    def respond(request: ChatRequest) -> Reply:
        if "FAIL" in request.texts("user")[0]:
            return Reply(status=400, error_message="scripted: this item always fails")
        return script(request)

    return respond


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


def write_input(path: Path, n: int, *, failing: int = 0) -> set[str]:
    """n items (the first `failing` of them fail), one bad row and one repeated id; the
    record keys the run must end with."""
    rows: list[dict[str, Any]] = [
        {"id": f"item-{i}", "question": f"{'FAIL ' if i < failing else ''}What is {i}?"}
        | ({"answer": "v0"} if i % 3 else {})
        for i in range(n)
    ]
    rows.insert(2, {"id": "broken", "question": 42})
    rows.append({"id": "item-1", "question": "again"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {f"item-{i}" for i in range(n)} | {f"{path.name}:3", f"{path.name}:{len(rows)}"}


def curate_args(data: Path, out: Path, url: str, *flags: str) -> list[str]:
    return ["curate", str(data), "--out", str(out), "--refiner", "fake", "--base-url", url,
            "--quiet", *flags]  # fmt: skip


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def check_exactly_once(out: Path, expected: set[str]) -> None:
    """Every key once across chains+failures, whole lines, exports match the chains."""
    keys = [r["id"] for name in ("chains.jsonl", "failures.jsonl") for r in rows(out / name)]
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    assert set(keys) == expected
    chain_ids = {r["id"] for r in rows(out / "chains.jsonl")}
    assert sorted(r["id"] for r in rows(out / "sft.jsonl")) == sorted(chain_ids)
    assert Counter(r["id"] for r in rows(out / "dpo.jsonl")) == dict.fromkeys(chain_ids, 2)
    report = json.loads((out / "run.json").read_text())
    assert report["counts"]["items"] == len(expected)
    assert report["counts"]["succeeded"] == len(chain_ids)
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES  # no shards left behind


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def listening_addresses(root_pid: int) -> set[str]:
    """The local IPv4/IPv6 addresses (hex, as /proc/net shows them) that `root_pid` and its
    descendants listen on."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, stack = set(), [root_pid]
    while stack:
        pid = stack.pop()
        pids.add(pid)
        stack.extend(children.get(pid, []))
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                found.add(parts[1].rsplit(":", 1)[0])
    return found


LOOPBACK_HEX = {
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


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

    actor = CurateActor({"refiner": "fake"}, rps=None, in_flight=2)

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
