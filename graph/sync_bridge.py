"""Nodes and routers that run under both `graph.invoke()` and `graph.ainvoke()`.

The nodes are async (the judge's swapped calls go out together). For `invoke`/`stream`,
each node runs its coroutine on one long-lived background event loop, in a copy of the
caller's context so traces and the LangGraph runtime carry over. One loop for the whole
process, not `asyncio.run` per call: async HTTP clients are bound to the loop that made
them and would break on the next call's fresh loop. A sync caller that is interrupted
(Ctrl-C, or its thread's wait is cut short) cancels the coroutine, so no model call
goes on paying after the caller gave up.

Both wrappers are plain `Runnable`s with no trace run of their own: LangGraph's node run
is the trace, as for the functions it wraps itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import set_config_context
from langgraph.runtime import Runtime, get_runtime

from nodes.state import plain_update

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(
                target=_loop.run_forever, name="refine-n-judge-sync-bridge", daemon=True
            ).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on the background loop and return its result.

    If the wait is interrupted (KeyboardInterrupt, SystemExit, any exception raised into
    this thread), the coroutine is cancelled before the interruption propagates.
    """
    loop = _background_loop()
    context = contextvars.copy_context()
    future: Future[T] = Future()
    started: Future[asyncio.Task[T]] = Future()

    def start() -> None:
        task = loop.create_task(coro, context=context)
        task.add_done_callback(lambda t: _settle(future, t))
        started.set_result(task)

    loop.call_soon_threadsafe(start)
    try:
        return future.result()
    except BaseException:
        if not future.done():
            task = started.result()
            loop.call_soon_threadsafe(task.cancel)
        raise


def _settle(future: Future[T], task: asyncio.Task[T]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        future.set_result(task.result())


def _runtime(config: RunnableConfig | None) -> Runtime[Any] | None:
    """The LangGraph runtime of the run `config` belongs to."""
    if config is None:
        return None
    with set_config_context(config) as context:
        try:
            return context.run(get_runtime)
        except RuntimeError:  # called outside a graph run (a unit test calling the node)
            return None


class GraphNode(Runnable[Any, Any]):
    """A graph node: `afunc(state, runtime, **bound)` awaited, or run to completion from
    a sync `invoke` on the background loop; its update goes to the channels as plain data
    (`nodes.state.plain_update`)."""

    def __init__(
        self, afunc: Callable[..., Coroutine[Any, Any, Any]], name: str, **bound: Any
    ) -> None:
        self.target = partial(afunc, **bound) if bound else afunc
        self.name = name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return plain_update(run_sync(self.target(input, _runtime(config))))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return plain_update(await self.target(input, _runtime(config)))


class GraphRouter(Runnable[Any, Any]):
    """A conditional edge, run inline under both `invoke` and `ainvoke` (no executor
    thread); `func(state)` or `func(state, runtime, **bound)`."""

    def __init__(self, func: Callable[..., Any], name: str, **bound: Any) -> None:
        self.target = partial(func, **bound) if bound else func
        self.takes_runtime = "runtime" in inspect.signature(func).parameters
        self.name = name

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if self.takes_runtime:
            return self.target(input, _runtime(config))
        return self.target(input)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.invoke(input, config)


def sync_and_async_node(
    afunc: Callable[..., Coroutine[Any, Any, Any]], name: str, **bound: Any
) -> GraphNode:
    """A graph node with the async function for `ainvoke` and a sync twin for `invoke`."""
    return GraphNode(afunc, name, **bound)


def sync_router(func: Callable[..., T], name: str, **bound: Any) -> GraphRouter:
    """A conditional edge that runs inline under `ainvoke` too (no executor thread)."""
    return GraphRouter(func, name, **bound)
