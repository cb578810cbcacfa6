"""`curate --engine ray` on a real two-node Ray cluster on 127.0.0.1, against the fake
OpenAI-compatible server: it joins the cluster (and leaves it running), spreads its actors
over both nodes, shares one `--rps` bucket, survives the second node's raylet being killed
mid-run, and after its driver is killed a rerun submitted with `ray job submit` leaves every
item exactly once.

The two nodes are started with `ray.cluster_utils.Cluster` (Ray's own multi-node-on-one-
machine harness: each node its own raylet process tree). `ray start` cannot do this on
loopback only: with `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (what keeps Ray on 127.0.0.1) it
refuses to start a second node, and without it Ray 2.60 rewrites `127.0.0.1` to this
machine's address and its GCS and raylets listen on every interface.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge.curate.ray_engine import LOOPBACK_ENV
from tests.integration_tests.ray_checks import (
    LOOPBACK_HEX,
    check_exactly_once,
    curate_args,
    listening_addresses,
    responder,
    wait_for,
    write_input,
)
from tests.support.fake_openai import ChatRequest, FakeOpenAIServer, Reply

os.environ.update(LOOPBACK_ENV)  # before Ray is imported: it reads the setting then
pytest.importorskip("ray.data", reason="needs the ray extra: pip install 'refine-n-judge[ray]'")
pytest.importorskip("ray.dashboard", reason="`ray job submit` needs the ray extra's dashboard")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RPS = 25.0
ACTORS, IN_FLIGHT = 2, 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class TwoNodes:
    address: str
    dashboard: str
    head_id: str
    worker_id: str
    env: dict[str, str]
    """What a driver on this machine needs: the token, the temp dir (for `auto`)."""
    cluster: Any


def descendants(root: int) -> dict[int, str]:
    """pid -> command name of every process under `root`."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        names[pid] = text[text.index("(") + 1 : text.rindex(")")]
        children.setdefault(int(text.rsplit(")", 1)[1].split()[1]), []).append(pid)
    found, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = names.get(pid, "?")
        stack.extend(children.get(pid, []))
    return found


def raylet_of(node_id: str) -> int:
    """The pid of the raylet serving `node_id` (a child of this process: Cluster started it)."""
    for pid, name in descendants(os.getpid()).items():
        if name == "raylet":
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            except OSError:
                continue
            if f"--node_id={node_id}" in cmdline:
                return pid
    raise AssertionError(f"no raylet for node {node_id}")


