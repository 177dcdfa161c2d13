"""What the three suites share: the fixture contract, both faces, closing what they open, and the
strict comparisons the cases use."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar, NoReturn

import pytest
import pytest_asyncio

from ..errors import StoreClosedError
from ._facade import FLAVOURS, Flavour, StoreFacade

#: ``store_factory``: no arguments (state stores also take ``namespace=``), returns a NEW native store
#: object over the SAME test database on every call.
StoreFactory = Callable[..., Any]
OpenStore = Callable[..., Awaitable[StoreFacade]]


#: Leads the reason of every skip caused by a capability the backend does not declare, so a CI policy
#: that fails unexplained skips can tell these (legitimate, per backend) apart.
NOT_DECLARED = "[not declared by the backend]"
#: Skip-reason marker for a backend whose engine is not reachable (no URL given for a remote-only engine).
NO_ENGINE_HERE = "[no engine on this machine]"


def skip_not_declared(capability: str, why: str) -> NoReturn:
    """Skip a case whose subject the backend declares it does not have (nothing typed to assert)."""
    pytest.skip(f"{NOT_DECLARED} {capability}: {why}")


def unique(prefix: str, length: int = 12) -> str:
    """A fresh name, so cases never collide on a shared server database."""
    return prefix + uuid.uuid4().hex[:length]


def assert_same_json(actual: Any, expected: Any, path: str = "value") -> None:
    """Deep equality that also compares types: ``True`` is not ``1``, ``1`` is not ``1.0``, a dict has
    exactly the expected keys (so no internal key can leak in). Tuples expected are lists stored."""
    if isinstance(expected, tuple):
        expected = list(expected)
    if isinstance(expected, float) and isinstance(actual, float) and math.isnan(expected):
        assert math.isnan(actual), f"{path}: expected NaN, got {actual!r}"
        return
    assert type(actual) is type(expected), (
        f"{path}: expected {type(expected).__name__} {expected!r}, got {type(actual).__name__} {actual!r}"
    )
    if isinstance(expected, Mapping):
        assert set(actual) == set(expected), (
            f"{path}: keys differ: missing {sorted(set(expected) - set(actual))}, "
            f"unexpected {sorted(set(actual) - set(expected))}"
        )
        for key in expected:
            assert_same_json(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{path}: expected {len(expected)} items, got {len(actual)}: {actual!r}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_json(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: expected {expected!r}, got {actual!r}"


async def expect_error(error: type[BaseException] | tuple[type[BaseException], ...], call: Awaitable[Any],
                       what: str) -> BaseException:
    """Await ``call`` and require ``error``; the failure names the case (``what``), which matters inside
    loops where ``pytest.raises`` alone would not say which input slipped through."""
    names = " or ".join(e.__name__ for e in (error if isinstance(error, tuple) else (error,)))
    try:
        result = await call
    except error as exc:
        return exc
    except Exception as exc:  # any other error fails the case, naming it
        raise AssertionError(f"{what}: expected {names}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: expected {names}, but it returned {result!r}")


async def run_workers(s: StoreFacade, op: Callable[[Any, int, int], Any], *, threads: tuple[int, int],
                      tasks: tuple[int, int]) -> tuple[int, int]:
    """Drive ``op(face, worker, step)`` concurrently the way each face is used: the sync face from
    ``threads = (workers, steps)`` OS threads, the async face from ``tasks = (workers, steps)`` tasks on
    this loop. Returns the ``(workers, steps)`` used; the first error of any worker is raised."""
    face = s.face
    if s.is_async:
        workers, steps = tasks

        async def run_task(worker: int) -> None:
            for step in range(steps):
                result = op(face, worker, step)
                if inspect.isawaitable(result):
                    await result

        await asyncio.gather(*(run_task(w) for w in range(workers)))
        return workers, steps
    workers, steps = threads
    errors: list[Exception] = []

    def run_thread(worker: int) -> None:
        try:
            for step in range(steps):
                op(face, worker, step)
        except Exception as exc:  # noqa: BLE001 - re-raised below, with the thread's traceback
            errors.append(exc)

    pool = [threading.Thread(target=run_thread, args=(w,)) for w in range(workers)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    return workers, steps


class StoreSuite:
    """Base of the three suites. Subclasses set ``capabilities_type`` and implement :meth:`probe`."""

    pytestmark = pytest.mark.asyncio

    #: The dataclass ``store.capabilities`` must be an instance of.
    capabilities_type: ClassVar[type]

    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        """Placeholder that explains the contract when a subclass forgot to define the fixture."""
        pytest.fail(
            f"{type(self).__name__} must define a `store_factory` fixture: a zero-argument callable "
            "(state stores: also an optional keyword `namespace`) returning a NEW native store object "
            "over the SAME test database on each call"
        )

    @pytest.fixture(params=FLAVOURS)
    def flavour(self, request: pytest.FixtureRequest) -> Flavour:
        """Every case runs on the sync face and on the async face (one native, one derived)."""
        return request.param  # type: ignore[no-any-return]

    @pytest_asyncio.fixture
    async def open_store(self, store_factory: StoreFactory, flavour: Flavour) -> AsyncIterator[OpenStore]:
        """Opens new store objects on this test's face and closes every one of them at teardown."""
        opened: list[StoreFacade] = []

        async def open_(**kwargs: Any) -> StoreFacade:
            facade = StoreFacade(store_factory(**kwargs), flavour)
            opened.append(facade)
            return facade

        yield open_
        failures: list[BaseException] = []
        for facade in reversed(opened):
            try:
                await facade.close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then report the first failure
                failures.append(exc)
        if failures:
            raise failures[0]

    @pytest_asyncio.fixture
    async def store(self, open_store: OpenStore) -> StoreFacade:
        """The test's main store object."""
        return await open_store()

    async def probe(self, s: StoreFacade) -> Any:
        """One cheap read on the store, used by the lifecycle cases."""
        raise NotImplementedError

    # -- lifecycle cases, the same for every kind of store ---------------------------------------------

    async def test_capabilities_declared(self, store: StoreFacade) -> None:
        """The suite gates cases on these declarations, so both faces must expose the native one."""
        assert isinstance(store.capabilities, self.capabilities_type), (
            f"capabilities must be a {self.capabilities_type.__name__}, got {store.capabilities!r}"
        )
        assert store.face.as_sync().capabilities == store.face.as_async().capabilities

    async def test_close_twice_is_safe(self, store: StoreFacade) -> None:
        """``close()`` is documented as safe to call twice (context managers and finalisers both close)."""
        await self.probe(store)
        close = store.__getattr__("close")  # the face's own close, past the facade's idempotence guard
        await close()
        await close()
        store.closed = True

    async def test_use_after_close_raises(self, store: StoreFacade) -> None:
        """A closed store says so with the typed error instead of failing deep inside a driver."""
        await self.probe(store)
        await store.close()
        with pytest.raises(StoreClosedError):
            await self.probe(store)


__all__ = [
    "NOT_DECLARED",
    "NO_ENGINE_HERE",
    "OpenStore",
    "StoreFactory",
    "StoreSuite",
    "assert_same_json",
    "expect_error",
    "run_workers",
    "skip_not_declared",
    "unique",
]
