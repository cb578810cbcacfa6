"""Run the async nodes from a synchronous `graph.invoke()`.

The nodes are async (the judge's swapped calls go out together). For `invoke`/`stream`,
each node gets a sync twin that runs the coroutine on one long-lived background event
loop, in a copy of the caller's context so traces and the LangGraph runtime carry over.
One loop for the whole process, not `asyncio.run` per call: async HTTP clients are bound
to the loop that made them and would break on the next call's fresh loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from langgraph._internal._runnable import RunnableCallable

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
    """Run `coro` to completion on the background loop and return its result."""
    loop = _background_loop()
    context = contextvars.copy_context()
    future: Future[T] = Future()

    def start() -> None:
        task = loop.create_task(coro, context=context)
        task.add_done_callback(lambda t: _settle(future, t))

    loop.call_soon_threadsafe(start)
    return future.result()


def _settle(future: Future[T], task: asyncio.Task[T]) -> None:
    if task.cancelled():
        future.cancel()
    elif task.exception() is not None:
        future.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        future.set_result(task.result())


def sync_and_async_node(
    afunc: Callable[..., Coroutine[Any, Any, T]], name: str, **bound: Any
) -> RunnableCallable:
    """A graph node with the async function for `ainvoke` and a sync twin for `invoke`."""
    target = partial(afunc, **bound) if bound else afunc

    def func(state: Any, runtime: Any) -> T:
        return run_sync(target(state, runtime))

    async def afunc_(state: Any, runtime: Any) -> T:
        return await target(state, runtime)

    return RunnableCallable(func, afunc_, name=name, trace=False)


def sync_router(func: Callable[..., T], name: str, **bound: Any) -> RunnableCallable:
    """A conditional edge that runs inline under `ainvoke` too (no executor thread)."""
    target = partial(func, **bound) if bound else func

    def route(state: Any, runtime: Any) -> T:
        return target(state, runtime) if _takes_runtime(func) else target(state)

    async def aroute(state: Any, runtime: Any) -> T:
        return route(state, runtime)

    return RunnableCallable(route, aroute, name=name, trace=False)


def _takes_runtime(func: Callable[..., Any]) -> bool:
    import inspect

    return "runtime" in inspect.signature(func).parameters
