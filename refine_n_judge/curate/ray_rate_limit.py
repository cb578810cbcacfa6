"""`--rps` on Ray: one token bucket for every actor on every node.

The bucket lives in one named Ray actor (`TokenBucket`, started by the driver next to
itself); each curate actor's models pace themselves through a `SharedRateLimiter`, a
LangChain `BaseRateLimiter` whose `acquire`/`aacquire` ask that actor. A blocking acquire
*reserves* a token and sleeps until it is due, so one round trip per request, however
busy the bucket. Imported by the Ray engine only (the `ray` extra).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import ray
from langchain_core.rate_limiters import BaseRateLimiter
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

BUCKET_NAMESPACE = "refine_n_judge"


class TokenBucket:
    """A token bucket that hands out reservations; run as a Ray actor by `start_bucket`.

    It starts empty (as LangChain's `InMemoryRateLimiter` does) and holds at most
    `max_bucket_size` tokens. `reserve` may take the bucket below zero: the debt is the
    queue, and the caller waits until its token has been refilled. Over any window of T
    seconds at most `max_bucket_size + requests_per_second * T` requests go out.
    """

    def __init__(
        self,
        requests_per_second: float,
        max_bucket_size: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_second <= 0 or max_bucket_size < 1:
            raise ValueError("requests_per_second must be > 0 and max_bucket_size >= 1")
        self.rate = requests_per_second
        self.capacity = max_bucket_size
        self.clock = clock
        self.tokens = 0.0
        self.last = clock()
        self.granted = 0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def reserve(self) -> float:
        """Take a token now or in the future: the seconds to wait before using it."""
        self._refill()
        self.tokens -= 1.0
        self.granted += 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def try_take(self) -> bool:
        """Take a token only if one is there now (and nobody is queued for it)."""
        self._refill()
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        self.granted += 1
        return True

    def stats(self) -> dict[str, float]:
        """Tokens handed out so far, and the settings."""
        return {"granted": self.granted, "rps": self.rate, "burst": self.capacity}


class SharedRateLimiter(BaseRateLimiter):
    """LangChain's rate-limiter interface over a shared `TokenBucket` actor."""

    def __init__(self, bucket: Any) -> None:
        """`bucket`: the actor's handle, or its name (looked up in `BUCKET_NAMESPACE`)."""
        if isinstance(bucket, str):
            bucket = ray.get_actor(bucket, namespace=BUCKET_NAMESPACE)
        self.bucket = bucket

    def acquire(self, *, blocking: bool = True) -> bool:
        if not blocking:
            return bool(ray.get(self.bucket.try_take.remote()))
        time.sleep(ray.get(self.bucket.reserve.remote()))
        return True

    async def aacquire(self, *, blocking: bool = True) -> bool:
        if not blocking:
            return bool(await self.bucket.try_take.remote())
        await asyncio.sleep(await self.bucket.reserve.remote())
        return True


def bucket_settings(rps: float) -> tuple[float, float]:
    """(requests per second, burst) for `--rps`: the burst is one second's worth, as the
    local engine's `InMemoryRateLimiter` has."""
    return rps, max(1.0, rps)


def start_bucket(name: str, rps: float) -> Any:
    """The shared bucket as a named actor on this (the driver's) node; its handle.

    It needs no CPU, is restarted if its process dies (its calls are retried, so a
    restart costs at most one burst), and goes away with the driver.
    """
    rate, burst = bucket_settings(rps)
    return (
        ray.remote(TokenBucket)
        .options(
            name=name,
            namespace=BUCKET_NAMESPACE,
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id=ray.get_runtime_context().get_node_id(), soft=True
            ),
        )
        .remote(rate, burst)
    )