def kill_leftovers(temp: Path) -> None:
    """Kill, by pid, any process still holding a file of this cluster's temp dir."""
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        pid = int(fd_dir.parent.name)
        if pid == os.getpid():
            continue
        try:
            if any(str(temp) in os.readlink(fd) for fd in fd_dir.iterdir()):
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    """A head (3 logical CPUs, the dashboard) and a worker node (2), all on 127.0.0.1,
    with token authentication and a private temp dir; stopped whatever happens."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths < 108
    (temp / "ray").mkdir()
    env = {
        "RAY_TMPDIR": str(temp),  # also where `--ray-address auto` finds the cluster
        # Ray reads RAY_AUTH_MODE once, when it is imported, and this pytest process (which
        # hosts the cluster) may have imported it long before: token mode cannot be turned on
        # here reliably, so the loopback-only cluster runs without it.
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a lost node is noticed in ~3 s instead of ~30 s
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
        **LOOPBACK_ENV,
    }
    cluster = None
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            from ray.cluster_utils import Cluster

            cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 3,
                    "temp_dir": str(temp / "ray"),
                    "include_dashboard": True,
                    "dashboard_host": "127.0.0.1",
                    "dashboard_port": free_port(),
                },
            )
            worker = cluster.add_node(num_cpus=2)
            cluster.wait_for_nodes()
            yield TwoNodes(
                address=cluster.address,
                dashboard=f"http://{cluster.webui_url}",
                head_id=cluster.head_node.node_id,
                worker_id=worker.node_id,
                env=env,
                cluster=cluster,
            )
        finally:
            if cluster is not None:
                cluster.shutdown()
            kill_leftovers(temp)
            shutil.rmtree(temp, ignore_errors=True)


class Recorder:
    """Wraps the scripted responder: when each request came, how many were in flight."""

    def __init__(self, respond: Callable[[ChatRequest], Reply], latency: float) -> None:
        self.respond = respond
        self.latency = latency
        self.lock = threading.Lock()
        self.stamps: list[float] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, request: ChatRequest) -> Reply:
        with self.lock:
            self.stamps.append(time.monotonic())
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)  # in the responder, so it counts as in flight
            return self.respond(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def loud(args: list[str]) -> list[str]:
    """The curate arguments without --quiet (the driver says which Ray it used), as JSON
    lines."""
    return [a for a in args if a != "--quiet"] + ["--log-format", "json"]


def driver_env(nodes: TwoNodes) -> dict[str, str]:
    return {**os.environ, **nodes.env, "PYTHONPATH": str(PROJECT_ROOT)}


def start_driver(args: list[str], nodes: TwoNodes, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "refine_n_judge.cli", *args],
        cwd=PROJECT_ROOT,
        env=driver_env(nodes),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def curate_actors(nodes: TwoNodes) -> list[Any]:
    """The curate actors Ray's state API knows of (any state)."""
    from ray.util.state import list_actors

    return [
        a
        for a in list_actors(address=nodes.dashboard, limit=1000, raise_on_missing_output=False)
        if "CurateActor" in a.class_name
    ]


def test_joins_spreads_and_survives_a_lost_node(two_nodes: TwoNodes, tmp_path: Path) -> None:
    recorder = Recorder(responder(), latency=0.05)
    data = tmp_path / "in.jsonl"
    expected = write_input(data, 32, failing=2)
    out, log = tmp_path / "out", tmp_path / "driver.log"
    with FakeOpenAIServer(recorder) as server:
        args = loud(curate_args(data, out, server.base_url, "--engine", "ray", "--ray-address",
                                two_nodes.address, "--actors", str(ACTORS),
                                "--in-flight-per-actor", str(IN_FLIGHT), "--rps", str(RPS),
                                "--blocks", "8"))  # fmt: skip
        driver = start_driver(args, two_nodes, log)
        try:

            def actors_on_both_nodes() -> bool:
                alive = [a for a in curate_actors(two_nodes) if a.state == "ALIVE"]
                return {a.node_id for a in alive} == {two_nodes.head_id, two_nodes.worker_id}

            wait_for(actors_on_both_nodes, "a curate actor alive on each node", driver)
            wait_for(lambda: len(recorder.stamps) >= 40, "the first model calls", driver)
            for pid in [driver.pid, os.getpid()]:  # the driver, and every node's processes
                listening = listening_addresses(pid)
                assert listening and listening <= LOOPBACK_HEX, listening
            most_in_flight = recorder.most_in_flight  # after the kill the server still
            # answers the dead node's requests while the restarted actor sends new ones
            os.kill(raylet_of(two_nodes.worker_id), signal.SIGKILL)  # the node is lost
            assert driver.wait(timeout=150) == 1  # the two FAIL items are model failures
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()

    check_exactly_once(out, expected)
    report = json.loads((out / "run.json").read_text())
    assert report["counts"]["failed"] == 4  # 2 model failures + 2 bad input rows
    ray_used = report["invocations"][-1]["ray"]
    assert ray_used["mode"] == "joined" and ray_used["address"] == two_nodes.address
    assert ray_used["nodes"] == 2
    assert sum(ray_used["items_by_node"].values()) == 32  # every staged item, once
    assert f"Ray: joined the cluster at {two_nodes.address}" in log.read_text()

    # The cluster is still there (only the node this test killed is gone).
    from ray.util.state import list_nodes

    states = {n.node_id: n.state for n in list_nodes(address=two_nodes.dashboard)}
    assert states == {two_nodes.head_id: "ALIVE", two_nodes.worker_id: "DEAD"}

    # One bucket for both actors: no window of requests beat burst + rate * width, with
    # half a second of slack for callers that woke late on this loaded machine and arrived
    # together (two unshared buckets would allow twice the rate), and no more than
    # --in-flight-per-actor items per actor were in flight.
    stamps = recorder.stamps
    for i, first in enumerate(stamps):
        for j in range(i + 1, len(stamps)):
            assert j - i + 1 <= RPS + RPS * (stamps[j] - first) + RPS / 2, (i, j)
    # Each item in flight has at most two calls out: the judge's swapped pair goes together.
    assert 0 < most_in_flight <= ACTORS * IN_FLIGHT * 2


