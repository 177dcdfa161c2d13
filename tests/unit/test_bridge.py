"""The sync/async bridge: run_sync, run_in_thread, and the derived faces of the store interfaces."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import fnmatch
import inspect
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from storebridge import bridge
from storebridge.bridge import in_background_loop, run_in_thread, run_sync
from storebridge.errors import StorebridgeError, ValidationError
from storebridge.state import AsyncStateStore, StateCapabilities, StateStore

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


class Boom(Exception):
    """A custom error type, to check that types survive the trip."""


# ---------------------------------------------------------------------------------------------------------
# Tiny test stores: a dict, and a record of the thread each call ran in.


class DictState(StateStore):
    capabilities = StateCapabilities(persistent=False)

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []
        self.closed = False

    def _seen(self) -> None:
        self.threads.append(threading.current_thread())

    def get(self, key: str, default: Any = None) -> Any:
        self._seen()
        if key == "slow":
            time.sleep(0.3)
        if key == "boom":
            raise Boom("sync boom")
        if key == "ctx":
            return request_id.get()
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._seen()
        if not isinstance(key, str) or not key:
            raise ValidationError("bad key")
        self.data[key] = value

    def delete(self, key: str) -> bool:
        self._seen()
        return self.data.pop(key, None) is not None

    def exists(self, key: str) -> bool:
        self._seen()
        return key in self.data

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        self._seen()
        return {k: self.data[k] for k in keys if k in self.data}

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        self._seen()
        self.data.update(items)

    def delete_many(self, keys: Iterable[str]) -> int:
        return sum(self.delete(k) for k in keys)

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        self._seen()
        return sorted(
            k for k in self.data
            if (prefix is None or k.startswith(prefix)) and (pattern is None or fnmatch.fnmatchcase(k, pattern))
        )

    def ttl(self, key: str) -> float | None:
        return None

    def expire(self, key: str, ttl: float | None) -> bool:
        return key in self.data

    def increment(self, key: str, amount: float = 1) -> float:
        self._seen()
        self.data[key] = self.data.get(key, 0) + amount
        return self.data[key]

    def clear(self) -> int:
        n = len(self.data)
        self.data.clear()
        return n

    def close(self) -> None:
        self._seen()
        self.closed = True


class AsyncDictState(AsyncStateStore):
    capabilities = StateCapabilities(persistent=False, native_ttl=True)

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.closed = False

    async def _seen(self) -> None:
        self.threads.append(threading.current_thread())
        self.loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)

    async def get(self, key: str, default: Any = None) -> Any:
        await self._seen()
        if key == "boom":
            raise Boom("async boom")
        if key == "reenter":
            # a sync call made from the background loop itself must fail fast, not deadlock
            return run_sync(asyncio.sleep(0, result="never"))
        if key == "slow":
            await asyncio.sleep(0.1)
        return self.data.get(key, default)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._seen()
        self.data[key] = value

    async def delete(self, key: str) -> bool:
        await self._seen()
        return self.data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        await self._seen()
        return key in self.data

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        await self._seen()
        return {k: self.data[k] for k in keys if k in self.data}

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        await self._seen()
        self.data.update(items)

    async def delete_many(self, keys: Iterable[str]) -> int:
        return sum([await self.delete(k) for k in keys])

    async def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        await self._seen()
        return sorted(k for k in self.data if prefix is None or k.startswith(prefix))

    async def ttl(self, key: str) -> float | None:
        return None

    async def expire(self, key: str, ttl: float | None) -> bool:
        return key in self.data

    async def increment(self, key: str, amount: float = 1) -> float:
        await self._seen()
        self.data[key] = self.data.get(key, 0) + amount
        return self.data[key]

    async def clear(self) -> int:
        n = len(self.data)
        self.data.clear()
        return n

    async def close(self) -> None:
        await self._seen()
        self.closed = True


def _thread_name() -> str:
    return threading.current_thread().name


async def _where_am_i(result: Any = None) -> tuple[str, Any]:
    await asyncio.sleep(0)
    return threading.current_thread().name, result


# ---------------------------------------------------------------------------------------------------------
# run_sync


def test_run_sync_from_plain_code():
    name, value = run_sync(_where_am_i(42))
    assert value == 42
    assert name == "storebridge-loop"
    assert threading.current_thread() is threading.main_thread()


def test_run_sync_accepts_any_awaitable():
    async def make_future() -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, "done")
        return await fut

    assert run_sync(make_future()) == "done"


def test_run_sync_uses_one_background_loop():
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    assert run_sync(loop_id()) == run_sync(loop_id())


@pytest.mark.asyncio
async def test_run_sync_inside_a_running_loop():
    caller_loop = asyncio.get_running_loop()

    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert run_sync(which_loop()) is not caller_loop
    name, value = run_sync(_where_am_i("x"))
    assert (name, value) == ("storebridge-loop", "x")


def test_run_sync_from_16_threads_at_once():
    barrier = threading.Barrier(16)

    async def work(i: int) -> tuple[int, str]:
        await asyncio.sleep(0.1)
        return i * i, threading.current_thread().name

    def call(i: int) -> tuple[int, str]:
        barrier.wait(timeout=5)
        return run_sync(work(i), timeout=10)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    elapsed = time.perf_counter() - start
    assert [r[0] for r in results] == [i * i for i in range(16)]
    assert {r[1] for r in results} == {"storebridge-loop"}
    # the coroutines overlap on the background loop: nowhere near 16 x 0.1 s
    assert elapsed < 1.0


def test_run_sync_from_the_background_loop_raises_instead_of_deadlocking():
    inner_ran = []

    async def inner() -> str:
        inner_ran.append(True)
        return "inner"

    async def outer() -> str:
        assert in_background_loop()
        return run_sync(inner())

    with pytest.raises(StorebridgeError, match="deadlock"):
        run_sync(outer(), timeout=5)
    assert inner_ran == []
    # the loop is still healthy afterwards
    assert run_sync(_where_am_i(1), timeout=5) == ("storebridge-loop", 1)


def test_in_background_loop_is_false_elsewhere():
    assert not in_background_loop()

    async def check() -> bool:
        return in_background_loop()

    assert run_sync(check()) is True


def test_run_sync_propagates_exception_type():
    async def fail() -> None:
        await asyncio.sleep(0)
        raise Boom("from the loop")

    with pytest.raises(Boom, match="from the loop"):
        run_sync(fail())

    async def key_error() -> None:
        raise KeyError("k")

    with pytest.raises(KeyError):
        run_sync(key_error())


def test_run_sync_timeout_cancels_the_coroutine():
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    start = time.perf_counter()
    with pytest.raises(TimeoutError):
        run_sync(forever(), timeout=0.1)
    assert time.perf_counter() - start < 5
    assert cancelled.wait(5)


# ---------------------------------------------------------------------------------------------------------
# run_in_thread


@pytest.mark.asyncio
async def test_run_in_thread_uses_a_storebridge_io_thread():
    name = await run_in_thread(_thread_name)
    assert name.startswith("storebridge-io")
    assert name != threading.current_thread().name


@pytest.mark.asyncio
async def test_run_in_thread_passes_args_and_kwargs():
    def combine(a: int, b: int, *, c: int = 0, fn: str = "") -> tuple[int, str]:
        return a + b + c, fn

    # ``fn`` is positional-only in run_in_thread, so a keyword argument of that name reaches the callee
    assert await run_in_thread(combine, 1, 2, c=3, fn="kw") == (6, "kw")


@pytest.mark.asyncio
async def test_run_in_thread_keeps_contextvars():
    token = request_id.set("req-7")
    try:
        assert await run_in_thread(request_id.get) == "req-7"
    finally:
        request_id.reset(token)
    assert await run_in_thread(request_id.get) == "none"


@pytest.mark.asyncio
async def test_run_in_thread_changes_to_contextvars_stay_in_the_thread():
    def set_it() -> str:
        request_id.set("inside")
        return request_id.get()

    assert await run_in_thread(set_it) == "inside"
    assert request_id.get() == "none"


@pytest.mark.asyncio
async def test_run_in_thread_propagates_exception_type():
    def fail() -> None:
        raise Boom("from a thread")

    with pytest.raises(Boom, match="from a thread"):
        await run_in_thread(fail)


@pytest.mark.asyncio
async def test_run_in_thread_does_not_block_the_loop():
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    try:
        await run_in_thread(time.sleep, 0.3)
    finally:
        task.cancel()
    assert ticks >= 5


# ---------------------------------------------------------------------------------------------------------
# The async face of a sync store


@pytest.mark.asyncio
async def test_async_face_runs_sync_methods_off_the_loop_thread():
    store = DictState()
    face = store.as_async()
    assert isinstance(face, AsyncStateStore)
    await face.set("k", {"v": 1})
    assert await face.get("k") == {"v": 1}
    assert await face.get("missing", "dflt") == "dflt"
    assert await face.exists("k") is True
    assert await face.keys(prefix="k") == ["k"]
    assert await face.increment("n", 2) == 2
    assert store.threads
    loop_thread = threading.current_thread()
    for thread in store.threads:
        assert thread is not loop_thread
        assert thread.name.startswith("storebridge-io")


@pytest.mark.asyncio
async def test_async_face_shares_state_and_capabilities_with_the_sync_store():
    store = DictState()
    face = store.as_async()
    store.set("a", 1)
    assert await face.get("a") == 1
    await face.set_many({"b": 2, "c": 3})
    assert store.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
    assert face.capabilities is store.capabilities
    assert face.as_sync() is store
    assert face.as_async() is face
    assert "DictState" in repr(face)


@pytest.mark.asyncio
async def test_async_face_keeps_contextvars():
    face = DictState().as_async()
    token = request_id.set("req-42")
    try:
        assert await face.get("ctx") == "req-42"
    finally:
        request_id.reset(token)


@pytest.mark.asyncio
async def test_async_face_propagates_exception_type():
    face = DictState().as_async()
    with pytest.raises(Boom, match="sync boom"):
        await face.get("boom")
    with pytest.raises(ValidationError):
        await face.set("", 1)


@pytest.mark.asyncio
async def test_async_face_does_not_block_the_event_loop():
    face = DictState().as_async()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        start = time.perf_counter()
        await face.get("slow")  # time.sleep(0.3) in the sync store
        elapsed = time.perf_counter() - start
    finally:
        task.cancel()
    assert elapsed >= 0.25
    # a blocked loop would tick once or twice; a free one ticks every 10 ms
    assert ticks >= 5


@pytest.mark.asyncio
async def test_async_face_calls_run_concurrently():
    face = DictState().as_async()
    start = time.perf_counter()
    await asyncio.gather(*(face.get("slow") for _ in range(4)))
    assert time.perf_counter() - start < 1.0  # not 4 x 0.3 s


@pytest.mark.asyncio
async def test_async_face_as_context_manager_closes_the_store():
    store = DictState()
    async with store.as_async() as face:
        await face.set("a", 1)
    assert store.closed
    assert store.threads[-1].name.startswith("storebridge-io")


# ---------------------------------------------------------------------------------------------------------
# The sync face of an async store


def test_sync_face_from_plain_code():
    store = AsyncDictState()
    face = store.as_sync()
    assert isinstance(face, StateStore)
    face.set("a", [1, 2])
    assert face.get("a") == [1, 2]
    assert face.get("missing", 0) == 0
    assert face.delete("a") is True
    assert face.delete("a") is False
    assert {t.name for t in store.threads} == {"storebridge-loop"}
    assert face.capabilities is store.capabilities
    assert face.as_async() is store
    assert face.as_sync() is face


@pytest.mark.asyncio
async def test_sync_face_works_inside_a_running_loop():
    caller_loop = asyncio.get_running_loop()
    store = AsyncDictState()
    face = store.as_sync()
    face.set("k", "v")
    assert face.get("k") == "v"
    assert face.increment("n") == 1
    assert face.increment("n", 2.5) == 3.5
    assert face.keys() == ["k", "n"]
    assert all(loop is not caller_loop for loop in store.loops)
    assert {t.name for t in store.threads} == {"storebridge-loop"}


@pytest.mark.asyncio
async def test_sync_face_keeps_using_one_loop_for_the_store():
    store = AsyncDictState()
    face = store.as_sync()
    for i in range(5):
        face.set(f"k{i}", i)
    assert len(set(map(id, store.loops))) == 1


def test_sync_face_from_many_threads():
    store = AsyncDictState()
    face = store.as_sync()

    def work(i: int) -> Any:
        face.set(f"k{i}", i)
        return face.get(f"k{i}")

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(work, range(64))) == list(range(64))
    assert len(store.data) == 64


def test_sync_face_propagates_exception_type():
    face = AsyncDictState().as_sync()
    with pytest.raises(Boom, match="async boom"):
        face.get("boom")


def test_sync_face_called_from_the_background_loop_raises():
    face = AsyncDictState().as_sync()
    with pytest.raises(StorebridgeError, match="deadlock"):
        face.get("reenter")


def test_sync_face_as_context_manager_closes_the_store():
    store = AsyncDictState()
    with store.as_sync() as face:
        face.set("a", 1)
    assert store.closed


# ---------------------------------------------------------------------------------------------------------
# The generated classes


def test_derived_classes_implement_the_interfaces():
    async_face_cls = StateStore._async_face
    sync_face_cls = AsyncStateStore._sync_face
    assert issubclass(async_face_cls, AsyncStateStore) and issubclass(async_face_cls, bridge.AsyncOverSync)
    assert issubclass(sync_face_cls, StateStore) and issubclass(sync_face_cls, bridge.SyncOverAsync)
    assert not getattr(async_face_cls, "__abstractmethods__", None)
    assert not getattr(sync_face_cls, "__abstractmethods__", None)
    assert inspect.iscoroutinefunction(async_face_cls.get)
    assert not inspect.iscoroutinefunction(sync_face_cls.get)
    assert async_face_cls.get.__name__ == "get"


def test_derive_async_and_sync_on_a_custom_interface():
    from abc import ABC, abstractmethod

    class Greeter(ABC):
        @abstractmethod
        def greet(self, name: str) -> str:
            """Say hello."""

    class AsyncGreeter(ABC):
        @abstractmethod
        async def greet(self, name: str) -> str:
            """Say hello, async."""

    AsyncFace = bridge.derive_async(AsyncGreeter, ["greet"])
    SyncFace = bridge.derive_sync(Greeter, ["greet"])

    class Plain(Greeter):
        def greet(self, name: str) -> str:
            return f"hi {name} from {threading.current_thread().name}"

    class Native(AsyncGreeter):
        async def greet(self, name: str) -> str:
            return f"hi {name} from {threading.current_thread().name}"

    assert AsyncFace.greet.__doc__ == "Say hello, async."
    assert SyncFace.greet.__doc__ == "Say hello."
    assert run_sync(AsyncFace(Plain()).greet("ann")).startswith("hi ann from storebridge-io")
    assert SyncFace(Native()).greet(name="bob") == "hi bob from storebridge-loop"


@pytest.mark.asyncio
async def test_run_on_background_loop_runs_there_with_the_callers_context() -> None:
    from storebridge import bridge

    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    request_id.set("r-42")

    async def where() -> tuple[bool, str]:
        return bridge.in_background_loop(), request_id.get()

    assert await bridge.run_on_background_loop(where()) == (True, "r-42")
    # from the background loop itself (what a sync-face call runs on), it awaits directly
    assert bridge.run_sync(bridge.run_on_background_loop(where())) == (True, "r-42")
