"""`--rps` in one process: LangChain's token bucket, shared by every model of the run (the
Ray engine's bucket, shared by every actor, is `ray_rate_limit`)."""

from __future__ import annotations

from langchain_core.rate_limiters import InMemoryRateLimiter


def make_rate_limiter(rps: float | None) -> InMemoryRateLimiter | None:
    """LangChain's token-bucket limiter shared by every model, or None."""
    if rps is None:
        return None
    return InMemoryRateLimiter(
        requests_per_second=rps,
        check_every_n_seconds=min(0.05, 1.0 / rps),
        max_bucket_size=max(1.0, rps),
    )
