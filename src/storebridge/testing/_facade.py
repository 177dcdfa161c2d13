"""One awaitable surface over either face of a store, so every conformance case is written once.

A case does ``await s.search(...)``: on the async face that awaits the coroutine; on the sync face
the call runs inline (blocking the test's event loop, as any sync call would) and its result is
returned. The raw face stays reachable as ``s.face`` for the concurrency cases, which must drive the
sync face from threads and the async face from tasks.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal

Flavour = Literal["sync", "async"]
FLAVOURS: tuple[Flavour, ...] = ("sync", "async")


class StoreFacade:
    """Awaitable proxy for one face (``as_sync()`` or ``as_async()``) of one native store object."""

    def __init__(self, native: Any, flavour: Flavour) -> None:
        if flavour not in FLAVOURS:
            raise TypeError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
        self.native = native
        self.flavour: Flavour = flavour
        self.face: Any = native.as_sync() if flavour == "sync" else native.as_async()
        self.closed = False

    @property
    def is_async(self) -> bool:
        return self.flavour == "async"

    @property
    def capabilities(self) -> Any:
        """The native store's declaration; both faces must report the same object."""
        return self.face.capabilities

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.face, name)
        if not callable(method):
            raise AttributeError(f"{name!r} is not an operation of {self.face!r}")  # noqa: TRY004 - getattr protocol

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            if self.is_async:
                if not inspect.isawaitable(result):
                    raise TypeError(f"the async face's {name}() returned {type(result).__name__}, not an awaitable")
                return await result
            if inspect.isawaitable(result):
                raise TypeError(f"the sync face's {name}() returned an awaitable; it must return the result")
            return result

        call.__name__ = name
        return call

    async def close(self) -> None:
        """Close through the face in use (an async store driven via its sync face lives on the bridge's
        loop and must be closed there). Idempotent here so fixture teardown can always call it."""
        if self.closed:
            return
        self.closed = True
        await self.__getattr__("close")()

    def __repr__(self) -> str:
        return f"<{self.flavour} facade of {self.native!r}>"


__all__ = ["FLAVOURS", "Flavour", "StoreFacade"]
