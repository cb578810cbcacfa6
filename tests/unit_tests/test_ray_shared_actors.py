"""The plain-Python halves of the Ray engine's shared actors: the `--rps` token bucket, the
run monitor and the stall warnings (no Ray started here)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from refine_n_judge.curate.ray_engine import LOOPBACK_ENV

# Ray reads this when it is first imported, and every later Ray in this pytest process
# (the integration tests' local Ray and two-node cluster) must stay on 127.0.0.1.
os.environ.update(LOOPBACK_ENV)
pytest.importorskip("ray", reason="needs the ray extra: pip install 'refine-n-judge[ray]'")

from refine_n_judge.curate.errors import SettingsError
from refine_n_judge.curate.ray_cluster import (
    RaySession,
    RunMonitor,
    StallWatch,
    check_reachable,
    cpus_needed,
)
from refine_n_judge.curate.ray_rate_limit import TokenBucket, bucket_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_empty_and_queues_reservations_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(requests_per_second=4, max_bucket_size=4, clock=clock)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits == [0.25, 0.5, 0.75, 1.0]  # four callers at once: one every 1/rps s
    clock.now += 1.0  # the four tokens came in: the queue is served, the bucket is empty
    assert bucket.reserve() == 0.25


def test_bucket_burst_is_capped_and_try_take_never_queues() -> None:
    clock = Clock()
    bucket = TokenBucket(requests_per_second=2, max_bucket_size=3, clock=clock)
    clock.now += 60.0  # a long idle time fills it only to max_bucket_size
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.reserve() == 0.5
    assert bucket.try_take() is False  # a queued reservation holds the next token
    clock.now += 1.0
    assert bucket.try_take() is True
    assert bucket.stats()["granted"] == 5


def test_bucket_never_admits_more_than_burst_plus_rate_times_window() -> None:
    clock = Clock()
    rps, burst = bucket_settings(5)
    bucket = TokenBucket(rps, burst, clock=clock)
    clock.now += 10.0
    starts = [clock.now + bucket.reserve() for _ in range(50)]  # when each request may go
    for i, first in enumerate(starts):
        for j in range(i, len(starts)):
            assert j - i + 1 <= burst + rps * (starts[j] - first) + 1e-9


def test_bucket_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="requests_per_second"):
        TokenBucket(0)


def test_monitor_counts_items_by_node_and_idle_time() -> None:
    clock = Clock()
    monitor = RunMonitor(clock=clock)
    monitor.actor_started("10.0.0.1/aa", 11)
    monitor.actor_started("10.0.0.2/bb", 22)
    for node in ("10.0.0.1/aa", "10.0.0.2/bb", "10.0.0.2/bb"):
        monitor.item_done(node)
    clock.now += 7
    snapshot = monitor.snapshot()
    assert snapshot["actors"] == [("10.0.0.1/aa", 11), ("10.0.0.2/bb", 22)]
    assert snapshot["items_by_node"] == {"10.0.0.1/aa": 1, "10.0.0.2/bb": 2}
    assert snapshot["idle_seconds"] == 7


def test_stall_watch_names_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 0.0})
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    said: list[str] = []
    watch = StallWatch(monitor=None, actors=2, say=said.append, stall_seconds=60)
    snapshot: dict[str, Any] = {"actors": [("n", 1)], "items_by_node": {}, "idle_seconds": 5.0}
    message = watch.diagnose(snapshot, elapsed=61)
    assert message is not None
    assert "1 of 2 actors started after 61s" in message
    assert "0 of 2 logical CPUs free" in message and "--num-cpus" in message
    snapshot["actors"].append(("m", 2))
    assert watch.diagnose(snapshot, elapsed=61) is None  # all up, items finishing
    snapshot["idle_seconds"] = 75.0
    message = watch.diagnose(snapshot, elapsed=200) or ""
    assert "no item finished in the last 75s (2 actors up, 0 of 2 logical CPUs free)" in message


def test_session_says_whether_it_started_or_joined() -> None:
    joined = RaySession(mode="joined", address="127.0.0.1:6380", nodes=2, cpus=4)
    assert joined.describe() == (
        "Ray: joined the cluster at 127.0.0.1:6380 (2 node(s), 4 CPUs); it is left running"
    )
    started = RaySession(mode="started", address="127.0.0.1:1", nodes=1, cpus=4)
    assert "started a private local Ray" in started.describe()
    assert "stopped at the end" in started.describe()
    assert cpus_needed(4) == 4 * 0.25 + 1


def test_an_address_nothing_answers_on_is_refused_at_once() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SettingsError, match=f"127.0.0.1:{port}: nothing answers there"):
        check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(SettingsError, match="expected HOST:PORT"):
        check_reachable("my-head")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}")  # something listens: go on
    check_reachable("auto")  # Ray resolves these itself
