"""The event loop a curation run executes on, stopped cleanly by SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

REPORT_REFRESH_SECONDS = 30.0


def run_until_done_or_stopped(
    coro: Coroutine[Any, Any, None], checkpoint: Callable[[], object]
) -> bool:
    """Run the curation coroutine, calling `checkpoint()` (run.json) now and then; True
    when SIGINT/SIGTERM stopped it (items in flight are not written; the next run redoes
    them)."""

    async def refresh_report() -> None:
        while True:
            await asyncio.sleep(REPORT_REFRESH_SECONDS)
            checkpoint()

    async def main() -> bool:
        task = asyncio.ensure_future(coro)
        refresher = asyncio.ensure_future(refresh_report())
        loop = asyncio.get_running_loop()
        stop_requested = False

        def stop() -> None:
            nonlocal stop_requested
            stop_requested = True
            task.cancel()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop)
                installed.append(sig)
        try:
            await task
        except asyncio.CancelledError:
            if not stop_requested:
                raise
        finally:
            refresher.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)
        return stop_requested

    loop = _process_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)


_loop: asyncio.AbstractEventLoop | None = None


def _process_event_loop() -> asyncio.AbstractEventLoop:
    """One event loop for every run in this process, never closed.

    langchain-openai caches its default async HTTP client per (base URL, timeout) for the
    whole process, and that client is bound to the loop it first ran on: after
    `asyncio.run` closes its loop, a second run in the same process (tests, notebooks)
    would fail every call with "Event loop is closed".
    """
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop
