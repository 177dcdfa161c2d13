"""Sync and async, written once.

Each adapter implements the flavour its client is native in; this module derives the other:

* **async over sync**: every call runs in one bounded, shared thread pool, so nothing blocking runs
  on the caller's event loop.
* **sync over async**: every call runs as a coroutine on one background event-loop thread owned by
  storebridge. That works from plain scripts, from any number of threads, and from *inside* a running
  event loop (FastAPI handlers, notebooks), because the caller's loop is never re-entered.

An async store used through its sync face lives on the background loop for its whole life (its pools
and connections are bound to that loop); do not also use the same object's async face from your loop.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import StorebridgeError

if TYPE_CHECKING:  # asyncio and concurrent.futures are imported on first use: `import storebridge` stays fast
    import asyncio
    import concurrent.futures

T = TypeVar("T")

_MAX_WORKERS = int(os.environ.get("STOREBRIDGE_THREADS", "0")) or min(32, (os.cpu_count() or 1) + 4)
_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None


def _thread_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        import concurrent.futures

        with _lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(_MAX_WORKERS, thread_name_prefix="storebridge-io")
    return _pool


async def run_in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking ``fn`` in storebridge's bounded thread pool, keeping the caller's context vars."""
    import asyncio

    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    call = functools.partial(ctx.run, fn, *args, **kwargs)
    return await loop.run_in_executor(_thread_pool(), call)


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_thread
    if _loop is None or _loop.is_closed():
        import asyncio

        with _lock:
            if _loop is None or _loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="storebridge-loop", daemon=True)
                thread.start()
                ready.wait()
                _loop, _loop_thread = loop, thread
    return _loop


def in_background_loop() -> bool:
    return _loop_thread is not None and threading.current_thread() is _loop_thread


def _carrying_context(coro: Coroutine[Any, Any, T] | Awaitable[T]) -> Coroutine[Any, Any, T]:
    """``coro`` wrapped to run with the calling thread's context variables (request ids, tracing spans):
    a task on the background loop otherwise runs in a copy of the loop's own context."""
    caller_context = contextvars.copy_context()

    async def wrap() -> T:
        for var, value in caller_context.items():
            var.set(value)
        return await coro

    return wrap()


async def run_on_background_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on storebridge's background loop from async code on any loop (directly when already
    on it). For stores whose client binds its state to one event loop: every call, from the sync face
    (:func:`run_sync`) or from any caller's loop, then runs on the same loop."""
    import asyncio

    if in_background_loop():
        return await coro
    future = asyncio.run_coroutine_threadsafe(_carrying_context(coro), _background_loop())
    return await asyncio.wrap_future(future)


def run_sync(coro: Coroutine[Any, Any, T] | Awaitable[T], timeout: float | None = None) -> T:
    """Run a coroutine to completion on the background loop and return its result.

    Safe from any thread and from inside a running event loop (the caller's loop is blocked for the
    duration, as any sync call would block it; use the async face to avoid that).
    """
    import asyncio
    import concurrent.futures

    if in_background_loop():
        if asyncio.iscoroutine(coro):
            coro.close()
        raise StorebridgeError(
            "a sync storebridge call was made from storebridge's own event-loop thread, which would "
            "deadlock; await the async method instead"
        )

    future = asyncio.run_coroutine_threadsafe(_carrying_context(coro), _background_loop())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise


def _shutdown() -> None:
    loop = _loop
    if loop is not None and not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)


atexit.register(_shutdown)


# ---------------------------------------------------------------------------------------------------------
# Deriving one flavour of an interface from the other.


class AsyncOverSync:
    """Base of the generated async faces of sync stores. ``inner`` is the sync store."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    def as_sync(self) -> Any:
        return self.inner

    def as_async(self) -> Any:
        return self

    def __repr__(self) -> str:
        return f"<async face of {self.inner!r}>"


class SyncOverAsync:
    """Base of the generated sync faces of async stores. ``inner`` is the async store."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    def as_sync(self) -> Any:
        return self

    def as_async(self) -> Any:
        return self.inner

    def __repr__(self) -> str:
        return f"<sync face of {self.inner!r}>"


def _async_method(name: str) -> Callable[..., Any]:
    async def method(self: AsyncOverSync, *args: Any, **kwargs: Any) -> Any:
        return await run_in_thread(getattr(self.inner, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


def _sync_method(name: str) -> Callable[..., Any]:
    def method(self: SyncOverAsync, *args: Any, **kwargs: Any) -> Any:
        return run_sync(getattr(self.inner, name)(*args, **kwargs))

    method.__name__ = method.__qualname__ = name
    return method


def derive_async(interface: type[Any], operations: Iterable[str]) -> type[Any]:
    """A class implementing the async ``interface`` by running a sync store's methods in threads."""
    namespace: dict[str, Any] = {name: _async_method(name) for name in operations}
    namespace["__module__"] = __name__
    for name in operations:
        namespace[name].__doc__ = getattr(interface, name).__doc__
    return type(f"AsyncOverSync{interface.__name__.removeprefix('Async')}", (AsyncOverSync, interface), namespace)


def derive_sync(interface: type[Any], operations: Iterable[str]) -> type[Any]:
    """A class implementing the sync ``interface`` by running an async store's coroutines on the
    background loop."""
    namespace: dict[str, Any] = {name: _sync_method(name) for name in operations}
    namespace["__module__"] = __name__
    for name in operations:
        namespace[name].__doc__ = getattr(interface, name).__doc__
    return type(f"SyncOverAsync{interface.__name__}", (SyncOverAsync, interface), namespace)


__all__ = ["derive_async", "derive_sync", "in_background_loop", "run_in_thread", "run_on_background_loop", "run_sync"]