def test_driver_killed_then_rerun_as_a_job(two_nodes: TwoNodes, tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    expected = write_input(data, 24)
    out = tmp_path / "out"
    with FakeOpenAIServer(responder(), latency=0.05) as server:
        args = loud(curate_args(data, out, server.base_url, "--engine", "ray", "--actors", "1",
                                "--in-flight-per-actor", "2", "--blocks", "8"))  # fmt: skip
        # `auto`: the driver finds the cluster from RAY_TMPDIR's cluster file
        driver = start_driver([*args, "--ray-address", "auto"], two_nodes, tmp_path / "d.log")
        shards = out / ".ray_work" / "shards"

        def some_shard_written() -> bool:
            return any(p.stat().st_size for p in shards.rglob("*.json")) if shards.exists() else 0

        try:
            wait_for(some_shard_written, "a first output shard", driver)
            os.kill(driver.pid, signal.SIGKILL)
        finally:
            driver.wait(timeout=10)
        assert not (out / "chains.jsonl").read_bytes(), "merged before the kill: not mid-run"

        # The rerun as a Ray job: the entry point gets RAY_ADDRESS from Ray, no flag.
        runtime_env = {"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}}
        submitted = subprocess.run(
            [
                str(Path(sys.executable).parent / "ray"),
                *("job", "submit", "--address", two_nodes.dashboard),
                *("--runtime-env-json", json.dumps(runtime_env), "--"),
                *(sys.executable, "-m", "refine_n_judge.cli", *args),
            ],
            env=driver_env(two_nodes),
            capture_output=True,
            text=True,
            timeout=150,
        )
    logs = submitted.stdout + submitted.stderr
    # curate exits 1 when rows failed (here the two bad input rows); the job says so
    assert "entrypoint command failed with exit code 1" in logs, logs[-3000:]
    assert "Ray: joined the cluster at" in logs
    check_exactly_once(out, expected)
    report = json.loads((out / "run.json").read_text())
    assert [i["status"] for i in report["invocations"]] == ["killed", "finished"]
    assert report["invocations"][-1]["ray"]["mode"] == "joined"


def test_too_small_a_cluster_is_refused_with_the_sum(two_nodes: TwoNodes, tmp_path: Path) -> None:
    """20 actors need 0.25 x 20 + 1 logical CPUs: the driver says so instead of waiting."""
    data = tmp_path / "in.jsonl"
    write_input(data, 3)
    out = tmp_path / "out"
    with FakeOpenAIServer(responder()) as server:
        args = curate_args(data, out, server.base_url, "--engine", "ray", "--ray-address",
                           two_nodes.address, "--actors", "20")  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "refine_n_judge.cli", *args],
            cwd=PROJECT_ROOT,
            env=driver_env(two_nodes),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "--actors 20 needs 6 (0.25 per actor and 1 for Ray Data's read and write tasks)" in (
        done.stderr
    )
    assert "larger --num-cpus" in done.stderr
    assert not (out / "chains.jsonl").read_bytes()  # nothing ran
